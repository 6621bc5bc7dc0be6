"""cxrseg.finetune on bad input: range-checked flags, a killed run, empty masks, --resume through
the guarded reader and only with the same settings and inputs (by content), augmentation flags, a
foreign output folder.

Every run fine-tunes the random `micro` model on the tiny synthetic study of conftest.py."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder
from cxrseg import finetune, postprocess
from cxrseg.engine import load_model
from cxrseg.records import FINETUNE, FINETUNE_STAGE, require_finished
from cxrstats import summary
from cxrstats.foundation.fileio import IncompleteRunError, read_csv, write_done
from synthetic_pairs import (copy_seg, finetune_argv, predict_folder, run_evaluate, run_finetune,
                             run_split, two_lungs, write_pairs)
from vendor_medsam.configs import CONFIGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REQUIRED = ["--images", "i", "--masks", "m", "--splits", "s.csv", "--out", "o"]
BAD_FLAGS = [["--epochs", "-1"], ["--patience", "0"], ["--batch-size", "0"], ["--lr", "0"],
             ["--lr", "nan"], ["--weight-decay", "-1"], ["--box-shift", "-5"],
             ["--prior-box-fraction", "1.5"], ["--fold", "-1"], ["--seed", "-1"]]


@pytest.mark.parametrize("flag", BAD_FLAGS, ids=" ".join)
def test_out_of_range_flags_stop_at_parse_time(flag, capsys):
    assert_refused_at_parse(finetune.main, REQUIRED + flag, flag[0], capsys)


def test_config_choices_come_from_vendor_configs(monkeypatch):
    monkeypatch.setitem(CONFIGS, "extra", CONFIGS["micro"])
    assert finetune.build_parser().parse_args(REQUIRED + ["--config", "extra"]).config == "extra"


def test_refuses_a_foreign_out_folder_with_a_clean_error(study, tmp_path):
    assert_refuses_foreign_folder(lambda out: run_finetune(study, out, "--epochs", "0"),
                                  tmp_path / "mine")


def test_a_killed_finetune_leaves_nothing_that_evaluate_or_predict_accepts(study, tmp_path,
                                                                          monkeypatch):
    seg = copy_seg(study, tmp_path)
    old_curves = (seg / "curves.csv").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(finetune, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):     # a fresh run into the finished folder, killed
        run_finetune(study, seg)
    assert (seg / "best.pt").is_file()        # the new run's epoch-0 checkpoint
    assert not (seg / "done_finetune.json").exists()
    assert not (seg / "curves.csv").exists() and old_curves   # the old run's outputs are gone
    with pytest.raises(SystemExit, match=r"error: .*no done_finetune.json.*did not finish"):
        run_evaluate(study, seg, "--out", str(tmp_path / "eval.csv"))
    with pytest.raises(SystemExit, match=r"error: .*no done_finetune.json"):
        predict_folder(study, study / "images", tmp_path / "pngs",
                       "--checkpoint", str(seg / "best.pt"))


def test_finetune_warns_about_empty_masks_and_refuses_when_all_are(tmp_path, capsys):
    half = write_pairs(tmp_path / "half", empty=range(0, 12, 2))
    run_split(half)
    run_finetune(half, half / "seg", "--epochs", "0")
    err = capsys.readouterr().err
    assert "warning" in err and "masks are empty" in err and "x00" in err
    assert (half / "seg" / "done_finetune.json").is_file()
    none = write_pairs(tmp_path / "none", empty=range(12))
    run_split(none)
    with pytest.raises(SystemExit, match=r"error: .*all \d+ training masks are empty"):
        run_finetune(none, none / "seg")


class _RunsCode:
    """Pickles as a call to eval(); the guarded reader must refuse it instead of running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def test_resume_reads_last_pt_through_the_guarded_reader(study, tmp_path):
    seg = copy_seg(study, tmp_path)
    good = (seg / "last.pt").read_bytes()
    (seg / "last.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(SystemExit, match=r"error: .*last.pt: not a readable PyTorch checkpoint"):
        run_finetune(study, seg, "--epochs", "2", "--resume")
    marker = tmp_path / "code_ran"
    torch.save({"model": {}, "hook": _RunsCode(marker)}, seg / "last.pt")
    with pytest.raises(SystemExit, match=r"error: .*last.pt: refused to load"):
        run_finetune(study, seg, "--epochs", "2", "--resume")
    assert not marker.exists()
    torch.save({"model": {}, "epoch": 1}, seg / "last.pt")
    with pytest.raises(SystemExit, match=r"error: .*last.pt: not a cxrseg.finetune last.pt"):
        run_finetune(study, seg, "--epochs", "2", "--resume")
    (seg / "last.pt").write_bytes(good)
    last = torch.load(seg / "last.pt", weights_only=True)
    torch.save({**last, "optimizer": {"state": {}, "param_groups": []}}, seg / "last.pt")
    with pytest.raises(SystemExit, match=r"error: .*last.pt: cannot restore the training state"):
        run_finetune(study, seg, "--epochs", "2", "--resume")   # right keys, Adam's state unfit
    assert (seg / "done_finetune.json").is_file()   # refused before the finished run was touched


@pytest.mark.parametrize("changed", [
    ["--loss", "dicefocal"], ["--lr", "0.01"], ["--prompt", "box+points"], ["--box-shift", "3"],
    ["--prior-box-fraction", "0.5"], ["--seed", "1"], ["--batch-size", "2"], ["--train", "all"]])
def test_resume_refuses_settings_that_change_the_result(study, changed):
    before = (study / "seg" / "last.pt").read_bytes()
    key = changed[0][2:].replace("-", "_")
    with pytest.raises(SystemExit, match=rf"error: .*last.pt: cannot resume with different "
                                         rf"settings .*'{key}'"):
        run_finetune(study, study / "seg", "--epochs", "2", "--resume", *changed)
    assert (study / "seg" / "last.pt").read_bytes() == before
    assert (study / "seg" / "done_finetune.json").is_file()


def test_augment_copies_must_go_with_augment_and_be_positive(study, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_finetune(study, tmp_path / "a", "--augment", "opacity", "--augment-copies", "0")
    assert stop.value.code == 2 and "argument --augment-copies" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"^error: --augment-copies 2 needs --augment"):
        run_finetune(study, tmp_path / "b", "--augment-copies", "2")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    run_finetune(study, tmp_path / "c", "--epochs", "0")
    recorded = json.loads((tmp_path / "c" / "done_finetune.json").read_text())["arguments"]
    assert recorded["augment"] == [] and recorded["augment_copies"] == 0


def test_resume_refuses_another_precision_and_the_cache_keeps_them_apart(study, tmp_path,
                                                                         monkeypatch):
    import cxrstats.foundation.device as device
    monkeypatch.setattr(device, "cpu_runs_bf16", lambda: True)   # bf16 autocast runs on any CPU
    seg = copy_seg(study, tmp_path)
    recorded = torch.load(seg / "last.pt", weights_only=True)["settings"]["precision"]
    assert json.loads((seg / "done_finetune.json").read_text())["precision"] == recorded
    other = "fp32" if recorded == "bf16" else "bf16"
    with pytest.raises(SystemExit, match=r"error: .*last.pt: cannot resume with different "
                                         r"settings .*'precision'"):
        run_finetune(study, seg, "--epochs", "2", "--resume", "--precision", other)
    run_finetune(study, seg, "--precision", other)
    assert sorted(p.name.rsplit("_", 1)[1] for p in seg.glob("embeddings_*.pt")) == [
        "bf16.pt", "fp32.pt"]


def test_resume_refuses_changed_image_or_mask_files_and_another_starting_checkpoint(study,
                                                                                  tmp_path):
    data = tmp_path / "data"
    shutil.copytree(study, data, ignore=shutil.ignore_patterns("cache"))
    train = next(r["stem"] for r in read_csv(data / "seg" / "splits.csv") if r["part"] == "train")
    mask = data / "masks" / f"{train}.png"
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(mask)      # same name, other lungs
    with pytest.raises(SystemExit, match=r"error: .*last.pt: cannot resume with different "
                                         r"settings \{'train_files'"):
        run_finetune(data, data / "seg", "--epochs", "2", "--resume")
    start = tmp_path / "start.pt"
    torch.save(load_model("micro", seed=0).state_dict(), start)
    seg = tmp_path / "seg"
    run_finetune(study, seg, "--checkpoint", str(start), "--config", "micro")
    torch.save(load_model("micro", seed=1).state_dict(), start)         # same path, other weights
    with pytest.raises(SystemExit, match=r"error: .*last.pt: cannot resume with different "
                                         r"settings \{'checkpoint_id'"):
        run_finetune(study, seg, "--checkpoint", str(start), "--config", "micro", "--epochs", "2",
                     "--resume")


def test_a_finished_run_is_reused_only_as_the_run_its_arguments_make_from_todays_files(
        study, tmp_path):
    """check_finished (`--check-finished`), which the experiments ask before they reuse a run by
    its folder: the same arguments pass; other settings, another number of epochs, a changed mask
    file or an output edited since are refused, naming the file; nothing in the run is written."""
    data = tmp_path / "data"
    shutil.copytree(study, data, ignore=shutil.ignore_patterns("cache"))
    seg = data / "seg"
    before = {p.name: p.read_bytes() for p in seg.iterdir() if p.is_file()}
    assert finetune.check_finished(finetune_argv(data, seg))["best_epoch"] in (0, 1)
    finetune.main(finetune_argv(data, seg, "--check-finished"))       # the same, from the CLI
    with pytest.raises(SystemExit, match=r"^error: .*last.pt: cannot resume with different "
                                         r"settings \{'seed'"):
        finetune.main(finetune_argv(data, seg, "--check-finished", "--seed", "3"))
    with pytest.raises(ValueError, match=r"last.pt: cannot resume with different settings "
                                         r"\{'lr'"):
        finetune.check_finished(finetune_argv(data, seg, "--lr", "0.01"))
    with pytest.raises(ValueError, match=r"done_finetune.json: a run with other settings "
                                         r"\{'epochs': \(1, 2\)\}"):
        finetune.check_finished(finetune_argv(data, seg, "--epochs", "2"))
    assert {p.name: p.read_bytes() for p in seg.iterdir() if p.is_file()} == before
    train = next(r["stem"] for r in read_csv(seg / "splits.csv") if r["part"] == "train")
    mask = data / "masks" / f"{train}.png"
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(mask)      # same name, other lungs
    with pytest.raises(ValueError, match=r"last.pt: cannot resume with different settings "
                                         r"\{'train_files'"):
        finetune.check_finished(finetune_argv(data, seg))
    with open(seg / "curves.csv", "a") as handle:
        handle.write("9,val,0.1,0.1,0.1\n")
    with pytest.raises(IncompleteRunError, match="curves.csv"):
        finetune.check_finished(finetune_argv(data, seg))


def test_curves_and_priors_are_read_only_with_the_bytes_finetune_wrote(study, tmp_path):
    """seg/curves.csv, prior.json and shape_prior.json edited by hand keep their form: the
    report's summary, cxrseg.figures, the segmenter folder's readers and the post-processing's
    shape check refuse them by their sha256 against done_finetune.json, naming the file."""
    seg = copy_seg(study, tmp_path)
    assert "epoch(s) of fine-tuning" in summary.seg_summary(tmp_path)[0]
    curves = (seg / "curves.csv").read_text()
    (seg / "curves.csv").write_text(curves.replace("\n0,train,", "\n0,train,9", 1))
    assert read_csv(seg / "curves.csv")                          # still a readable curves.csv
    why = "seg/curves.csv: changed since the cxrseg.finetune run wrote it"
    assert why in summary.seg_summary(tmp_path)[0]
    with pytest.raises(IncompleteRunError, match=why):
        require_finished(seg / "curves.csv", FINETUNE, FINETUNE_STAGE)   # cxrseg.figures
    (seg / "curves.csv").write_text(curves)
    prior = json.loads((seg / "prior.json").read_text())
    (seg / "prior.json").write_text(json.dumps(prior, indent=1))  # the same prior, other bytes
    with pytest.raises(IncompleteRunError, match="seg/prior.json: changed since"):
        require_finished(seg / "prior.json", FINETUNE, FINETUNE_STAGE)   # --segmenter's prior
    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "raw.npy", np.stack([two_lungs(), two_lungs()]))
    np.save(masks / "images.npy", np.full((2, 30, 30), 120, np.uint8))
    (masks / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    write_done(masks, {}, ["raw.npy", "index.csv"], done="done_predict.json")
    shape = json.loads((seg / "shape_prior.json").read_text())
    (seg / "shape_prior.json").write_text(json.dumps({**shape, "area_sd": 1e-6}))
    with pytest.raises(SystemExit, match="seg/shape_prior.json: changed since the cxrseg.finetune"):
        postprocess.main(["--masks", str(masks / "raw.npy"), "--index", str(masks / "index.csv"),
                          "--shape-prior", str(seg / "shape_prior.json"),
                          "--images", str(masks / "images.npy"), "--out", str(masks)])
