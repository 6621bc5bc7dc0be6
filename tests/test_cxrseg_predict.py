"""cxrseg.predict: never writes over the user's files, records what its masks depend on by content,
takes --threshold-from only for the same weights and only from a finished evaluate, refuses
all-empty masks and bad flags, and names degenerate images while still segmenting them.

Every run segments with the random `micro` model or the tiny synthetic study of conftest.py."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder
from cxrseg import postprocess, predict
from cxrseg.degenerate import MIN_SIDE
from cxrseg.engine import checkpoint_id
from cxrseg.records import MASK_FACTS, index_rows_sha256
from cxrstats.foundation.fileio import FOLDER_MARKER, file_sha256, read_csv
from synthetic_pairs import (copy_seg, predict_folder, run_evaluate, run_finetune, run_predict,
                             write_stack)
from vendor_medsam.configs import CONFIGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REQUIRED = ["--images", "i", "--checkpoint", "micro", "--prior", "p.json", "--out", "o.npy"]
BAD_FLAGS = [["--threshold", "1.5"], ["--threshold", "0"], ["--refine", "-1"],
             ["--batch-size", "0"], ["--seed", "-1"]]


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("flag", BAD_FLAGS, ids=" ".join)
def test_out_of_range_flags_stop_at_parse_time(flag, capsys):
    assert_refused_at_parse(predict.main, REQUIRED + flag, flag[0], capsys)


def test_config_choices_come_from_vendor_configs(monkeypatch):
    monkeypatch.setitem(CONFIGS, "extra", CONFIGS["micro"])
    assert predict.build_parser().parse_args(REQUIRED + ["--config", "extra"]).config == "extra"


# ----------------------------------------------------------------------------- the user's files

def test_refuses_a_foreign_out_folder_with_a_clean_error(study, tmp_path):
    assert_refuses_foreign_folder(lambda out: run_predict(study, study / "seg", out / "raw.npy"),
                                  tmp_path / "mine")


def test_predict_refuses_the_users_image_folder_as_out(study, tmp_path):
    images = tmp_path / "radiographs"
    shutil.copytree(study / "images", images)
    before = snapshot(images)
    with pytest.raises(SystemExit) as stop:
        predict_folder(study, images, images)
    assert str(stop.value.code).startswith(f"error: --out {images}: holds the input")
    assert snapshot(images) == before


def test_predict_refuses_a_folder_of_ground_truth_masks_as_out(study, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(study / "masks", masks)
    before = snapshot(masks)
    with pytest.raises(SystemExit, match=r"^error: .*masks: holds files this toolkit did not"):
        predict_folder(study, study / "images", masks)
    assert snapshot(masks) == before


def test_predict_keeps_out_apart_from_the_inputs_even_in_a_toolkit_folder(study, tmp_path):
    # A folder the toolkit marked (e.g. an earlier predict's PNG masks) given as input and output.
    images = tmp_path / "work" / "images"
    shutil.copytree(study / "images", images)
    (images / FOLDER_MARKER).write_text("")
    before = snapshot(tmp_path / "work")
    cases = [(images, images, r"holds the input"),
             (images, images / "masks", r"lies inside the images folder"),
             (images, tmp_path / "work", r"holds the input")]
    for source, out, problem in cases:
        with pytest.raises(SystemExit, match=rf"^error: --out .*{problem}"):
            predict_folder(study, source, out)
    cache = tmp_path / "cache"                        # a stack: --out beside images.npy
    shutil.copytree(study / "cache", cache)
    (cache / FOLDER_MARKER).write_text("")
    cached = snapshot(cache)
    with pytest.raises(SystemExit, match=r"^error: --out .*holds the input .*images.npy"):
        predict.main(["--images", str(cache / "images.npy"), "--index", str(cache / "index.csv"),
                      "--checkpoint", "micro", "--prior", str(study / "seg" / "prior.json"),
                      "--out", str(cache / "raw.npy"), "--device", "cpu"])
    assert snapshot(tmp_path / "work") == before and snapshot(cache) == cached


# ----------------------------------------------------------------------------- records

def test_predict_records_what_its_masks_depend_on(study, predicted):
    done = json.loads((predicted / "masks" / "done_predict.json").read_text())
    seg, cache = study / "seg", study / "cache"
    names = [line.split(",", 1)[1] for line in (cache / "index.csv").read_text().split()[1:]]
    assert done["checkpoint_id"] == f"sha256:{file_sha256(seg / 'best.pt')}"
    assert done["prior_sha256"] == file_sha256(seg / "prior.json")
    assert done["images_sha256"] == file_sha256(cache / "images.npy")
    assert done["index_sha256"] == done["rows_sha256"] == index_rows_sha256(enumerate(names))
    chosen = json.loads((seg / "done_evaluate.json").read_text())["thresholds"]
    assert done["threshold"] == chosen[str(seg / "best.pt")]
    shard = json.loads((predicted / "shards" / "1of2" / "done_predict.json").read_text())
    assert {k: shard[k] for k in MASK_FACTS} == {k: done[k] for k in MASK_FACTS}
    assert shard["rows_sha256"] == index_rows_sha256((i, names[i])
                                                     for i in range(len(names) // 2, len(names)))


# ----------------------------------------------------------------------------- threshold-from

def test_predict_threshold_from_needs_a_finished_evaluate(study, tmp_path):
    shutil.copy(study / "seg" / "eval.csv", tmp_path / "eval.csv")
    with pytest.raises(SystemExit, match=r"error: .*no done_evaluate.json"):
        predict_folder(study, study / "images", tmp_path / "pngs",
                       "--threshold-from", str(tmp_path / "eval.csv"))


def test_threshold_from_matches_the_checkpoint_by_content(study, tmp_path, monkeypatch):
    seg = copy_seg(study, tmp_path)
    run_evaluate(study, seg)                                 # evaluated as an absolute path
    chosen = json.loads((seg / "done_evaluate.json").read_text())["thresholds"]
    monkeypatch.chdir(tmp_path)
    predict.main(["--images", str(study / "cache" / "images.npy"),
                  "--index", str(study / "cache" / "index.csv"),
                  "--checkpoint", "../" + tmp_path.name + "/seg/best.pt",
                  "--prior", "seg/prior.json", "--threshold-from", "seg/eval.csv",
                  "--out", "masks/raw.npy", "--device", "cpu"])
    done = json.loads((tmp_path / "masks" / "done_predict.json").read_text())
    assert done["threshold"] == chosen[str(seg / "best.pt")]
    assert done["checkpoint_id"] == checkpoint_id(str(seg / "best.pt"))
    run_finetune(study, seg, "--seed", "1")                  # trained again, not re-evaluated
    with pytest.raises(SystemExit, match=r"^error: .*eval.csv: no validation rows for checkpoint "
                                         r"seg/best.pt \(sha256:.*weights differ"):
        predict.main(["--images", str(study / "cache" / "images.npy"),
                      "--index", str(study / "cache" / "index.csv"),
                      "--checkpoint", "seg/best.pt", "--prior", "seg/prior.json",
                      "--threshold-from", "seg/eval.csv", "--out", "masks2/raw.npy",
                      "--device", "cpu"])


# ----------------------------------------------------------------------------- masks

def test_predict_fails_when_every_mask_is_empty(study, tmp_path):
    with pytest.raises(SystemExit, match=r"error: all 12 predicted masks are empty at thres"):
        predict_folder(study, study / "images", tmp_path / "pngs", "--threshold", "0.9999")
    assert not (tmp_path / "pngs" / "done_predict.json").exists()


def test_predict_names_degenerate_images_and_postprocess_flags_them(study, tmp_path, capsys):
    stack = np.load(study / "cache" / "images.npy")
    names = [line.split(",", 1)[1] for line in
             (study / "cache" / "index.csv").read_text().split()[1:]]
    stack[3] = 0                                                         # a blank export
    stack[5] = 90 + (np.arange(stack[5].size) % 3).reshape(stack[5].shape)  # nearly blank
    write_stack(tmp_path / "cache", list(stack), names)
    out = tmp_path / "masks"
    predict.main(["--images", str(tmp_path / "cache" / "images.npy"),
                  "--index", str(tmp_path / "cache" / "index.csv"), "--checkpoint", "micro",
                  "--prior", str(study / "seg" / "prior.json"), "--threshold", "0.45",
                  "--out", str(out / "raw.npy"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert f"row 3 {names[3]}: constant (every pixel 0)" in err
    assert f"row 5 {names[5]}: featureless" in err and "2 of 12 images" in err
    assert np.load(out / "raw.npy").shape == stack.shape              # every mask written
    done = json.loads((out / "done_predict.json").read_text())
    assert [d["row"] for d in done["degenerate"]] == [3, 5]
    postprocess.main(["--masks", str(out / "raw.npy"), "--index", str(tmp_path / "cache" /
                                                                       "index.csv"),
                      "--erode", "1", "--out", str(out)])
    qc = (out / "qc.csv").read_text().splitlines()
    assert qc[0].split(",")[-1] == "note"
    assert "degenerate_image" in qc[4] and "degenerate image: constant (every pixel 0)" in qc[4]
    assert "degenerate_image" in qc[6] and "degenerate image: featureless" in qc[6]
    assert sum("degenerate" in line for line in qc) == 2


def test_a_stack_into_a_folder_refuses_rows_that_share_a_stem(study, tmp_path):
    stack = np.load(study / "cache" / "images.npy")[:4]
    write_stack(tmp_path / "cache", list(stack), ["a.png", "b.png", "a.jpg", "a.tif"])
    with pytest.raises(SystemExit, match=r"error: .*index.csv: 1 stem\(s\) name several rows, "
                                         r"e.g. 'a': row 0 a.png, row 2 a.jpg, row 3 a.tif"):
        predict.main(["--images", str(tmp_path / "cache" / "images.npy"),
                      "--index", str(tmp_path / "cache" / "index.csv"), "--checkpoint", "micro",
                      "--prior", str(study / "seg" / "prior.json"), "--threshold", "0.45",
                      "--out", str(tmp_path / "pngs"), "--device", "cpu"])
    assert not (tmp_path / "pngs").exists()


def test_predict_writes_a_mask_for_an_image_too_small_to_be_a_radiograph(study, tmp_path,
                                                                          capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(study / "images" / "x00.png", images / "x00.png")
    small = np.random.default_rng(0).integers(0, 255, (MIN_SIDE // 2, MIN_SIDE // 2))
    Image.fromarray(small.astype(np.uint8)).save(images / "tiny.png")
    predict_folder(study, images, tmp_path / "pngs")
    assert f"tiny.png: smaller than {MIN_SIDE} px" in capsys.readouterr().err
    assert Image.open(tmp_path / "pngs" / "raw" / "tiny.png").size == (MIN_SIDE // 2,
                                                                         MIN_SIDE // 2)
    assert (tmp_path / "pngs" / "raw" / "x00.png").is_file()
    qc = {r["image"]: r for r in read_csv(tmp_path / "pngs" / "qc.csv")}
    assert "degenerate_image" in qc["tiny.png"]["flag"].split(";")
    assert qc["tiny.png"]["note"].startswith("degenerate image: smaller than")


def test_fp32_never_enters_autocast_and_the_precision_is_recorded(study, tmp_path, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("autocast entered under --precision fp32")
    monkeypatch.setattr(torch, "autocast", refuse)
    run_predict(study, study / "seg", tmp_path / "m" / "raw.npy", "--precision", "fp32")
    assert "precision" in MASK_FACTS
    assert json.loads((tmp_path / "m" / "done_predict.json").read_text())["precision"] == "fp32"
    assert json.loads((tmp_path / "m" / "run_predict.json").read_text())["precision"] == "fp32"
