"""cxrseg on bad input: completion records between stages, range-checked flags, duplicate stems,
mask values, empty masks, broken checkpoints, --resume with other settings, symbolic links.

Every stage runs on the random `micro` model and tiny synthetic pairs (noise plus two bright
rectangles as lungs), so the whole file takes seconds."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cliargs import with_flags
from cxrseg import evaluate, figures, finetune, postprocess, predict, split
from cxrseg.pairs import find_pairs, load_stack
from cxrseg.engine import load_model
from cxrstats.fileio import IncompleteRunError, write_done
from vendor_medsam.configs import CONFIGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

MICRO_STATE = (os.path.dirname(__file__) + "/fixtures/vendor_medsam/micro_sam/state_dict.pt")


def make_pairs(root, n=12, h=40, w=36, seed=0, empty=()):
    """n pairs x<i>.png; the masks of the indices in `empty` are all zero."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        m[rng.integers(4, 10):rng.integers(28, 36), 4:15] = 1
        m[6:34, 20:32] = 1
        img = (rng.normal(60, 10, (h, w)) + 120 * m).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"x{i:02d}.png")
        Image.fromarray(m * 255 * (i not in empty)).save(root / "masks" / f"x{i:02d}.png")
    return root


def _split(root, *extra):
    split.main(["--images", str(root / "images"), "--masks", str(root / "masks"),
                "--out", str(root / "seg" / "splits.csv"), *extra])


def _finetune(root, out, *extra):
    finetune.main(with_flags(
        ["--images", str(root / "images"), "--masks", str(root / "masks"),
         "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
         "--train", "decoder", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3",
         "--out", str(out), "--device", "cpu"], *extra))


def _evaluate(root, checkpoint, out, *extra):
    evaluate.main(["--images", str(root / "images"), "--masks", str(root / "masks"),
                   "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", str(checkpoint),
                   "--out", str(out), "--device", "cpu", *extra])


