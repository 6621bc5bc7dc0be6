"""Curate the study's NIH ChestX-ray14 cohort and its 5 matched 70/15/15 splits.

Sampling (the study's): for each of Mass, Nodule, Pneumonia, Edema and Fibrosis draw up to 2,000
images that carry it (all of them when fewer exist), plus 2,000 "No Finding" images; merge and drop
duplicates. An image drawn for one label keeps all its labels, so a label's count in the cohort can
exceed what was drawn for it. The draw is seeded and does not depend on the table's row order.

Label tables (`--labels`): UTF-8 text (a byte-order mark allowed; another encoding is refused,
naming the line), columns separated by ',', ';' (as spreadsheets in some locales save it) or tabs,
whichever makes the header hold an image column. Column names and study-label names match ignoring
case and surrounding spaces; rows without a non-empty cell (spreadsheets add them) are skipped; a
row lacking a cell read, or with non-empty cells beyond the header, is refused. Two layouts:
- NIH's Data_Entry_2017*.csv: `Image Index`, `Finding Labels` (findings joined by `|`, or
  `No Finding`; an empty cell is refused), `Patient ID`, other columns ignored (or the lower-case
  `image`, `finding_labels`, `patient_id`).
- A wide table (CheXpert / MIMIC-CXR style): `image` (or `Image Index`), `patient_id` (or
  `Patient ID`), then one column per finding holding 1, 1.0 or true (present) or 0, 0.0, false or
  empty (absent); anything else (e.g. CheXpert's -1 for uncertain) is refused, naming the line and
  column, and a column without a name must be empty. A column counts as one of the study's labels
  only when its name is one: Mass, Nodule, Pneumonia, Edema, Fibrosis, No Finding (STUDY_NAMES;
  CheXpert's Edema, Pneumonia and No Finding map, its Lung Lesion or Consolidation do not). Other
  finding columns count only for No Finding: without a `No Finding` column an image with no
  finding at all is No Finding; with one, it is taken as given.
In both, a row marked No Finding and one of the five findings is refused; findings outside the
study are named on stderr with their counts (a misspelt one shows there). Without a patient column
every patient_id is empty (`--split-by patient` then refuses). Image names must be plain file names
(no folders), each on one row; they are found by name, extension and case included, under
`--images`.

Outputs (cohort/): cohort.csv (image, the six 0/1 labels in LABELS order, patient_id), splits.csv
(image, split, part), table1.csv (label, images, drawn, available; last row "Total unique"),
run.json, and last the completion record done.json (the cache and training refuse a cohort without
it). Besides the arguments, done.json holds the cohort's content identity, `content_sha256` of
cohort.csv, splits.csv and table1.csv (CONTENT_FILES, each file's sha256 with it;
`cxrstats.foundation.fileio.content_facts`), which runs trained on the cohort record and their
readers compare, and which vouches for the bytes of the files later stages read (the cache and
training cohort.csv and splits.csv, the report also table1.csv, which it copies), and
`labels_sha256`, the sha256 of the label table read: a cohort made again with the same arguments
from an edited label table has other content.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrcls.files import locate_images
from cxrcls.labels import FINDINGS, LABELS, NO_FINDING
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, content_facts, file_sha256,
                                        read_text, write_csv, write_done, write_run_json)
from cxrstats.foundation.names import name_key, plain_name

# Column names of Data_Entry_2017(.v2020).csv, and the lower-case ones of a prepared table; a header
# name matches ignoring case and surrounding spaces.
COLUMN_ALIASES = {
    "image": ("Image Index", "image"),
    "findings": ("Finding Labels", "finding_labels"),
    "patient": ("Patient ID", "patient_id"),
}
# Finding names (an NIH cell's, a wide table's columns) that are the study's labels: lower-cased
# name -> label.
STUDY_NAMES = {label.lower(): label for label in LABELS}
# A wide table's cells, compared lower-cased after stripping spaces.
PRESENT, ABSENT = ("1", "1.0", "true"), ("0", "0.0", "false", "")
SEPARATORS = (",", ";", "\t")  # the first under which the header holds an image column is used
PARTS = ("train", "val", "test")
OUTPUTS = ("cohort.csv", "splits.csv", "table1.csv", "run.json")
# what later stages read (table1.csv: the report): the content identity's files
CONTENT_FILES = ("cohort.csv", "splits.csv", "table1.csv")


@dataclass(frozen=True)
class Record:
    image: str
    findings: frozenset[str]
    patient_id: str


def read_label_table(path: str | Path) -> list[Record]:
    """Records of a label table (NIH or wide layout, module docstring), sorted by image name;
    refuses unsafe or duplicate names, rows that do not match the header and values it cannot
    read, naming the line."""
    header, rows = read_table(path)
    columns = {key: find_column(path, header, key) for key in COLUMN_ALIASES}
    if columns["findings"] is not None:
        findings_of = nih_findings(path, header[columns["findings"]], columns["findings"])
        used = [i for i in columns.values() if i is not None]
    else:
        findings_of, used = wide_findings(path, header, columns)
    records, lines = [], {}
    for number, cells in rows:
        check_cells(path, cells, number, header, used)
        name = plain_name(cells[columns["image"]], f"{path}: line {number}")
        if name_key(name) in lines:
            raise ValueError(f"{path}: image {name!r} is on line {lines[name_key(name)]} and on "
                             f"line {number} (compared in Unicode NFC); an image has one row")
        lines[name_key(name)] = number
        findings = findings_of(cells, number)
        check_no_finding(path, number, findings)
        patient = "" if columns["patient"] is None else cells[columns["patient"]].strip()
        records.append(Record(name, findings, patient))
    return sorted(records, key=lambda r: r.image)


def read_table(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A label table's header (names stripped) and its rows as (line number, cells), rows without
    any non-empty cell left out (spreadsheets add them); columns separated as `table_separator`
    finds."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=table_separator(text))
    header = [name.strip() for name in next(reader, [])]
    rows, line = [], reader.line_num
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((line + 1, cells))  # the line the row starts on, header = 1
        line = reader.line_num
    if not rows:
        raise ValueError(f"{path}: label table has no rows")
    return header, rows


def table_separator(text: str) -> str:
    """The separator of SEPARATORS under which the first line holds an image column (a
    spreadsheet saved in a locale that writes ';', or a .tsv); ',' when none does (the missing
    column is then named)."""
    first = text.splitlines()[0] if text else ""
    wanted = {normal(a) for a in COLUMN_ALIASES["image"]}
    for separator in SEPARATORS:
        if wanted & {normal(n) for n in next(csv.reader([first], delimiter=separator), [])}:
            return separator
    return ","


def normal(name: str) -> str:
    """A column or finding name as compared: surrounding spaces dropped, lower case."""
    return name.strip().lower()


def find_column(path, header: list[str], key: str) -> int | None:
    """Index of the column of `key` (COLUMN_ALIASES, ignoring case); None when absent, except the
    image column (ValueError naming the columns found); ValueError when two columns match."""
    aliases = COLUMN_ALIASES[key]
    hits = [i for i, name in enumerate(header) if normal(name) in {normal(a) for a in aliases}]
    if len(hits) > 1:
        raise ValueError(f"{path}: more than one column for {aliases[0]!r}: "
                         f"{[header[i] for i in hits]}; keep one")
    if not hits and key == "image":
        raise ValueError(f"{path}: missing column {aliases[0]!r} (or {aliases[1]!r}); "
                         f"found {header}")
    return hits[0] if hits else None


def check_cells(path, cells: list[str], number: int, header: list[str], used: list[int]) -> None:
    """Refuse a row that lacks a cell of a column read, or has non-empty cells beyond the header:
    a short row of a wide table would read as 'absent', an extra cell means the cells no longer
    line up."""
    missing = [header[i] for i in used if i >= len(cells)]
    extra = [v for v in cells[len(header):] if v.strip()]
    if missing or extra:
        what = f"no cell for {missing}" if missing else f"extra cells {extra}"
        raise ValueError(f"{path}: line {number} has {what} (its cells do not match the header; "
                         "an empty cell is written as ',,')")


def nih_findings(path, column: str, index: int):
    """Findings of a row of an NIH table: its `Finding Labels` split at '|', study labels by
    STUDY_NAMES; an empty cell is refused (absent findings are written 'No Finding')."""
    def findings(cells: list[str], number: int) -> frozenset[str]:
        names = [s.strip() for s in cells[index].split("|") if s.strip()]
        if not names:
            raise ValueError(f"{path}: line {number}: {column!r} is empty (an image without "
                             f"findings is written {NO_FINDING!r})")
        return frozenset(STUDY_NAMES.get(normal(n), n) for n in names)
    return findings


def wide_findings(path, header: list[str], columns: dict):
    """Findings of a row of a wide table (its columns holding 1, study labels by STUDY_NAMES, No
    Finding derived when the table has no such column) and the columns read."""
    named = [i for i, name in enumerate(header) if i not in columns.values() and name]
    unnamed = [i for i, name in enumerate(header) if i not in columns.values() and not name]
    if not named:
        read = [header[i] for i in columns.values() if i is not None]
        raise ValueError(f"{path}: neither an NIH table ('Finding Labels') nor a wide one (a 0/1 "
                         f"column per finding besides {read})")
    names = {i: STUDY_NAMES.get(normal(header[i]), header[i]) for i in named}
    doubled = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if doubled:
        raise ValueError(f"{path}: more than one column for {doubled} (names are compared "
                         "ignoring case)")
    has_no_finding = NO_FINDING in names.values()

    def findings(cells: list[str], number: int) -> frozenset[str]:
        for i in unnamed:
            if i < len(cells) and cells[i].strip():
                raise ValueError(f"{path}: line {number}, column {i + 1} has no name in the "
                                 f"header but holds {cells[i]!r}")
        present = set()
        for i in named:
            value = normal(cells[i])
            if value in PRESENT:
                present.add(names[i])
            elif value not in ABSENT:
                raise ValueError(f"{path}: line {number}, column {header[i]!r}: {cells[i]!r} is "
                                 "not 1, 0, true, false or empty (a wide table's columns besides "
                                 "image and patient_id are findings; decide uncertain labels "
                                 "such as -1 before)")
        if not has_no_finding and not present:
            present.add(NO_FINDING)
        return frozenset(present)
    used = [i for i in (columns["image"], columns["patient"]) if i is not None] + named
    return findings, used


def check_no_finding(path, number: int, findings: frozenset[str]) -> None:
    """Refuse a row marked No Finding and one of the five findings."""
    if NO_FINDING in findings and findings & set(FINDINGS):
        raise ValueError(f"{path}: line {number} is marked {NO_FINDING} and "
                         f"{sorted(findings & set(FINDINGS))}")


def other_findings(records: list[Record], shown: int = 12) -> str:
    """The findings outside LABELS that `records` carry, most frequent first with their counts
    ('Atelectasis 3, Hernia 1'), so that a misspelt or mis-separated finding is seen; '' when
    none."""
    counts: dict[str, int] = {}
    for r in records:
        for name in r.findings - set(LABELS):
            counts[name] = counts.get(name, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{name} {n}" for name, n in ranked[:shown])
    return text + (f" and {len(ranked) - shown} more" if len(ranked) > shown else "")


def sample_cohort(records: list[Record], per_label: int = 2000, no_finding: int = 2000,
                  seed: int = 0) -> tuple[list[Record], dict[str, int]]:
    """The study's draw: up to `per_label` carriers of each finding plus `no_finding` normals.

    Returns the merged cohort sorted by image name and, per label, how many images were drawn for
    it.
    """
    records = sorted(records, key=lambda r: r.image)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    drawn = {}
    for label in LABELS:
        cap = no_finding if label == NO_FINDING else per_label
        carriers = np.array([i for i, r in enumerate(records) if label in r.findings], dtype=int)
        take = min(cap, len(carriers))
        picked = rng.choice(carriers, size=take, replace=False) if take else carriers[:0]
        chosen.update(picked.tolist())
        drawn[label] = take
    return [records[i] for i in sorted(chosen)], drawn


def label_matrix(cohort: list[Record]) -> np.ndarray:
    """(N, 6) uint8 0/1 in LABELS order."""
    return np.array([[int(label in r.findings) for label in LABELS] for r in cohort],
                    dtype=np.uint8).reshape(len(cohort), len(LABELS))


def part_sizes(n: int, fractions=(0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """Train/val/test sizes for n items: val and test rounded, train takes the rest."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def split_by_image(n: int, seed: int) -> list[str]:
    """Part of each of n images: a seeded random 70/15/15 split."""
    n_train, n_val, _ = part_sizes(n)
    order = np.random.default_rng(seed).permutation(n)
    parts = np.empty(n, dtype=object)
    parts[order[:n_train]] = "train"
    parts[order[n_train:n_train + n_val]] = "val"
    parts[order[n_train + n_val:]] = "test"
    return parts.tolist()


