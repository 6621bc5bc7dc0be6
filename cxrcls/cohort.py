"""Curate the study's NIH ChestX-ray14 cohort and its 5 matched 70/15/15 splits.

Sampling (the study's): for each of Mass, Nodule, Pneumonia, Edema and Fibrosis draw up to 2,000
images that carry it (all of them when fewer exist), plus 2,000 "No Finding" images; merge and drop
duplicates. An image drawn for one label keeps all its labels, so a label's count in the cohort can
exceed what was drawn for it. The draw is seeded and does not depend on the table's row order.

Label tables (`--labels`), comma-separated (a `;`-separated table, as some spreadsheet locales save
it, is refused with a message that says so), in one of two layouts:
- NIH's Data_Entry_2017*.csv: `Image Index`, `Finding Labels` (findings joined by `|`, or
  `No Finding`), `Patient ID`, other columns ignored (or the lower-case `image`, `finding_labels`,
  `patient_id`).
- A wide table (CheXpert / MIMIC-CXR style): `image` (or `Image Index`), `patient_id` (or
  `Patient ID`), then one column per finding holding 1 (present) or 0 / empty (absent); anything
  else (e.g. CheXpert's -1 for uncertain) is refused, naming the row and column. A column counts as
  one of the study's labels only when its name is one exactly, ignoring case: Mass, Nodule,
  Pneumonia, Edema, Fibrosis, No Finding (WIDE_LABELS; CheXpert's Edema, Pneumonia and No Finding
  map, its Lung Lesion or Consolidation do not). Other finding columns count only for No Finding:
  without a `No Finding` column an image with no finding at all is No Finding; with one, it is
  taken as given, and a row marked both No Finding and one of the five findings is refused.
Image names must be plain file names, unique in the table (they are found by name under
`--images`).

Outputs (cohort/): cohort.csv (image, the six 0/1 labels in LABELS order, patient_id), splits.csv
(image, split, part), table1.csv (label, images, drawn, available; last row "Total unique"),
run.json, and last the completion record done.json (the cache and training refuse a cohort without
it). Besides the arguments, done.json holds the cohort's content identity, `content_sha256` of
cohort.csv and splits.csv (CONTENT_FILES; `cxrstats.foundation.fileio.content_facts`), which runs
trained on the cohort record and their readers compare, and `labels_sha256`, the sha256 of the label
table read: a cohort made again with the same arguments from an edited label table has other
content.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrcls.files import check_plain_name, locate_images
from cxrcls.labels import FINDINGS, LABELS, NO_FINDING
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (begin_run, content_facts, file_sha256, read_csv, write_csv,
                                        write_done, write_run_json)

# Column names of Data_Entry_2017(.v2020).csv, and the lower-case ones of a prepared table.
COLUMN_ALIASES = {
    "image": ("Image Index", "image"),
    "findings": ("Finding Labels", "finding_labels"),
    "patient": ("Patient ID", "patient_id"),
}
# A wide table's finding columns that are the study's labels: lower-cased name -> label.
WIDE_LABELS = {label.lower(): label for label in LABELS}
PRESENT, ABSENT = ("1", "1.0"), ("0", "0.0", "")
PARTS = ("train", "val", "test")
OUTPUTS = ("cohort.csv", "splits.csv", "table1.csv", "run.json")
CONTENT_FILES = ("cohort.csv", "splits.csv")  # what later stages read: the content identity's files


@dataclass(frozen=True)
class Record:
    image: str
    findings: frozenset[str]
    patient_id: str


def read_label_table(path: str | Path) -> list[Record]:
    """Records of a label table (NIH or wide layout, module docstring), sorted by image name;
    refuses unsafe or duplicate names, a `;`-separated file and values it cannot read."""
    check_separator(path)
    rows = read_csv(path)
    if not rows:
        raise ValueError(f"{path}: label table has no rows")
    columns = {"image": find_column(path, rows[0], "image"),
               "patient": find_column(path, rows[0], "patient")}
    nih = [a for a in COLUMN_ALIASES["findings"] if a in rows[0]]
    header = [c for c in rows[0] if c is not None]
    findings_of = nih_findings(nih[0]) if nih else wide_findings(path, header, columns)
    used = header if not nih else [*columns.values(), nih[0]]
    records, seen = [], set()
    for number, row in enumerate(rows, start=2):   # line numbers of the file, header = 1
        check_cells(path, row, number, used)
        name = check_plain_name(row[columns["image"]], path)
        if name in seen:
            raise ValueError(f"{path}: image {name!r} appears in more than one row")
        seen.add(name)
        records.append(Record(name, findings_of(row, number), row[columns["patient"]].strip()))
    return sorted(records, key=lambda r: r.image)


def check_cells(path, row: dict, number: int, used: list[str]) -> None:
    """Refuse a row that lacks a cell of a column read, or has extra non-empty cells (csv.DictReader
    fills missing cells with None and keeps extra ones under the key None): a short row of a wide
    table would read as 'absent', an extra cell means the cells no longer line up."""
    missing = [c for c in used if row.get(c) is None]
    extra = [v for v in row.get(None) or [] if v.strip()]
    if missing or extra:
        what = f"no cell for {missing}" if missing else f"extra cells {extra}"
        raise ValueError(f"{path}: line {number} has {what} (its cells do not match the header; "
                         "an empty cell is written as ',,')")


def check_separator(path: str | Path) -> None:
    """Refuse a table whose header is separated by ';' (or tabs) instead of commas."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = f.readline()
    for separator, name in ((";", "';'"), ("\t", "tabs")):
        if separator in header and "," not in header:
            raise ValueError(f"{path}: its columns are separated by {name}, not commas (a "
                             "spreadsheet saved in a locale that writes ';'); save it as "
                             "comma-separated CSV")