def _predict(root, checkpoint, out, *extra):
    predict.main(["--images", str(root / "images"), "--checkpoint", str(checkpoint),
                  "--prior", str(root / "seg" / "prior.json"), "--out", str(out), "--device", "cpu",
                  *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """split -> finetune -> evaluate -> predict (a stack of the images) of one tiny study."""
    root = make_pairs(tmp_path_factory.mktemp("study"))
    _split(root)
    _finetune(root, root / "seg")
    _evaluate(root, root / "seg" / "best.pt", root / "seg" / "eval.csv")
    files = sorted((root / "images").iterdir())
    np.save(root / "images.npy", np.stack([np.asarray(Image.open(f)) for f in files]))
    rows = "".join(f"{i},{f.name}\n" for i, f in enumerate(files))
    (root / "index.csv").write_text("row,image\n" + rows)
    predict.main(["--images", str(root / "images.npy"), "--index", str(root / "index.csv"),
                  "--checkpoint", str(root / "seg" / "best.pt"),
                  "--prior", str(root / "seg" / "prior.json"),
                  "--threshold-from", str(root / "seg" / "eval.csv"),
                  "--out", str(root / "masks_out" / "raw.npy"), "--device", "cpu"])
    return root


def _copy_seg(run, tmp_path):
    shutil.copytree(run / "seg", tmp_path / "seg")
    return tmp_path / "seg"


# ----------------------------------------------------------------------------- completion records

def test_every_stage_writes_its_record_listing_its_outputs(run):
    import json
    for folder, name, expected in [
            (run / "seg", "done_split.json", {"splits.csv"}),
            (run / "seg", "done_finetune.json", {"best.pt", "last.pt", "curves.csv", "prior.json"}),
            (run / "seg", "done_evaluate.json", {"eval.csv", "eval_per_image.csv"}),
            (run / "masks_out", "done_predict.json", {"raw.npy", "index.csv", "prompts.csv"})]:
        record = json.loads((folder / name).read_text())
        assert expected <= set(record["outputs"]), name
        assert all((folder / f).exists() for f in record["outputs"])


def test_a_killed_finetune_leaves_nothing_that_evaluate_or_predict_accepts(run, tmp_path,
                                                                          monkeypatch):
    seg = _copy_seg(run, tmp_path)
    old_curves = (seg / "curves.csv").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(finetune, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):     # a fresh run into the finished folder, killed
        _finetune(run, seg)
    assert (seg / "best.pt").is_file()        # the new run's epoch-0 checkpoint
    assert not (seg / "done_finetune.json").exists()
    assert not (seg / "curves.csv").exists() and old_curves   # the old run's outputs are gone
    with pytest.raises(SystemExit, match=r"error: .*no done_finetune.json.*did not finish"):
        _evaluate(run, seg / "best.pt", tmp_path / "eval.csv")
    with pytest.raises(SystemExit, match=r"error: .*no done_finetune.json"):
        _predict(run, seg / "best.pt", tmp_path / "pngs")


def test_a_copied_checkpoint_needs_its_own_record_but_official_weights_need_none(run, tmp_path):
    shutil.copy(run / "seg" / "best.pt", run / "seg" / "best_copy.pt")
    try:
        with pytest.raises(IncompleteRunError, match=r"best_copy.pt.*not for best_copy.pt"):
            load_model(str(run / "seg" / "best_copy.pt"))
    finally:
        (run / "seg" / "best_copy.pt").unlink()
    assert load_model(MICRO_STATE, "micro").config_name == "micro"   # a raw state dict: no record
    assert load_model(str(run / "seg" / "best.pt")).config_name == "micro"


def test_finetune_and_evaluate_need_a_finished_split(run, tmp_path):
    (tmp_path / "seg").mkdir()
    shutil.copy(run / "seg" / "splits.csv", tmp_path / "seg" / "splits.csv")   # without its record
    with pytest.raises(SystemExit, match=r"error: .*no done_split.json"):
        finetune.main(["--images", str(run / "images"), "--masks", str(run / "masks"),
                       "--splits", str(tmp_path / "seg" / "splits.csv"), "--checkpoint", "micro",
                       "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"error: .*no done_split.json"):
        evaluate.main(["--images", str(run / "images"), "--masks", str(run / "masks"),
                       "--splits", str(tmp_path / "seg" / "splits.csv"), "--checkpoint", "micro",
                       "--out", str(tmp_path / "eval.csv")])
    assert not (tmp_path / "out").exists()    # refused before anything was written


def test_predict_threshold_from_needs_a_finished_evaluate(run, tmp_path):
    shutil.copy(run / "seg" / "eval.csv", tmp_path / "eval.csv")
    with pytest.raises(SystemExit, match=r"error: .*no done_evaluate.json"):
        _predict(run, "micro", tmp_path / "pngs", "--threshold-from", str(tmp_path / "eval.csv"))


def test_postprocess_needs_a_finished_predict(tmp_path):
    np.save(tmp_path / "raw.npy", np.ones((1, 8, 8), np.uint8))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n")
    with pytest.raises(SystemExit, match=r"error: .*no done_predict.json"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path)])


def test_figures_need_finished_stages(run, tmp_path):
    (tmp_path / "cache").mkdir()
    with pytest.raises(SystemExit, match=r"error: .*masks_out.*no done_postprocess.json"):
        figures.main(["--seg", str(run / "seg"), "--cache", str(tmp_path / "cache"),
                      "--masks", str(run / "masks_out"), "--out", str(tmp_path / "fig")])


# ----------------------------------------------------------------------------- flags and values

BAD_FLAGS = [
    (split, ["--folds", "0"]), (split, ["--folds", "1"]), (split, ["--seed", "-1"]),
    (split, ["--fractions", "0.7", "-0.1", "0.4"]),
    (finetune, ["--epochs", "-1"]), (finetune, ["--patience", "0"]),
    (finetune, ["--batch-size", "0"]),
    (finetune, ["--lr", "0"]), (finetune, ["--lr", "nan"]), (finetune, ["--weight-decay", "-1"]),
    (finetune, ["--box-shift", "-5"]), (finetune, ["--prior-box-fraction", "1.5"]),
    (finetune, ["--fold", "-1"]), (finetune, ["--seed", "-1"]),
    (evaluate, ["--refine", "-1"]), (evaluate, ["--threshold", "1.5"]),
    (evaluate, ["--thresholds", "0.5", "2"]), (evaluate, ["--refine-threshold", "0"]),
    (evaluate, ["--batch-size", "0"]), (evaluate, ["--parts", "val", "tset"]),
    (predict, ["--threshold", "1.5"]), (predict, ["--threshold", "0"]),
    (predict, ["--refine", "-1"]),
    (predict, ["--batch-size", "0"]), (predict, ["--seed", "-1"]),
    (postprocess, ["--erode", "-1"]), (postprocess, ["--dilate", "15", "-5"]),
    (postprocess, ["--min-area", "1.5"]), (postprocess, ["--max-components", "0"]),
    (figures, ["--row", "-1"]),
]
REQUIRED = {split: ["--images", "i", "--masks", "m", "--out", "o.csv"],
            finetune: ["--images", "i", "--masks", "m", "--splits", "s.csv", "--out", "o"],
            evaluate: ["--images", "i", "--masks", "m", "--checkpoint", "micro", "--out", "o.csv"],
            predict: ["--images", "i", "--checkpoint", "micro", "--prior", "p.json",
                      "--out", "o.npy"],
            postprocess: ["--masks", "m.npy", "--index", "i.csv", "--out", "o"],
            figures: ["--seg", "s", "--cache", "c", "--masks", "m", "--out", "o"]}


def _case_id(x):
    return " ".join(x) if isinstance(x, list) else x.__name__.split(".")[-1]


@pytest.mark.parametrize("module, flag", BAD_FLAGS, ids=_case_id)
def test_out_of_range_flags_stop_at_parse_time(module, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(REQUIRED[module] + flag)
    assert stop.value.code == 2
    assert f"argument {flag[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("module", [finetune, evaluate, predict])
def test_config_choices_come_from_vendor_configs(module, monkeypatch):
    monkeypatch.setitem(CONFIGS, "extra", CONFIGS["micro"])
    args = module.build_parser().parse_args(REQUIRED[module] + ["--config", "extra"])
    assert args.config == "extra"


def test_predict_fails_when_every_mask_is_empty(run, tmp_path):
    with pytest.raises(SystemExit, match=r"error: all 12 predicted masks are empty at thres"):
        _predict(run, "micro", tmp_path / "pngs", "--threshold", "0.9999")
    assert not (tmp_path / "pngs" / "done_predict.json").exists()


def test_duplicate_stems_in_a_split_file_are_refused(tmp_path):
    (tmp_path / "splits.csv").write_text("stem,part\nx00,test\nx01,val\nx00,train\n")
    with pytest.raises(ValueError, match=r"splits.csv: stem\(s\) listed more than once: \['x00'\]"):
        split.read_splits(tmp_path / "splits.csv")
    (tmp_path / "folds.csv").write_text("stem,fold\nx00,0\nx01,1\nx00,1\n")
    with pytest.raises(ValueError, match=r"folds.csv: stem\(s\) listed more than once"):
        split.read_splits(tmp_path / "folds.csv", fold=0)


@pytest.mark.parametrize("fold", ["x", "-1", "1.5"])
def test_fold_values_must_be_integers(tmp_path, fold):
    (tmp_path / "folds.csv").write_text(f"stem,fold\na,0\nb,1\nc,{fold}\nd,0\ne,1\n")
    with pytest.raises(ValueError, match=rf"folds.csv: stem 'c' has fold '{fold}'"):
        split.read_splits(tmp_path / "folds.csv", fold=0)


def test_finetune_warns_about_empty_masks_and_refuses_when_all_are(tmp_path, capsys):
    half = make_pairs(tmp_path / "half", empty=range(0, 12, 2))
    _split(half)
    _finetune(half, half / "seg", "--epochs", "0")
    err = capsys.readouterr().err
    assert "warning" in err and "masks are empty" in err and "x00" in err
    assert (half / "seg" / "done_finetune.json").is_file()
    none = make_pairs(tmp_path / "none", empty=range(12))
    _split(none)
    with pytest.raises(SystemExit, match=r"error: .*all \d+ training masks are empty"):
        _finetune(none, none / "seg")


@pytest.mark.parametrize("values, dtype, problem", [
    ([-1, 0], np.int8, r"exactly 0/1, found values -1\.\.0"),
    ([0, 255], np.uint8, r"exactly 0/1, found values 0\.\.255"),
    ([0.0, 1.0], np.float32, r"0/1 of an integer or bool dtype, got dtype float32"),
])
def test_postprocess_accepts_only_exact_01_masks(tmp_path, values, dtype, problem):
    raw = np.zeros((2, 16, 16), dtype)
    raw[:, 4:12, 4:12] = values[0]
    raw[:, :4] = values[1]
    np.save(tmp_path / "raw.npy", raw)
    write_done(tmp_path, {}, ["raw.npy"], done="done_predict.json")
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    with pytest.raises(SystemExit, match=rf"error: .*raw.npy: masks must be {problem}"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "out")])


def _predicted_masks(folder):
    raw = np.zeros((2, 48, 48), bool)      # bool is accepted as well as integer 0/1
    raw[:, 10:38, 8:20] = raw[:, 10:38, 28:40] = True
    folder.mkdir(exist_ok=True)
    np.save(folder / "raw.npy", raw)
    write_done(folder, {}, ["raw.npy"], done="done_predict.json")
    (folder / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    return ["--masks", str(folder / "raw.npy"), "--index", str(folder / "index.csv"),
            "--out", str(folder)]


def test_dilate_radii_zero_allowed_duplicates_refused_old_radii_removed(tmp_path):
    args = _predicted_masks(tmp_path)
    postprocess.main(args + ["--erode", "2", "--dilate", "0", "3", "7"])
    eroded, m0 = np.load(tmp_path / "eroded.npy"), np.load(tmp_path / "m0.npy")
    np.testing.assert_array_equal(m0, eroded)                       # m0 = the eroded mask itself
    assert (np.load(tmp_path / "m7.npy") >= np.load(tmp_path / "m3.npy")).all()
    postprocess.main(args + ["--erode", "2", "--dilate", "5"])
    assert not any((tmp_path / f"m{r}.npy").exists() for r in (0, 3, 7))  # the old run's radii
    assert (tmp_path / "m5.npy").is_file() and (tmp_path / "done_postprocess.json").is_file()
    with pytest.raises(SystemExit, match=r"error: --dilate lists radius \[15\] more than once"):
        postprocess.main(args + ["--dilate", "15", "50", "15"])


# ----------------------------------------------------------------------------- checkpoints

def test_zero_byte_checkpoint_gives_a_clear_error(run, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"error: .*empty.pt: empty file \(0 bytes\)"):
        _evaluate(run, tmp_path / "empty.pt", tmp_path / "eval.csv", "--config", "micro")


class _RunsCode:
    """Pickles as a call to eval(); the guarded reader must refuse it instead of running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def test_resume_reads_last_pt_through_the_guarded_reader(run, tmp_path):
    seg = _copy_seg(run, tmp_path)
    good = (seg / "last.pt").read_bytes()
    (seg / "last.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(SystemExit, match=r"error: .*last.pt: not a readable PyTorch checkpoint"):
        _finetune(run, seg, "--epochs", "2", "--resume")
    marker = tmp_path / "code_ran"
    torch.save({"model": {}, "hook": _RunsCode(marker)}, seg / "last.pt")
    with pytest.raises(SystemExit, match=r"error: .*last.pt: refused to load"):
        _finetune(run, seg, "--epochs", "2", "--resume")
    assert not marker.exists()
    torch.save({"model": {}, "epoch": 1}, seg / "last.pt")
    with pytest.raises(SystemExit, match=r"error: .*last.pt: not a cxrseg.finetune last.pt"):
        _finetune(run, seg, "--epochs", "2", "--resume")
    assert (seg / "done_finetune.json").is_file()   # refused before the finished run was touched


@pytest.mark.parametrize("changed", [
    ["--loss", "dicefocal"], ["--lr", "0.01"], ["--prompt", "box+points"], ["--box-shift", "3"],
    ["--prior-box-fraction", "0.5"], ["--seed", "1"], ["--batch-size", "2"], ["--train", "all"]])
def test_resume_refuses_settings_that_change_the_result(run, changed):
    before = (run / "seg" / "last.pt").read_bytes()
    key = changed[0][2:].replace("-", "_")
    with pytest.raises(SystemExit, match=rf"error: .*last.pt: cannot resume with different "
                                         rf"settings .*'{key}'"):
        _finetune(run, run / "seg", "--epochs", "2", "--resume", *changed)
    assert (run / "seg" / "last.pt").read_bytes() == before
    assert (run / "seg" / "done_finetune.json").is_file()


# ----------------------------------------------------------------------------- symbolic links

def test_pairs_and_predict_folders_follow_symbolic_links(run, tmp_path):
    (tmp_path / "images").symlink_to(run / "images", target_is_directory=True)   # a linked folder
    (tmp_path / "masks").mkdir()
    for mask in (run / "masks").iterdir():                                       # linked files
        (tmp_path / "masks" / mask.name).symlink_to(mask)
    pairs = find_pairs(tmp_path / "images", tmp_path / "masks")
    assert [p.stem for p in pairs] == [f"x{i:02d}" for i in range(12)]
    stack, names = load_stack(tmp_path / "images")
    assert len(stack) == 12 and names[0] == "x00.png"


def test_a_broken_or_looping_link_is_an_error_not_a_missing_image(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "images" / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match=r"b.png: broken symbolic link"):
        load_stack(tmp_path / "images")
    (tmp_path / "images" / "b.png").unlink()
    (tmp_path / "images" / "c.png").symlink_to(tmp_path / "images" / "d.png")
    (tmp_path / "images" / "d.png").symlink_to(tmp_path / "images" / "c.png")
    with pytest.raises(FileNotFoundError, match=r"c.png: broken symbolic link.*link loop"):
        load_stack(tmp_path / "images")


# ----------------------------------------------------------------------------- index files

def test_postprocess_refuses_an_index_other_than_the_one_segmented(tmp_path):
    args = _predicted_masks(tmp_path / "masks")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "index.csv").write_text("row,image\n0,a.png\n1,renamed.png\n")
    args[args.index("--index") + 1] = str(tmp_path / "cache" / "index.csv")
    with pytest.raises(SystemExit, match=r"error: .*cache/index.csv and .*masks/index.csv "
                                         r"\(the images segmented\) differ in 1 row\(s\), first"):
        postprocess.main(args)
    (tmp_path / "cache" / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    postprocess.main(args)                       # the same images: accepted
    assert (tmp_path / "masks" / "done_postprocess.json").is_file()


@pytest.mark.parametrize("rows", ["0,a.png\nx,b.png\n", "1,a.png\n0,b.png\n"])
def test_index_rows_must_be_0_to_n_minus_1(tmp_path, rows):
    args = _predicted_masks(tmp_path)
    (tmp_path / "index.csv").write_text("row,image\n" + rows)
    with pytest.raises(SystemExit, match=r"error: .*index.csv: row \d has row="):
        postprocess.main(args)
    np.save(tmp_path / "stack.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"index.csv: row \d has row="):
        load_stack(tmp_path / "stack.npy", tmp_path / "index.csv")