def split_by_patient(patients: list[str], seed: int) -> list[str]:
    """Part of each image such that no patient is in two parts; image counts near 70/15/15.

    Patients are shuffled (seeded) and filled into train until it holds 70% of the images, then val
    until 15%, then test.
    """
    n_train, n_val, _ = part_sizes(len(patients))
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    parts = [""] * len(patients)
    counts = {"train": 0, "val": 0}
    for k in order:
        members = groups[keys[k]]
        if counts["train"] < n_train:
            part = "train"
        elif counts["val"] < n_val:
            part = "val"
        else:
            part = "test"
        counts[part] = counts.get(part, 0) + len(members)
        for i in members:
            parts[i] = part
    return parts


def make_splits(cohort: list[Record], n_splits: int = 5, split_by: str = "image",
                seed: int = 0) -> list[tuple[str, int, str]]:
    """Rows (image, split, part) for splits 0..n_splits-1, split k seeded with seed + k."""
    rows = []
    for k in range(n_splits):
        if split_by == "image":
            parts = split_by_image(len(cohort), seed + k)
        elif split_by == "patient":
            parts = split_by_patient([r.patient_id for r in cohort], seed + k)
        else:
            raise ValueError(f"split_by must be 'image' or 'patient', got {split_by!r}")
        empty = [p for p in PARTS if p not in parts]
        if empty:
            raise ValueError(f"split {k} by {split_by}: no {'/'.join(empty)} images "
                             f"({len(cohort)} images are too few to split 70/15/15)")
        rows.extend((r.image, k, part) for r, part in zip(cohort, parts))
    return rows


