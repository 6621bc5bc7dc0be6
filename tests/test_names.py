"""Names read from tables and records never escape their folder (cxrstats.foundation.names), what a
record points to is checked, and links inside a work folder keep working without a stage ever
emptying a folder of the user's own files through one."""
import json
import os
import unicodedata

import numpy as np
import pytest
from PIL import Image

from cxrcls.cohort import read_label_table
from cxrcls.files import check_unique
from cxrseg import predict
from cxrseg.pairs import image_files, load_stack
from cxrseg.prompts import Prior
from cxrseg.records import PREDICT, PREDICT_STARTED, previous_predict_outputs
from cxrstats import tightness
from cxrstats.foundation.fileio import (FOLDER_MARKER, ForeignFolderError, begin_run,
                                        claim_folder, input_identity, read_done, write_done)
from cxrstats.foundation.names import inside, plain_name
from cxrstats.foundation.ownership import main as ownership_main
from cxrstats.results import REPORT_DONE, changed_inputs, run_entry
from synthetic_pairs import write_stack

NFC, NFD = unicodedata.normalize("NFC", "café.png"), unicodedata.normalize("NFD", "café.png")
ESCAPING = ["../x.png", "/etc/passwd", ".", "..", "", "C:\\x.png", "a\\..\\b.png", "a\x00b.png"]
CONFUSING = ["a\nb.png", "a\rb.png", "a\tb.png", " a.png", "x" * 252 + ".png"]


@pytest.mark.parametrize("name", ESCAPING + CONFUSING)
def test_a_name_in_a_table_is_a_plain_file_name(name):
    with pytest.raises(ValueError, match=r"labels.csv: line 2: image name .* is not a plain file"):
        plain_name(name, "labels.csv: line 2")


@pytest.mark.parametrize("name", ["00000001_000.png", NFC, NFD, "a b.png", "1.2.840.1"])
def test_plain_names_pass(name):
    assert plain_name(name, "t.csv") == name


@pytest.mark.parametrize("relative", ESCAPING + ["runs//split0", "runs/./split0",
                                                 "runs/../../t/runs/x/split0"])
def test_a_path_in_a_record_stays_inside_its_folder(tmp_path, relative):
    with pytest.raises(ValueError, match=r"done.json: runs\[0\]: folder .* is not a path inside"):
        inside(tmp_path, relative, "done.json: runs[0]", what="folder")
    run = "runs/resnet50_m15/split0"
    assert inside(tmp_path, run, "r") == tmp_path / run


def label_table(tmp_path, names):
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write("Image Index,Finding Labels,Patient ID\n")
        for i, name in enumerate(names):
            quoted = '"' + name.replace('"', '""') + '"'
            f.write(f"{quoted},No Finding,{i}\n")
    return path


@pytest.mark.parametrize("name", ["a\nb.png", "x" * 300 + ".png"])
def test_a_label_table_naming_a_confusing_image_is_refused_naming_the_line(tmp_path, name):
    with pytest.raises(ValueError, match=r"labels.csv: line 3: image name .* not a plain file"):
        read_label_table(label_table(tmp_path, ["ok.png", name]))


def test_one_image_in_two_unicode_forms_is_listed_twice(tmp_path):
    with pytest.raises(ValueError, match=r"on line 2 and on line 3 \(compared in Unicode NFC\)"):
        read_label_table(label_table(tmp_path, [NFC, NFD]))
    with pytest.raises(ValueError, match=r"listed twice .*another Unicode form"):
        check_unique([NFC, "b.png", NFD], "cohort.csv")


def test_two_image_files_whose_stems_differ_in_unicode_form_are_refused(tmp_path):
    for name in (NFC, NFD):
        Image.new("L", (8, 8)).save(tmp_path / name)
    if len(list(tmp_path.iterdir())) < 2:
        pytest.skip("this file system keeps one name per Unicode form")
    with pytest.raises(ValueError, match="differ only in case or Unicode form"):
        image_files(tmp_path)


@pytest.mark.parametrize("name", ["../x.png", "/tmp/x.png", "a\x00b.png"])
def test_an_index_naming_an_image_outside_its_folder_is_refused(tmp_path, name):
    write_stack(tmp_path, [np.zeros((8, 8), np.uint8)] * 2, ["a.png", name])
    with pytest.raises(ValueError, match=r"index.csv: row 1: image name .* not a plain file"):
        load_stack(tmp_path / "images.npy", tmp_path / "index.csv")


def finished_work(work):
    """WORK in outline: a finished cohort, one finished run recording it, the report's record."""
    write_done(work / "cohort", {"seed": 0}, [])
    identity = input_identity(json.loads((work / "cohort" / "done.json").read_text()))
    run = work / "runs" / "resnet50_m15" / "split0"
    write_done(run, {"out": "x"}, [], inputs={"cohort": identity})
    (work / "results").mkdir()
    (work / "results" / "auroc_by_split.csv").write_text(
        "setting,split,label,auroc\n" + "".join(f"resnet50_{s},0,{label},0.7\n"
                                                for s in ("original", "m15")
                                                for label in ("Mass", "macro")))
    write_done(work / "results", {}, ["auroc_by_split.csv"], done=REPORT_DONE,
               runs=[run_entry(work, run)], cohort=run_entry(work, work / "cohort"))
    return run


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_report_record_pointing_at_another_work_folders_run_is_refused(tmp_path, how):
    """WORK copied, its run removed and the record edited to point at the original's identical
    run: the copy's tightness must not read the other folder's run as its own."""
    finished_work(tmp_path / "a")
    other = finished_work(tmp_path / "b")          # the same bytes: the sha256 check passes
    record_path = tmp_path / "b" / "results" / REPORT_DONE
    record = json.loads(record_path.read_text())
    moved = tmp_path / "a" / "runs" / "resnet50_m15" / "split0"
    record["runs"][0]["folder"] = ("../a/runs/resnet50_m15/split0" if how == "relative"
                                   else str(moved))
    record_path.write_text(json.dumps(record))
    for path in other.iterdir():
        path.unlink()
    other.rmdir()
    with pytest.raises(SystemExit, match=rf"{record_path}: runs\[0\]: folder .* is not a path "
                                          f"inside {tmp_path / 'b'}"):
        tightness.main(["--work", str(tmp_path / "b")])


