"""cxrseg.segmenter: a segmenter folder gives cxrseg.predict its checkpoint, prior, the threshold
chosen on validation for that checkpoint's content and the recipe's prompting; flags only
override. Fake folders (no model is loaded), so the rules are checked in milliseconds."""
import shutil

import pytest

from cxrseg.evaluate import EVAL_COLUMNS
from cxrseg.predict import build_parser
from cxrseg.prompts import Prior
from cxrseg.records import EVALUATE, FINETUNE
from cxrseg.segmenter import apply_segmenter
from cxrstats.foundation.fileio import file_sha256, write_csv, write_done

RECIPE = {"box_source": "prior", "prompt": "box", "refine": 1, "fill_holes": True,
          "keep_largest": 0}


def fake_segmenter(folder, recipe=RECIPE, evaluated=True, tolerance=None):
    """seg/ with best.pt (bytes), prior.json and, when `evaluated`, an eval.csv whose best
    validation Dice is reached at 0.40 and 0.45 (0.40 is taken) and its record with `recipe` (and
    `threshold_tolerance` when given)."""
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"weights, first training")
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(folder / "prior.json")
    write_done(folder, {}, ["best.pt", "prior.json"], done=FINETUNE)
    if evaluated:
        identity = f"sha256:{file_sha256(folder / 'best.pt')}"
        rows = [["seg/best.pt", identity, "field", "seg", "val", t, dice, *[0.5] * 5, 4,
                 "box:prior"] for t, dice in (("0.30", 0.5), ("0.40", 0.8), ("0.45", 0.8))]
        rows.append(["micro", "micro seed 0", "none", "seg", "val", "0.55", 0.9, *[0.5] * 5, 4,
                     "box:prior"])
        write_csv(folder / "eval.csv", EVAL_COLUMNS,      # per-lung cells empty, as evaluate
                  [row + [""] * (len(EVAL_COLUMNS) - len(row)) for row in rows])  # leaves them
        facts = {} if recipe is None else {"prompting": recipe}
        if tolerance is not None:
            facts["threshold_tolerance"] = tolerance
        write_done(folder, {}, ["eval.csv"], done=EVALUATE, **facts)
    return folder


def resolve(*flags):
    args = build_parser().parse_args(["--images", "x", "--out", "y", *map(str, flags)])
    return args, apply_segmenter(args)


def test_the_segmenter_folder_gives_checkpoint_prior_threshold_and_recipe(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    args, resolved = resolve("--segmenter", seg)
    assert args.checkpoint == str(seg / "best.pt") and args.prior == str(seg / "prior.json")
    assert args.threshold == 0.40            # this checkpoint's rows only, lowest on a tie
    assert (args.prompt, args.refine, args.fill_holes, args.keep_largest) == ("box", 1, True, 0)
    assert resolved.sources["threshold"] == str(seg / "eval.csv")
    assert resolved.sources["refine"] == f"recipe in {seg / EVALUATE}"


def test_predict_chooses_the_threshold_by_the_tolerance_the_evaluation_recorded(tmp_path):
    # validation Dice 0.5 at 0.30, 0.8 at 0.40 and 0.45: a tolerance of 0.3 reaches down to 0.30
    assert resolve("--segmenter", fake_segmenter(tmp_path / "a", tolerance=0.3))[0].threshold \
        == 0.30
    assert resolve("--segmenter", fake_segmenter(tmp_path / "b", tolerance=0.2))[0].threshold \
        == 0.40
    assert resolve("--segmenter", fake_segmenter(tmp_path / "c"))[0].threshold == 0.40


def test_flags_override_the_recipe_one_by_one(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    args, resolved = resolve("--segmenter", seg, "--no-fill-holes", "--threshold", "0.6")
    assert (args.threshold, args.fill_holes, args.refine) == (0.6, False, 1)
    assert resolved.sources["fill_holes"] == "--fill-holes"
    args, _ = resolve("--segmenter", seg, "--refine", "0", "--keep-largest", "2")
    assert (args.refine, args.keep_largest, args.fill_holes, args.threshold) == (0, 2, True, 0.40)


def test_a_checkpoint_finds_its_folder_and_is_matched_by_content(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    args, _ = resolve("--checkpoint", seg / "best.pt")
    assert (args.threshold, args.refine, args.prior) == (0.40, 1, str(seg / "prior.json"))
    copy = tmp_path / "elsewhere" / "seg"
    shutil.copytree(seg, copy)
    args, _ = resolve("--checkpoint", copy / "best.pt")
    assert args.threshold == 0.40            # another spelling of the same weights
    (copy / "best.pt").write_bytes(b"weights, trained again")
    with pytest.raises(ValueError, match=r"eval.csv: no validation rows for checkpoint .*re-run"):
        resolve("--checkpoint", copy / "best.pt")


def test_another_checkpoint_with_the_folder_takes_its_own_rows(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    args, _ = resolve("--segmenter", seg, "--checkpoint", "micro")   # e.g. the zero-shot model
    assert args.threshold == 0.55 and args.prior == str(seg / "prior.json")


def test_a_segmenter_folder_without_evaluation_is_refused_unless_the_threshold_is_given(tmp_path,
                                                                                       capsys):
    seg = fake_segmenter(tmp_path / "seg", evaluated=False)
    with pytest.raises(FileNotFoundError, match=r"no done_evaluate.json.*cxrseg.evaluate"):
        resolve("--segmenter", seg)
    args, resolved = resolve("--segmenter", seg, "--threshold", "0.45")
    assert (args.threshold, args.refine, args.fill_holes) == (0.45, 0, False)
    assert resolved.sources["refine"] == "default"
    assert "refine" in capsys.readouterr().err


def test_without_a_segmenter_folder_the_defaults_are_said_on_stderr(tmp_path, capsys):
    seg = fake_segmenter(tmp_path / "seg")
    args, _ = resolve("--checkpoint", "micro", "--prior", seg / "prior.json")
    assert (args.threshold, args.refine, args.fill_holes, args.prompt) == (0.5, 0, False, "box")
    err = capsys.readouterr().err
    assert "no evaluation of micro" in err and "threshold 0.5" in err
    with pytest.raises(ValueError, match=r"no --prior: give --segmenter DIR"):
        resolve("--checkpoint", "micro")


def test_contradictions_and_an_evaluation_without_recipe_are_refused(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    with pytest.raises(ValueError, match=r"--threshold or --threshold-from, not both"):
        resolve("--segmenter", seg, "--threshold", "0.5", "--threshold-from", seg / "eval.csv")
    old = fake_segmenter(tmp_path / "old", recipe=None)
    with pytest.raises(ValueError, match=r"records no prompting recipe.*re-run cxrseg.evaluate"):
        resolve("--segmenter", old)


def test_an_evaluation_without_a_validation_part_says_so(tmp_path):
    seg = fake_segmenter(tmp_path / "seg")
    identity = f"sha256:{file_sha256(seg / 'best.pt')}"
    row = ["seg/best.pt", identity, "field", "seg", "test", "0.40", 0.8, *[0.5] * 5, 4, "box:prior"]
    write_csv(seg / "eval.csv", EVAL_COLUMNS, [row + [""] * (len(EVAL_COLUMNS) - len(row))])
    with pytest.raises(ValueError, match=r"eval.csv: has no validation rows \(the evaluation had "
                                         r"no validation part.*give --threshold, or re-run "
                                         r"cxrseg.evaluate with the validation part"):
        resolve("--segmenter", seg)
    args, _ = resolve("--segmenter", seg, "--threshold", "0.4")
    assert args.threshold == 0.4 and args.refine == RECIPE["refine"]