def table1_rows(records: list[Record], cohort: list[Record], drawn: dict[str, int]) -> list[list]:
    """Table 1: per label, images in the cohort carrying it, drawn for it, available in the
    table."""
    labels = label_matrix(cohort)
    rows = []
    for j, label in enumerate(LABELS):
        available = sum(label in r.findings for r in records)
        rows.append([label, int(labels[:, j].sum()), drawn[label], available])
    rows.append(["Total unique", len(cohort), "", ""])
    return rows


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.cohort", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m cxrcls.cohort "
               "--labels work/demo/data/nih/Data_Entry_2017.csv "
               "--images work/demo/data/nih/images --out work/by-hand/cohort --split-by patient")
    parser.add_argument("--labels", required=True,
                        help="label table: NIH's Data_Entry_2017.csv, or a wide table (image, "
                             "patient_id, a 0/1 column per finding)")
    parser.add_argument("--out", required=True, help="output folder (cohort/)")
    parser.add_argument("--images", help="image folder; when given, every cohort image must be "
                                         "found by name somewhere under it")
    parser.add_argument("--per-label", type=int_range(1), default=2000,
                        help="images drawn per finding")
    parser.add_argument("--no-finding", type=int_range(0), default=2000,
                        help="'No Finding' images drawn")
    parser.add_argument("--splits", type=int_range(1), default=5,
                        help="number of matched 70/15/15 splits")
    parser.add_argument("--split-by", choices=("image", "patient"), default="image",
                        help="'image' as in the study; 'patient' keeps each patient in one part")
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0,
                        help="seed of the draw; split k uses seed + k")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    out = Path(args.out)
    try:
        labels_sha256 = file_sha256(args.labels)
        records = read_label_table(args.labels)
        cohort, drawn = sample_cohort(records, args.per_label, args.no_finding, args.seed)
        if not cohort:
            raise ValueError(f"{args.labels}: no image carries any of {list(LABELS)}")
        absent = [label for label in LABELS if drawn[label] == 0]
        if absent:
            print(f"cohort: note: no image in {args.labels} carries {', '.join(absent)}",
                  file=sys.stderr)
        others = other_findings(records)
        if others:
            print(f"cohort: note: findings outside the study in {args.labels} (an image with only "
                  f"these is not {NO_FINDING}): {others}", file=sys.stderr)
        unknown = [r.image for r in cohort if not r.patient_id]
        if args.split_by == "patient" and unknown:
            raise ValueError(f"{args.labels}: {len(unknown)} of {len(cohort)} cohort images have "
                             f"no Patient ID (e.g. {unknown[0]}); --split-by patient needs a "
                             "'Patient ID' (or 'patient_id') column with one for every image")
        if args.images:
            locate_images([r.image for r in cohort], args.images)
        splits = make_splits(cohort, args.splits, args.split_by, args.seed)
        begin_run(out, OUTPUTS)  # refuses a folder holding files this toolkit did not write
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    labels = label_matrix(cohort)
    write_csv(out / "cohort.csv", ["image", *LABELS, "patient_id"],
              [[r.image, *labels[i].tolist(), r.patient_id] for i, r in enumerate(cohort)])
    write_csv(out / "splits.csv", ["image", "split", "part"], splits)
    table1 = table1_rows(records, cohort, drawn)
    write_csv(out / "table1.csv", ["label", "images", "drawn", "available"], table1)
    write_run_json(out, args, time.time() - start, images=len(cohort))
    write_done(out, args, OUTPUTS, images=len(cohort), splits=args.splits, split_by=args.split_by,
               labels_sha256=labels_sha256, **content_facts(out, CONTENT_FILES))
    for row in table1:
        drawn_note = f" (drawn {row[2]} of {row[3]})" if row[2] != "" else ""
        print(f"{row[0]:>14}: {row[1]}{drawn_note}")
    print(f"cohort: {len(cohort)} images, {args.splits} splits by {args.split_by} -> {out}")


if __name__ == "__main__":
    main()
