"""DistributedDataParallel on CPU: 2 gloo processes under torchrun agree with one process.

With a frozen backbone (BatchNorm statistics fixed), averaging the two ranks' gradients over their
halves of each global batch is the same update as one process on the whole batch, and augmentation
parameters are drawn for the global batch on every rank; so weights, predictions and validation
metrics must agree up to float summation order.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrcls import train
from cxrcls.labels import LABELS
from cxrcls.models import Classifier
from cxrstats.foundation.fileio import read_csv, read_done
from synthetic_work import make_work


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

ROOT = Path(__file__).resolve().parent.parent
# float32: the test compares weights digit for digit, which bfloat16's rounding would not keep
# across a different reduction order.
ARGS = ["--arch", "resnet18", "--weights", "none", "--device", "cpu", "--lr", "1e-2",
        "--batch-size", "4", "--epochs", "2", "--freeze-backbone", "--seed", "5",
        "--precision", "fp32"]


@pytest.mark.slow
def test_two_gloo_processes_agree_with_one(tmp_path):
    work = make_work(tmp_path / "work", n=20, size=32, fractions=(0.4, 0.3, 0.3))
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               TMPDIR=str(tmp_path))  # torchrun leaves a torchelastic_* folder in TMPDIR
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "cxrcls.train", "--work", str(work), "--out", str(ddp_out), *ARGS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("done:") == 1  # only rank 0 reports (and writes)
    assert "x2" in result.stdout
    train.main(["--work", str(work), "--out", str(single_out), *ARGS])

    assert json.loads((ddp_out / "run.json").read_text())["world_size"] == 2
    assert json.loads((ddp_out / "timing.json").read_text())["world_size"] == 2
    assert not list(ddp_out.glob("*.tmp"))
    a = torch.load(ddp_out / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(single_out / "last.pt", map_location="cpu", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    torch.manual_seed(5)  # the head both runs started from: training must have moved it
    start = Classifier("resnet18").state_dict()["net.fc.weight"]
    assert (a["model"]["net.fc.weight"] - start).abs().max() > 1e-3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    for name in ("val_probs.npy", "test_probs.npy"):
        np.testing.assert_allclose(np.load(ddp_out / name), np.load(single_out / name), atol=1e-5)
    for part in ("val_ids.csv", "test_ids.csv"):
        assert (ddp_out / part).read_text() == (single_out / part).read_text(), part
    t_ddp, t_one = read_csv(ddp_out / "thresholds.csv"), read_csv(single_out / "thresholds.csv")
    assert [r["label"] for r in t_ddp] == [r["label"] for r in t_one] == list(LABELS)
    for r, s in zip(t_ddp, t_one, strict=True):  # thresholds are probabilities: float tolerance
        assert abs(float(r["threshold"]) - float(s["threshold"])) < 1e-5, r["label"]
        assert abs(float(r["val_f1"]) - float(s["val_f1"])) < 1e-6, r["label"]
    h_ddp, h_one = read_csv(ddp_out / "history.csv"), read_csv(single_out / "history.csv")
    assert [r["epoch"] for r in h_ddp] == [r["epoch"] for r in h_one] == ["1", "2"]
    for r, s in zip(h_ddp, h_one, strict=True):
        assert abs(float(r["val_macro_auroc"]) - float(s["val_macro_auroc"])) < 1e-6
        assert abs(float(r["train_loss"]) - float(s["train_loss"])) < 1e-5
        assert abs(float(r["val_loss"]) - float(s["val_loss"])) < 1e-5
    assert read_done(ddp_out)["outputs"] == read_done(single_out)["outputs"]


def test_more_processes_than_gpus_is_a_clear_error_before_any_cuda_call(monkeypatch, tmp_path):
    """torchrun --nproc_per_node=4 on a 2-GPU machine: rank 3's process names its LOCAL_RANK and
    the GPU count, instead of CUDA's "invalid device ordinal" from set_device."""
    from test_foundation_device import fake_gpus

    chosen = fake_gpus(monkeypatch, [9, 9])

    def set_device(device):  # what CUDA does with a GPU that does not exist
        if torch.device(device).index >= 2:
            raise RuntimeError("CUDA error: invalid device ordinal")
        chosen.append(device)

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *a, **k: pytest.fail("process group started"))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(SystemExit, match=r"LOCAL_RANK=3.*GPU 3 does not exist; this process "
                                         r"sees 2 GPU\(s\)"):
        train.main(["--work", str(tmp_path), "--out", str(tmp_path / "run"), "--arch", "resnet18",
                    "--weights", "none", "--device", "cuda"])
    assert chosen == []