def test_a_run_record_naming_an_input_outside_work_is_refused(tmp_path):
    run = finished_work(tmp_path / "a")
    finished_work(tmp_path / "b")
    record = json.loads((run / "done.json").read_text())
    elsewhere = {**record, "inputs": {"../b/cohort": record["inputs"]["cohort"]}}
    with pytest.raises(ValueError, match=r"done.json: inputs: input '../b/cohort' is not a path"):
        changed_inputs(tmp_path / "a", run, elsewhere)
    outside = tmp_path / "b" / "results" / "auroc_by_split.csv"
    masks = {**record, "mask_sha256": {str(outside): "0" * 64}}
    with pytest.raises(ValueError, match=r"done.json: mask_sha256: mask file .* is not a path"):
        changed_inputs(tmp_path / "a", run, masks)


def test_a_completion_record_listing_a_file_outside_its_folder_is_refused(tmp_path):
    (tmp_path / "secret.txt").write_text("x")
    write_done(tmp_path / "masks", {}, [])
    record = tmp_path / "masks" / "done.json"
    record.write_text(json.dumps({"outputs": ["../secret.txt"]}))
    with pytest.raises(ValueError, match=r"done.json: outputs\[0\]: output '../secret.txt'"):
        read_done(tmp_path / "masks")


@pytest.mark.parametrize("record", [PREDICT, PREDICT_STARTED])
def test_a_prediction_record_naming_a_file_outside_is_refused_not_skipped(tmp_path, record):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / record).write_text(json.dumps({"outputs": ["raw/a.png", "../b.png"]}))
    with pytest.raises(ValueError, match=rf"{record}: outputs\[1\]: output '../b.png'"):
        previous_predict_outputs(tmp_path / "out")


def users_folder(tmp_path):
    mine = tmp_path / "my_masks"
    mine.mkdir()
    (mine / "a.png").write_bytes(b"my own mask")
    return mine


def test_a_sub_folder_linked_to_the_users_files_is_never_emptied(tmp_path):
    """A finished prediction lists raw/a.png; raw/ is then replaced by a link to the user's own
    masks, holding an a.png: the next run must not remove it through the link."""
    out, mine = tmp_path / "out", users_folder(tmp_path)
    begin_run(out, ["raw/a.png"], done=PREDICT)
    claim_folder(out / "raw")
    (out / "raw" / "a.png").write_bytes(b"predicted")
    write_done(out, {}, ["raw/a.png"], done=PREDICT)
    (out / "raw" / "a.png").unlink()
    (out / "raw" / FOLDER_MARKER).unlink()
    (out / "raw").rmdir()
    os.symlink(mine, out / "raw")
    with pytest.raises(ForeignFolderError, match="my_masks.*holds files this toolkit did not"):
        begin_run(out, previous_predict_outputs(out), done=PREDICT)
    assert (mine / "a.png").read_bytes() == b"my own mask"


def test_a_folder_prediction_never_writes_into_a_linked_folder_of_the_users_files(tmp_path):
    images, mine = tmp_path / "cxrs", users_folder(tmp_path)
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), np.uint8)).save(
        images / "a.png")
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    out = claim_folder(tmp_path / "out")           # the toolkit's folder, marked
    os.symlink(mine, out / "m15")                  # m15/ linked by hand before the first run
    with pytest.raises(SystemExit, match="my_masks.*holds files this toolkit did not write"):
        predict.main(["--images", str(images), "--checkpoint", "micro", "--prior", str(prior),
                      "--threshold", "0.01", "--out", str(out), "--device", "cpu"])
    assert [p.name for p in mine.iterdir()] == ["a.png"]
    assert (mine / "a.png").read_bytes() == b"my own mask"


def test_stage_folders_linked_to_another_disk_keep_a_work_folder_usable(tmp_path, capsys):
    """cache/ moved to a fast disk (marked), runs/ linked to an empty folder: WORK is still a
    work folder for Make and for clean-work, which leaves the linked folders in place; a link to
    a folder of the user's own files, or a link loop, is not the toolkit's."""
    work, disk = tmp_path / "work", tmp_path / "disk"
    work.mkdir()                                   # Make makes WORK: not marked
    claim_folder(work / "seg")
    claim_folder(disk / "cache")
    (disk / "cache" / "images.npy").write_bytes(b"x")
    (disk / "runs").mkdir()
    os.symlink(disk / "cache", work / "cache")
    os.symlink(disk / "runs", work / "runs")
    assert ownership_main(["--check-use", str(work)]) == 0
    assert capsys.readouterr().out.strip() == ""
    claim_folder(work / "runs" / "resnet50_m15" / "split0")   # a stage writes through the link
    assert ownership_main(["--check-work", str(work)]) == 0
    assert f"{work / 'cache'} is a link" in capsys.readouterr().err
    os.symlink(work, work / "loop")
    assert ownership_main(["--check-work", str(work)]) == 1
    assert "holds 'loop'" in capsys.readouterr().err
    (work / "loop").unlink()
    os.symlink(users_folder(tmp_path), work / "mine")
    assert ownership_main(["--check-work", str(work)]) == 1
    assert "holds 'mine/a.png'" in capsys.readouterr().err