def find_column(path, header: dict, key: str) -> str:
    """The column of `key` (COLUMN_ALIASES) in the table's header; ValueError naming both."""
    aliases = COLUMN_ALIASES[key]
    hit = [a for a in aliases if a in header]
    if not hit:
        raise ValueError(f"{path}: missing column {aliases[0]!r} (or {aliases[1]!r}); "
                         f"found {list(header)}")
    return hit[0]


def nih_findings(column: str):
    """Findings of a row of an NIH table: its `Finding Labels` split at '|'."""
    def findings(row: dict, number: int) -> frozenset[str]:
        return frozenset(s.strip() for s in row[column].split("|") if s.strip())
    return findings


def wide_findings(path, header: list[str], columns: dict):
    """Findings of a row of a wide table: its columns holding 1, study labels by WIDE_LABELS
    (module docstring), No Finding derived when the table has no such column."""
    finding_columns = [c for c in header if c not in columns.values()]
    if not finding_columns:
        raise ValueError(f"{path}: neither an NIH table ('Finding Labels') nor a wide one (a 0/1 "
                         f"column per finding after {list(columns.values())})")
    names = {c: WIDE_LABELS.get(c.strip().lower(), c) for c in finding_columns}
    doubled = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if doubled:
        raise ValueError(f"{path}: more than one column for {doubled} (names are compared "
                         "ignoring case)")
    has_no_finding = NO_FINDING in names.values()

    def findings(row: dict, number: int) -> frozenset[str]:
        present = set()
        for column in finding_columns:
            value = (row[column] or "").strip()
            if value in PRESENT:
                present.add(names[column])
            elif value not in ABSENT:
                raise ValueError(f"{path}: line {number}, column {column!r}: {value!r} is not "
                                 "1, 0 or empty (decide uncertain labels such as -1 before)")
        if not has_no_finding and not present:
            present.add(NO_FINDING)
        if NO_FINDING in present and present & set(FINDINGS):
            raise ValueError(f"{path}: line {number} is marked {NO_FINDING} and "
                             f"{sorted(present & set(FINDINGS))}")
        return frozenset(present)
    return findings


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
        unknown = [r.image for r in cohort if not r.patient_id]
        if args.split_by == "patient" and unknown:
            raise ValueError(f"{args.labels}: {len(unknown)} cohort images have no Patient ID "
                             f"(e.g. {unknown[0]}); --split-by patient needs one for every image")
        if args.images:
            locate_images([r.image for r in cohort], args.images)
        splits = make_splits(cohort, args.splits, args.split_by, args.seed)
        begin_run(out, OUTPUTS)  # refuses a folder holding files this toolkit did not write
    except (ValueError, FileNotFoundError) as error:
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
