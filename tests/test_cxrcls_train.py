"""Classifier training on a tiny learnable synthetic task: learning, outputs, resume, input pairs."""
import csv
import json

import numpy as np
import pytest
import torch

from cxrcls import train
from cxrcls.labels import LABELS
from cxrcls.synthetic import make_work
from cxrstats.fileio import read_csv


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

FAST = ["--arch", "resnet18", "--weights", "none", "--device", "cpu", "--lr", "1e-3",
        "--batch-size", "4", "--threads", "1", "--seed", "3"]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def history(folder):
    return read_csv(folder / "history.csv", required=["epoch", "train_loss", "val_loss",
                                                      "val_macro_auroc", "seconds"])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("work"), n=20, size=32, fractions=(0.4, 0.3, 0.3))


@pytest.fixture(scope="module")
def uninterrupted(work):
    out = work / "runs" / "uninterrupted"
    train.main(["--work", str(work), "--epochs", "2", "--out", str(out), *FAST])
    return out


def test_loss_goes_down_and_outputs_have_the_documented_shapes(work, uninterrupted):
    rows = history(uninterrupted)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[1]["val_loss"]) < float(rows[0]["val_loss"])
    splits = [r for r in read_csv(work / "cohort" / "splits.csv") if r["split"] == "0"]
    for part in ("val", "test"):
        probs = np.load(uninterrupted / f"{part}_probs.npy")
        ids = [r["image"] for r in read_csv(uninterrupted / f"{part}_ids.csv", required=["image"])]
        assert probs.dtype == np.float32 and probs.shape == (len(ids), 5) == (6, 5)
        assert sorted(ids) == sorted(r["image"] for r in splits if r["part"] == part)
        assert ((probs > 0) & (probs < 1)).all()
    thresholds = read_csv(uninterrupted / "thresholds.csv", required=["label", "threshold", "val_f1"])
    assert [r["label"] for r in thresholds] == list(LABELS)
    timing = json.loads((uninterrupted / "timing.json").read_text())
    assert timing["epochs"] == 2 and timing["device"] == "cpu" and timing["train_seconds"] > 0
    best = torch.load(uninterrupted / "best.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == timing["best_epoch"] and best["arch"] == "resnet18"
    assert (uninterrupted / "run.json").is_file()
    assert not list(uninterrupted.glob("*.tmp"))


def test_resume_ends_where_an_uninterrupted_run_ends(work, uninterrupted):
    out = work / "runs" / "resumed"
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), *FAST])
    train.main(["--work", str(work), "--epochs", "2", "--out", str(out), "--resume", *FAST])
    assert_same_weights(weights(out / "last.pt"), weights(uninterrupted / "last.pt"))
    assert_same_weights(weights(out / "best.pt"), weights(uninterrupted / "best.pt"))
    a, b = torch.load(out / "last.pt", weights_only=True), torch.load(uninterrupted / "last.pt", weights_only=True)
    assert torch.equal(a["aug_rng"], b["aug_rng"])
    np.testing.assert_array_equal(np.load(out / "test_probs.npy"), np.load(uninterrupted / "test_probs.npy"))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert drop(history(out)) == drop(history(uninterrupted))
    # Resuming with different settings is refused, naming the checkpoint.
    with pytest.raises(SystemExit, match=r"last.pt: cannot resume with different settings.*lr"):
        train.main(["--work", str(work), "--epochs", "3", "--out", str(out), "--resume",
                    *FAST[:-4], "--lr", "0.5", *FAST[-2:]])


@pytest.mark.parametrize("save_every, expected_last_saves", [("0", [1, 2, 3]), ("1e9", [3])])
def test_last_checkpoint_is_saved_every_n_seconds_and_at_the_end(work, monkeypatch, save_every,
                                                                  expected_last_saves):
    saved = []
    real_save = train.save_checkpoint
    def recording_save(path, obj):
        if path.name == "last.pt":
            saved.append(obj["epoch"])
        real_save(path, obj)
    monkeypatch.setattr(train, "save_checkpoint", recording_save)
    out = work / "runs" / f"save_every_{save_every}"
    train.main(["--work", str(work), "--epochs", "3", "--patience", "9", "--out", str(out),
                "--save-every", save_every, "--freeze-backbone", *FAST])
    assert saved == expected_last_saves
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3


def test_train_on_masked_test_on_original_linear_probe(work):
    train.main(["--work", str(work), "--train-input", "m15", "--eval-input", "original",
                "--epochs", "1", "--freeze-backbone", "--image-size", "40", *FAST])
    out = work / "runs" / "resnet18_m15_on_original" / "split0"
    assert np.load(out / "test_probs.npy").shape == (6, 5)
    start = torch.load(out / "best.pt", weights_only=True)
    assert start["input"] == "m15" and start["image_size"] == 40


def test_bad_inputs_are_named(work, tmp_path):
    with pytest.raises(SystemExit, match="split 7 has no"):
        train.main(["--work", str(work), "--split", "7", "--epochs", "1", "--out", str(tmp_path), *FAST])
    with pytest.raises(SystemExit, match="raw.npy"):
        bad = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3))
        (bad / "masks" / "raw.npy").unlink()
        train.main(["--work", str(bad), "--train-input", "overlay", "--epochs", "1", *FAST])
