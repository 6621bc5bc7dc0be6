"""Several segmentation sets at once: named sources (cxrseg.datasets), and split, fine-tune and
evaluate reporting per set and the kept-lung shares, on tiny synthetic pairs."""
import csv

import pytest

from cxrseg import evaluate, finetune, split
from cxrseg.datasets import find_all_pairs, parse_source
from synthetic_pairs import write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _write_pairs(root, prefix, n, seed):
    """tests/synthetic_pairs.write_pairs, as a `--data` spec's IMAGES:MASKS."""
    write_pairs(root, prefix, n=n, seed=seed)
    return f"{root / 'images'}:{root / 'masks'}"


def test_parse_source_and_duplicate_stems(tmp_path):
    assert parse_source("mont=/a:/b").masks == "/b"
    assert parse_source("mont=/a:/b:_mask").mask_suffix == "_mask"
    for bad in ("/a:/b", "x=/a", "bad name=/a:/b"):
        with pytest.raises(ValueError, match="--data"):
            parse_source(bad)
    a = parse_source("a=" + _write_pairs(tmp_path / "a", "c", 3, 0))
    b = parse_source("b=" + _write_pairs(tmp_path / "b", "c", 3, 1))
    with pytest.raises(ValueError, match="'c00' is in both a and b"):
        find_all_pairs([a, b])


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    data = ["--data", "mont=" + _write_pairs(root / "mont", "m", 10, 0),
            "--data", "shen=" + _write_pairs(root / "shen", "s", 14, 1)]
    split.main([*data, "--out", str(root / "seg" / "splits.csv"), "--seed", "0"])
    return root, data


def test_split_keeps_a_dataset_column_and_splits_each_dataset(two_sets):
    root, _ = two_sets
    rows = list(csv.DictReader(open(root / "seg" / "splits.csv")))
    assert list(rows[0]) == ["stem", "dataset", "part"]
    for name, prefix, n in (("mont", "m", 10), ("shen", "s", 14)):
        mine = [r for r in rows if r["dataset"] == name]
        assert len(mine) == n and all(r["stem"].startswith(prefix) for r in mine)
        assert {r["part"] for r in mine} == {"train", "val", "test"}
    assert split.read_splits(root / "seg" / "splits.csv")["m00"] in split.PARTS


def test_finetune_and_evaluate_report_per_dataset_and_kept_shares(two_sets, tmp_path):
    root, data = two_sets
    out = tmp_path / "seg"
    finetune.main([*data, "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
                   "--out", str(out), "--train", "decoder", "--epochs", "1", "--device", "cpu"])
    evaluate.main([*data, "--splits", str(root / "seg" / "splits.csv"),
                   "--checkpoint", str(out / "best.pt"),
                   "--out", str(out / "eval.csv"), "--kept-size", "0", "--device", "cpu"])
    rows = list(csv.DictReader(open(out / "eval.csv")))
    test_rows = {r["dataset"]: r for r in rows if r["part"] == "test"}
    assert set(test_rows) == {"mont", "shen", "all"}
    assert int(test_rows["all"]["n"]) == int(test_rows["mont"]["n"]) + int(test_rows["shen"]["n"])
    for r in rows:
        assert 0 <= float(r["kept_m15"]) <= float(r["kept_m50"]) <= 1
    per_image = list(csv.DictReader(open(out / "eval_per_image.csv")))
    assert {r["dataset"] for r in per_image} == {"mont", "shen"}
    assert set(evaluate.PER_IMAGE_COLUMNS) <= set(per_image[0])


def test_data_and_images_together_is_an_error(two_sets, tmp_path):
    root, data = two_sets
    with pytest.raises(SystemExit, match="either --data"):
        split.main([*data, "--images", "x", "--masks", "y", "--out", str(tmp_path / "s.csv")])


def test_finetune_augment_adds_copies_and_evaluate_cleans_up(two_sets, tmp_path, capsys):
    root, data = two_sets
    out = tmp_path / "seg"
    finetune.main([*data, "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
                   "--out", str(out), "--train", "decoder", "--epochs", "1", "--device", "cpu",
                   "--augment", "opacity", "photometric", "--augment-copies", "2"])
    n_train = sum(r["part"] == "train" for r in csv.DictReader(open(root / "seg" / "splits.csv")))
    assert f"{2 * n_train} augmented training copies" in capsys.readouterr().out
    assert (out / "shape_prior.json").is_file()
    evaluate.main([*data, "--splits", str(root / "seg" / "splits.csv"),
                   "--checkpoint", str(out / "best.pt"),
                   "--out", str(out / "eval.csv"), "--kept-size", "0", "--device", "cpu",
                   "--fill-holes", "--keep-largest", "2"])
    rows = list(csv.DictReader(open(out / "eval.csv")))
    assert all(r["prompt"].endswith("+fill+largest2") for r in rows)
    with pytest.raises(SystemExit):
        finetune.main([*data, "--splits", str(root / "seg" / "splits.csv"), "--out", str(out),
                       "--augment-copies", "99"])
