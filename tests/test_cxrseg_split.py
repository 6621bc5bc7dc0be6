"""cxrseg.split: seeded parts and folds, the CLI, and what readers of a split file refuse
(duplicate stems, bad folds, an unfinished split, datasets or pairs the file does not know)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder
from cxrseg import evaluate, finetune, split
from synthetic_pairs import data_flags, run_split, write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REQUIRED = ["--images", "i", "--masks", "m", "--out", "o.csv"]
BAD_FLAGS = [["--folds", "0"], ["--folds", "1"], ["--seed", "-1"],
             ["--fractions", "0.7", "-0.1", "0.4"]]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """12 synthetic pairs split into seg/splits.csv (with its record)."""
    root = write_pairs(tmp_path_factory.mktemp("pairs"))
    run_split(root)
    return root


def test_split_counts_and_determinism():
    assert split.split_counts(292) == (204, 44, 44)
    stems = [f"s{i:03d}" for i in range(292)]
    a = split.split_parts(stems, seed=3)
    assert a == split.split_parts(list(reversed(stems)), seed=3)  # input order does not matter
    assert a != split.split_parts(stems, seed=4)
    assert sorted(list(a.values()).count(p) for p in split.PARTS) == [44, 44, 204]


def test_folds_cover_everything_and_fold_parts_are_disjoint():
    stems = [f"s{i}" for i in range(30)]
    folds = split.split_folds(stems, 3, seed=0)
    assert np.bincount(list(folds.values())).tolist() == [10, 10, 10]
    tests = set()
    for k in range(3):
        parts = split.parts_for_fold(folds, k, seed=0)
        test = {s for s, p in parts.items() if p == "test"}
        assert test == {s for s, f in folds.items() if f == k}
        assert sum(p == "val" for p in parts.values()) == 4  # round(0.15 * 30), from other folds
        tests |= test
    assert tests == set(stems)


def test_split_cli_writes_csv(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    for k in range(10):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "i" / f"x{k}.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m" / f"x{k}.png")
    split.main(["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
                "--out", str(tmp_path / "seg" / "splits.csv")])
    parts = split.read_splits(tmp_path / "seg" / "splits.csv")
    assert sorted(parts.values()).count("train") == 6  # 10 -> 6/2/2
    assert (tmp_path / "seg" / "run_split.json").is_file()
    split.main(["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
                "--out", str(tmp_path / "folds" / "folds.csv"), "--folds", "5"])
    with pytest.raises(ValueError, match="--fold"):
        split.read_splits(tmp_path / "folds" / "folds.csv")
    parts = split.read_splits(tmp_path / "folds" / "folds.csv", fold=1)
    assert set(parts.values()) == {"train", "val", "test"}
    with pytest.raises(SystemExit, match="error: .*no images"):
        (tmp_path / "e").mkdir()
        split.main(["--images", str(tmp_path / "e"), "--masks", str(tmp_path / "m"),
                    "--out", str(tmp_path / "z.csv")])


@pytest.mark.parametrize("flag", BAD_FLAGS, ids=" ".join)
def test_out_of_range_flags_stop_at_parse_time(flag, capsys):
    assert_refused_at_parse(split.main, REQUIRED + flag, flag[0], capsys)


def test_refuses_a_foreign_out_folder_with_a_clean_error(pairs, tmp_path):
    assert_refuses_foreign_folder(
        lambda out: split.main([*data_flags(pairs), "--out", str(out / "splits.csv")]),
        tmp_path / "mine")


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


def test_finetune_and_evaluate_need_a_finished_split(pairs, tmp_path):
    (tmp_path / "seg").mkdir()
    shutil.copy(pairs / "seg" / "splits.csv", tmp_path / "seg" / "splits.csv")  # without its record
    with pytest.raises(SystemExit, match=r"error: .*no done_split.json"):
        finetune.main([*data_flags(pairs), "--splits", str(tmp_path / "seg" / "splits.csv"),
                       "--checkpoint", "micro", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"error: .*no done_split.json"):
        evaluate.main([*data_flags(pairs), "--splits", str(tmp_path / "seg" / "splits.csv"),
                       "--checkpoint", "micro", "--out", str(tmp_path / "eval.csv")])
    assert not (tmp_path / "out").exists()    # refused before anything was written


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Datasets a and b (12 pairs each) and a split file made of a alone."""
    root = tmp_path_factory.mktemp("two")
    write_pairs(root / "a", "a", seed=1)
    write_pairs(root / "b", "b", seed=2)
    one = ["--data", f"a={root / 'a' / 'images'}:{root / 'a' / 'masks'}"]
    split.main([*one, "--out", str(root / "seg" / "splits.csv")])
    return root, one + ["--data", f"b={root / 'b' / 'images'}:{root / 'b' / 'masks'}"]


@pytest.mark.parametrize("stage", ["finetune", "evaluate"])
def test_a_dataset_the_split_file_does_not_know_is_refused(two_sets, stage, tmp_path):
    root, both = two_sets
    splits = str(root / "seg" / "splits.csv")
    with pytest.raises(SystemExit, match=r"^error: .*splits.csv does not know dataset 'b': none "
                                         r"of its 12 pairs"):
        if stage == "finetune":
            finetune.main([*both, "--splits", splits, "--checkpoint", "micro",
                           "--out", str(tmp_path / "seg"), "--device", "cpu"])
        else:
            evaluate.main([*both, "--splits", splits, "--checkpoint", "micro",
                           "--out", str(tmp_path / "eval.csv"), "--device", "cpu"])
    assert not (tmp_path / "seg").exists() and not (tmp_path / "eval.csv").exists()


def test_pairs_added_after_the_split_are_refused_not_left_out(two_sets, tmp_path):
    root, both = two_sets
    shutil.copytree(root / "a", tmp_path / "a")
    for sub in ("images", "masks"):
        shutil.copy(tmp_path / "a" / sub / "a00.png", tmp_path / "a" / sub / "a99.png")
    with pytest.raises(SystemExit, match=r"^error: .*splits.csv: 1 of the 13 pairs of dataset "
                                         r"'a' have no row \(e.g. \['a99'\]\)"):
        evaluate.main(["--data", f"a={tmp_path / 'a' / 'images'}:{tmp_path / 'a' / 'masks'}",
                       "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
                       "--out", str(tmp_path / "eval.csv"), "--device", "cpu"])
