"""experiments.covid_extent's helpers on tiny inputs: the per-lung convex hull and source-grouped
folds (the experiment itself needs the shared lung sets)."""
import csv

import numpy as np
import pytest

from experiments.covid_extent import (RECIPE, encoder_recipe, encoder_suffix, hull_per_lung,
                                      run_suffix, seeded, source_folds)


def test_hull_fills_each_lung_on_its_own():
    mask = np.zeros((20, 30), bool)
    mask[2:18, 2:10] = True
    mask[8:12, 5:10] = False         # a notch cut into the right lung from the middle
    mask[2:18, 20:28] = True
    hull = hull_per_lung(mask)
    assert hull[8:12, 5:10].all()    # the notch is filled
    assert not hull[:, 11:19].any()  # the gap between the lungs stays empty
    assert (hull >= mask).all()


def test_sources_stay_in_one_fold(tmp_path):
    meta = tmp_path / "meta.csv"
    rows = [("a1", "u1"), ("a2", "u1"), ("a3", "u1"), ("b1", "u2"), ("b2", "u2"), ("c1", ""),
            ("d1", "u4")]
    with open(meta, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stem", "image_url"])
        writer.writerows(rows)
    folds = source_folds(meta, [s for s, _ in rows], 3)
    assert folds["a1"] == folds["a2"] == folds["a3"] and folds["b1"] == folds["b2"]
    # largest source first into fold 0, the next into fold 1, then the fold with fewest images
    assert folds["a1"] == 0 and folds["b1"] == 1
    assert sorted(np.bincount(list(folds.values()))) == [2, 2, 3]


def test_default_settings_keep_their_run_folders():
    from argparse import Namespace
    assert run_suffix(Namespace(epochs=4, patience=2, augment_copies=2, val_prompt="gt")) == ""
    assert run_suffix(Namespace(epochs=20, patience=3, augment_copies=0,
                                val_prompt="gt")) == "-e20-p3-c0"
    assert run_suffix(Namespace(epochs=20, patience=3, augment_copies=2,
                                val_prompt="prior")) == "-e20-p3-vprior"
    assert run_suffix(Namespace(epochs=20, patience=3, augment_copies=2, val_prompt="gt",
                                augment=["opacity", "whiteout"])) == "-e20-p3-aopacity+whiteout"
    assert run_suffix(Namespace(epochs=20, patience=3, augment_copies=2, val_prompt="gt",
                                seed=0)) == "-e20-p3"
    assert run_suffix(Namespace(epochs=20, patience=3, augment_copies=2, val_prompt="gt",
                                seed=2)) == "-e20-p3-s2"


def test_another_training_seed_replaces_the_recipes_and_reaches_the_encoder_stage(tmp_path):
    from argparse import Namespace
    recipe = seeded(RECIPE, 3)
    assert recipe[recipe.index("--seed") + 1] == "3" and recipe.count("--seed") == 1
    assert RECIPE[RECIPE.index("--seed") + 1] == "0"       # the module's recipe is untouched
    args = Namespace(encoder_epochs=4, encoder_lr=3e-5, encoder_patience=2, augment_copies=2,
                     augment=["opacity"], encoder_val_prompt="gt", seed=3)
    enc = encoder_recipe(tmp_path, args)
    assert enc[enc.index("--seed") + 1] == "3" and enc.count("--seed") == 1


def test_lower_hull_fills_only_below_the_lungs_middle():
    mask = np.zeros((20, 12), bool)
    mask[2:18, 2:10] = True
    mask[4:7, 6:10] = False          # a notch in the upper half
    mask[13:16, 6:10] = False        # one in the lower half
    hull = hull_per_lung(mask, lower=True)
    assert not hull[4:7, 6:10].any() and hull[13:16, 6:10].all()


def test_encoder_runs_start_from_the_decoder_run_and_name_their_settings(tmp_path):
    from argparse import Namespace
    args = Namespace(encoder_epochs=4, encoder_lr=3e-5, encoder_patience=2, augment_copies=2,
                     augment=["opacity"], encoder_val_prompt="gt")
    assert encoder_suffix(args) == "-enc4"
    recipe = encoder_recipe(tmp_path / "covid-fold0", args)
    flag = {recipe[i]: recipe[i + 1] for i, f in enumerate(recipe) if f.startswith("--")}
    assert flag["--checkpoint"] == str(tmp_path / "covid-fold0" / "best.pt")
    assert (flag["--train"], flag["--precision"], flag["--epochs"]) == ("all", "bf16", "4")
    assert recipe.count("--train") == recipe.count("--precision") == 1
    assert flag["--augment-copies"] == "2" and flag["--prior-box-fraction"] == "0.5"
    assert flag["--val-prompt"] == "gt"
    other = Namespace(encoder_epochs=3, encoder_lr=1e-5, encoder_patience=3, augment_copies=0,
                      augment=["opacity"], encoder_val_prompt="prior")
    assert encoder_suffix(other) == "-enc3-lr1e-05-p3-vprior"
    assert "--augment" not in encoder_recipe(tmp_path, other)


def test_figure_masks_follow_the_runs_mask_settings(tmp_path):
    import json
    from experiments.covid_runs import SCORING_DEFAULTS, run_scoring
    (tmp_path / "run_covid_extent_a.json").write_text(json.dumps({"arguments": {}}))
    (tmp_path / "run_covid_extent_b.json").write_text(json.dumps(
        {"arguments": {"keep_largest": 2, "refine_margin": 0.1, "refine_margin_side": "lower"}}))
    assert run_scoring(tmp_path, "_a") == SCORING_DEFAULTS
    assert run_scoring(tmp_path, "_b") == {"keep_largest": 2, "refine_margin": 0.1,
                                           "refine_margin_side": "lower"}


def test_a_refine_box_widens_on_the_asked_sides_and_stays_on_the_film():
    from experiments.seg_bench_common import widen_box
    box = np.array([10.0, 20.0, 50.0, 60.0])                 # 40 wide, 40 high
    assert widen_box(box, 0.0, (100, 100)).tolist() == box.tolist()
    assert widen_box(box, 0.1, (100, 100)).tolist() == [6, 16, 54, 64]
    assert widen_box(box, 0.1, (100, 100), "lower").tolist() == [10, 20, 50, 64]
    assert widen_box(box, 1.0, (70, 80)).tolist() == [0, 0, 79, 69]   # clipped to (H, W)
    with pytest.raises(ValueError, match="side"):
        widen_box(box, 0.1, (100, 100), "upper")


def test_an_annotation_is_field_like_only_when_the_field_mask_matches_it_better():
    from experiments.covid_convention import closer
    assert closer(0.90, 0.80) == "field"
    assert closer(0.80, 0.90) == "full" and closer(0.85, 0.85) == "full"


def test_a_written_split_is_kept_only_when_it_holds_the_same_rows(tmp_path):
    from experiments.covid_extent import write_parts
    path = tmp_path / "fold0" / "splits.csv"
    rows = [["a", "covid", "train"], ["b", "covid", "val"]]
    write_parts(path, rows, {"fold": 0})
    written = path.read_bytes()
    write_parts(path, rows[::-1], {"fold": 0})              # same rows: kept as written
    assert path.read_bytes() == written
    with pytest.raises(SystemExit, match="other rows"):
        write_parts(path, [["a", "covid", "val"], ["b", "covid", "train"]], {"fold": 0})
    assert path.read_bytes() == written


def test_an_experiments_tables_are_written_under_its_name_and_tag(tmp_path, capsys):
    import argparse
    import json
    import time

    from experiments.covid_extent import FOLD_COLUMNS, PER_IMAGE, SUMMARY, write_tables
    args = argparse.Namespace(tag="_x", out=str(tmp_path))
    summary = [["a", "covid_dev", *["1"] * (len(SUMMARY) - 2)]]
    per_image = [["a", "covid_dev", "fold0", "s", *["0.5"] * (len(PER_IMAGE) - 4)]]
    folds = [["a", "0", "10", "10", "", "0.3", "0.9", "0.99"]]
    write_tables(tmp_path, "covid_thing", args, time.time(), summary, per_image, folds, extra=1)
    for suffix, columns, rows in (("", SUMMARY, summary), ("_per_image", PER_IMAGE, per_image),
                                  ("_folds", FOLD_COLUMNS, folds)):
        with open(tmp_path / f"covid_thing_x{suffix}.csv") as handle:
            lines = list(csv.reader(handle))
        assert lines == [columns, *rows]
    record = json.loads((tmp_path / "run_covid_thing_x.json").read_text())
    assert record["extra"] == 1 and record["fold_choices"][0]["threshold"] == "0.3"
    assert "| a | covid_dev |" in capsys.readouterr().out


def test_the_covid_experiments_skip_without_the_lung_sets(tmp_path, capsys):
    from experiments import covid_ensemble, covid_extent, covid_fit, covid_per_lung
    (tmp_path / "montgomery").mkdir()              # covid_dev/ missing
    covid_extent.main(["--lungseg", str(tmp_path), "--out", str(tmp_path / "w")])
    covid_fit.main(["--lungseg", str(tmp_path), "--out", str(tmp_path / "w")])
    covid_per_lung.main(["--lungseg", str(tmp_path), "--out", str(tmp_path / "w"),
                         "--thresholds", "0.5"])
    covid_ensemble.main(["--lungseg", str(tmp_path), "--out", str(tmp_path / "w"),
                         "--ensemble", "a=-x", "--thresholds", "0.5"])
    assert capsys.readouterr().out.count("skip:") == 4
    assert not (tmp_path / "w").exists()


def test_a_finished_run_is_reused_only_when_its_flags_and_files_are_todays(study, tmp_path,
                                                                           monkeypatch):
    """covid_extent.finetune skips a finished run that these flags make from today's files, and
    stops (naming the run, leaving it as it is) where the flags differ; it never retrains there."""
    from experiments import covid_extent
    from synthetic_pairs import run_finetune
    out = tmp_path / "run"
    run_finetune(study, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(covid_extent, "run", lambda *a: pytest.fail(f"retrained: {a}"))
    data = [f"set={study / 'images'}:{study / 'masks'}"]
    recipe = ["--checkpoint", "micro", "--train", "decoder", "--batch-size", "4", "--lr", "1e-3",
              "--device", "cpu"]
    splits = study / "seg" / "splits.csv"
    assert covid_extent.finetune(out, data, splits, ["--epochs", "1"], None, recipe) == out
    other_lr = [*recipe]
    other_lr[other_lr.index("--lr") + 1] = "1e-2"
    with pytest.raises(SystemExit, match=rf"error: {out} cannot be reused: .*'lr'"):
        covid_extent.finetune(out, data, splits, ["--epochs", "1"], None, other_lr)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_fit_scores_each_fold_on_its_training_part_at_the_threshold_its_validation_chose(
        tmp_path):
    from experiments.covid_fit import fold_thresholds, parts_of
    fold = np.array([0, 1, 2, 0, 1, 2, 1])
    parts = parts_of(fold, 0, 3)            # held-out fold 0, validation fold 1, training fold 2
    assert parts["held-out"].tolist() == [0, 3] and parts["train"].tolist() == [2, 5]
    assert parts_of(fold, 2, 3)["train"].tolist() == [1, 4, 6]   # validation wraps to fold 0
    path = tmp_path / "covid_extent_folds.csv"
    path.write_text("approach,fold,threshold\na@val,0,0.3\na@val,1,0.4\nb@val,2,0.5\n")
    assert fold_thresholds(path, "a@val", 2) == {0: 0.3, 1: 0.4}
    with pytest.raises(SystemExit, match=r"no threshold of 'a@val' for folds \[2\]"):
        fold_thresholds(path, "a@val", 3)


def test_flags_that_cannot_go_together_stop_at_parse_time(tmp_path, capsys):
    from experiments import covid_extent
    with pytest.raises(SystemExit) as stop:
        covid_extent.main(["--lungseg", str(tmp_path), "--out", str(tmp_path / "w"), "--flip",
                           "--refine-margin", "0.1"])
    assert stop.value.code == 2
    assert "--flip and --refine-margin cannot be combined" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
