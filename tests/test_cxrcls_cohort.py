"""Cohort sampling and splits on a synthetic NIH label table with known counts."""
import csv
import random
import re

import pytest

from cxrcls import cohort as C
from cxrcls.labels import LABELS
from cxrstats.foundation.fileio import (IncompleteRunError, content_facts, file_sha256,
                                        input_identity, read_csv, read_done, write_csv)
from cxrstats.report import read_finished_cohort
from cxrstats.results import changed_inputs

# Known counts: Mass 30, Nodule 6 (all of which also carry Mass), Pneumonia 12, Edema 4,
# Fibrosis 10, No Finding 40, and 15 images with other findings only. Cap 10 per label.
CAP = 10


def synthetic_table():
    rows = []
    def add(findings, n, patients_per=2):
        for _ in range(n):
            i = len(rows)
            rows.append({"Image Index": f"{i:08d}_000.png", "Finding Labels": findings,
                         "Patient ID": str(i // patients_per), "Patient Age": "50"})
    add("Mass", 24)
    add("Mass|Nodule", 6)
    add("Pneumonia|Effusion", 12)
    add("Edema", 4)
    add("Fibrosis", 10)
    add("No Finding", 40, patients_per=3)
    add("Effusion", 15)
    return rows


def write_table(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "Data_Entry_2017.csv", synthetic_table())


def test_caps_all_when_fewer_dedup_and_order(table):
    records = C.read_label_table(table)
    cohort, drawn = C.sample_cohort(records, per_label=CAP, no_finding=CAP, seed=0)
    assert drawn == {"Mass": 10, "Nodule": 6, "Pneumonia": 10, "Edema": 4, "Fibrosis": 10,
                     "No Finding": 10}
    names = [r.image for r in cohort]
    assert len(names) == len(set(names)) and names == sorted(names)
    labels = C.label_matrix(cohort)
    by_label = dict(zip(LABELS, labels.sum(axis=0).tolist()))
    # Every Nodule image (6 < cap) is in, and each brings its Mass label along: Mass >= 10.
    assert by_label["Nodule"] == 6 and by_label["Edema"] == 4
    assert by_label["Pneumonia"] == by_label["Fibrosis"] == by_label["No Finding"] == 10
    assert 10 <= by_label["Mass"] <= 16
    # Merging dropped duplicates: Nodule images drawn again for Mass are counted once.
    # Mass, Pneumonia, Edema, Fibrosis and No Finding carriers are disjoint here, and every Nodule
    # one is a Mass one, so the unique count is exact (the sum of draws would count overlaps twice).
    assert len(cohort) == by_label["Mass"] + 10 + 4 + 10 + 10
    assert len(cohort) < sum(drawn.values()) or by_label["Mass"] == 16
    # Images with other findings only are never drawn.
    assert all(r.findings & set(LABELS) for r in cohort)


def test_same_seed_same_cohort_independent_of_row_order(tmp_path):
    rows = synthetic_table()
    a = C.read_label_table(write_table(tmp_path / "a.csv", rows))
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    b = C.read_label_table(write_table(tmp_path / "b.csv", shuffled))
    ca, _ = C.sample_cohort(a, CAP, CAP, seed=3)
    cb, _ = C.sample_cohort(b, CAP, CAP, seed=3)
    cc, _ = C.sample_cohort(a, CAP, CAP, seed=4)
    assert ca == cb
    assert ca != cc
    assert C.make_splits(ca, 5, "image", 0) == C.make_splits(cb, 5, "image", 0)


def test_image_splits_are_70_15_15_and_differ_by_seed(table):
    cohort, _ = C.sample_cohort(C.read_label_table(table), CAP, CAP, seed=0)
    rows = C.make_splits(cohort, n_splits=5, split_by="image", seed=0)
    assert len(rows) == 5 * len(cohort)
    n_train, n_val, n_test = C.part_sizes(len(cohort))
    per_split = []
    for k in range(5):
        parts = [p for _, s, p in rows if s == k]
        counts = (parts.count("train"), parts.count("val"), parts.count("test"))
        assert counts == (n_train, n_val, n_test)
        per_split.append(tuple(parts))
    assert len(set(per_split)) == 5


def test_patient_split_shares_no_patient(table):
    cohort, _ = C.sample_cohort(C.read_label_table(table), CAP, CAP, seed=0)
    patient = {r.image: r.patient_id for r in cohort}
    rows = C.make_splits(cohort, n_splits=5, split_by="patient", seed=0)
    for k in range(5):
        owner = {}
        for image, s, part in rows:
            if s == k:
                assert owner.setdefault(patient[image], part) == part
        parts = [p for _, s, p in rows if s == k]
        assert set(parts) == {"train", "val", "test"}
        assert abs(parts.count("train") / len(parts) - 0.7) < 0.1


def test_cli_writes_contract_files(table, tmp_path):
    out = tmp_path / "cohort"
    C.main(["--labels", str(table), "--out", str(out), "--per-label", str(CAP),
            "--no-finding", str(CAP), "--split-by", "patient"])
    cohort = read_csv(out / "cohort.csv", required=["image", *LABELS, "patient_id"])
    assert list(cohort[0]) == ["image", *LABELS, "patient_id"]
    splits = read_csv(out / "splits.csv", required=["image", "split", "part"])
    assert len(splits) == 5 * len(cohort)
    table1 = read_csv(out / "table1.csv", required=["label", "images"])
    assert [r["label"] for r in table1] == [*LABELS, "Total unique"]
    assert table1[-1]["images"] == str(len(cohort))
    assert (out / "run.json").is_file()


def test_unsafe_and_duplicate_names_are_refused(tmp_path):
    rows = synthetic_table()
    rows[3]["Image Index"] = "../secret.png"
    path = write_table(tmp_path / "bad.csv", rows)
    with pytest.raises(SystemExit, match="bad.csv.*not a plain file name"):
        C.main(["--labels", str(path), "--out", str(tmp_path / "o")])
    rows = synthetic_table()
    rows[3]["Image Index"] = rows[2]["Image Index"]
    with pytest.raises(ValueError, match=r"dup.csv: image '00000002_000.png' is on line 4 and "
                                         r"on line 5"):
        C.read_label_table(write_table(tmp_path / "dup.csv", rows))


def test_missing_images_are_counted(table, tmp_path):
    images = tmp_path / "images"
    (images / "images_001" / "images").mkdir(parents=True)
    cohort, _ = C.sample_cohort(C.read_label_table(table), CAP, CAP, seed=0)
    for r in cohort[3:]:  # three missing, the rest nested as NIH ships them
        (images / "images_001" / "images" / r.image).write_bytes(b"x")
    with pytest.raises(SystemExit, match=f"3 of {len(cohort)} images not found"):
        C.main(["--labels", str(table), "--out", str(tmp_path / "o"), "--images", str(images),
                "--per-label", str(CAP), "--no-finding", str(CAP)])
    for r in cohort[:3]:
        (images / r.image).write_bytes(b"x")
    C.main(["--labels", str(table), "--out", str(tmp_path / "o"), "--images", str(images),
            "--per-label", str(CAP), "--no-finding", str(CAP)])
    assert not (tmp_path / "o" / "cohort.csv.tmp").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--splits", "0", r"--splits: 0 is not in \[1, inf\)"),
    ("--per-label", "-5", r"--per-label: -5 is not in \[1, inf\)"),
    ("--no-finding", "-1", r"--no-finding: -1 is not in \[0, inf\)"),
    ("--seed", "-1", r"--seed: -1 is not in \[0, "),
    ("--splits", "two", r"--splits: 'two' is not an integer"),
])
def test_numeric_flags_are_checked_before_anything_runs(table, tmp_path, capsys, flag, value,
                                                        message):
    with pytest.raises(SystemExit):
        C.main(["--labels", str(table), "--out", str(tmp_path / "o"), flag, value])
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_done_json_is_written_last_and_a_rerun_clears_the_old_record(table, tmp_path, monkeypatch):
    out = tmp_path / "cohort"
    argv = ["--labels", str(table), "--out", str(out), "--per-label", str(CAP),
            "--no-finding", str(CAP)]
    C.main(argv)
    record = read_done(out, "done.json")
    assert record["outputs"] == ["cohort.csv", "splits.csv", "table1.csv", "run.json"]
    assert record["splits"] == 5
    # A second run killed while writing leaves no record: the old one went first.
    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(C, "table1_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        C.main(argv)
    with pytest.raises(IncompleteRunError, match="no done.json"):
        read_done(out, "done.json")
    assert not (out / "table1.csv").exists()


def test_patient_split_needs_patient_ids_and_tiny_cohorts_are_refused(tmp_path):
    rows = synthetic_table()
    rows[5]["Patient ID"] = ""
    path = write_table(tmp_path / "nopid.csv", rows)
    with pytest.raises(SystemExit, match=r"nopid.csv: 1 of 96 cohort images have no Patient ID"):
        C.main(["--labels", str(path), "--out", str(tmp_path / "o"), "--split-by", "patient",
                "--per-label", "50", "--no-finding", "50"])
    C.main(["--labels", str(path), "--out", str(tmp_path / "o"), "--per-label", "50",
            "--no-finding", "50"])  # by image, patients do not matter
    tiny = write_table(tmp_path / "tiny.csv", synthetic_table()[:2])
    with pytest.raises(SystemExit, match=r"split 0 by image: no val/test images \(2 images"):
        C.main(["--labels", str(tiny), "--out", str(tmp_path / "t")])


def test_label_table_saved_by_excel_gives_the_same_cohort(table, tmp_path):
    """Byte-order mark, CRLF line ends and every field quoted (a comma inside one): the cohort
    is the one of the plain table."""
    rows = synthetic_table()
    header = [*rows[0], "OriginalImage[Width,Height]"]
    lines = [",".join(f'"{name}"' for name in header)]
    lines += [",".join(f'"{value}"' for value in [*row.values(), "2500,2048"]) for row in rows]
    excel = tmp_path / "excel.csv"
    excel.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    argv = ["--per-label", str(CAP), "--no-finding", str(CAP), "--split-by", "patient"]
    C.main(["--labels", str(table), "--out", str(tmp_path / "plain"), *argv])
    C.main(["--labels", str(excel), "--out", str(tmp_path / "excel"), *argv])
    for name in ("cohort.csv", "splits.csv", "table1.csv"):
        assert (tmp_path / "excel" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_an_output_folder_of_the_users_files_is_refused_untouched(table, tmp_path):
    out = tmp_path / "my_folder"
    out.mkdir()
    (out / "cohort.csv").write_bytes(b"my own list\n")
    with pytest.raises(SystemExit) as error:
        C.main(["--labels", str(table), "--out", str(out), "--per-label", str(CAP)])
    assert str(error.value).startswith("error: ") and "cohort.csv" in str(error.value)
    assert [p.name for p in out.iterdir()] == ["cohort.csv"]
    assert (out / "cohort.csv").read_bytes() == b"my own list\n"


def test_a_file_system_error_is_an_error_line_naming_the_path(table, tmp_path):
    """Every stage reports USER_ERRORS (here an OSError: --out under a file) as `error: ...`,
    not as a traceback."""
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "cohort"
    with pytest.raises(SystemExit) as error:
        C.main(["--labels", str(table), "--out", str(out), "--per-label", str(CAP)])
    assert str(error.value).startswith("error: ") and str(out) in str(error.value)


def test_a_cohort_made_again_from_edited_labels_has_other_content(tmp_path):
    rows = synthetic_table()
    table = write_table(tmp_path / "Data_Entry_2017.csv", rows)
    work = tmp_path / "work"
    argv = ["--labels", str(table), "--out", str(work / "cohort"), "--per-label", str(CAP),
            "--no-finding", str(CAP)]
    C.main(argv)
    first = read_done(work / "cohort")
    facts = content_facts(work / "cohort", C.CONTENT_FILES)
    assert {k: first[k] for k in facts} == facts
    assert first["labels_sha256"] == file_sha256(table)
    run = work / "runs" / "resnet50_original" / "split0"
    record = {"inputs": {"cohort": input_identity(first)}}        # as cxrcls.train records it
    C.main(argv)                                                   # made again, same labels
    assert changed_inputs(work, run, record) is None
    write_table(table, [{**r, "Patient Age": "51"} for r in rows])  # a column the cohort ignores
    C.main(argv)
    assert read_done(work / "cohort")["labels_sha256"] != first["labels_sha256"]
    assert changed_inputs(work, run, record) is None
    flipped = [{**r, "Finding Labels": r["Finding Labels"].replace("Mass", "Effusion")}
               for r in rows]                                      # every Mass label removed
    write_table(table, flipped)
    C.main(argv)                                                   # same flags, edited table
    again = read_done(work / "cohort")
    assert again["arguments_hash"] == first["arguments_hash"]
    assert again["content_sha256"] != first["content_sha256"]
    assert changed_inputs(work, run, record).startswith(
        f"{run}: trained on another cohort than WORK holds now: its "
        "cohort.csv/splits.csv/table1.csv differ")


def test_table1_is_read_by_the_report_only_with_the_bytes_the_cohort_wrote(table, tmp_path):
    """cxrstats.report copies cohort/table1.csv into its Table 1: a count edited by hand (the file
    still well formed) is refused by its sha256 against done.json, naming the file."""
    work = tmp_path / "work"
    C.main(["--labels", str(table), "--out", str(work / "cohort"), "--per-label", str(CAP),
            "--no-finding", str(CAP)])
    read_finished_cohort(work)
    rows = read_csv(work / "cohort" / "table1.csv")
    rows[0]["images"] = str(int(rows[0]["images"]) + 1)
    write_csv(work / "cohort" / "table1.csv", list(rows[0]), [list(r.values()) for r in rows])
    with pytest.raises(IncompleteRunError, match=r"cohort/table1.csv: changed since the cohort "
                                                 r".*re-run the cohort"):
        read_finished_cohort(work)                                 # the report's reader
