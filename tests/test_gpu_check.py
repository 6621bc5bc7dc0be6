"""tools/gpu_check.py --cpu-smoke: every step runs on the CPU at tiny sizes and every
figure is printed and written to the JSON file, so the GPU check keeps working without a GPU."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "tools.gpu_check"]   # run from ROOT

LINES = ["cuda tests:", "predict lite (micro):", "predict vit_b (micro):",
         "finetune vit_b (micro, encoder + decoder) batch 2:",
         "train resnet50 32px batch 2 fp32:", "train resnet50 32px batch 4 bf16+channels_last:",
         "train densenet121 32px batch 2 bf16+channels_last:",
         "train densenet121 32px batch 4 fp32:",
         "predict resnet50 32px batch 4:", "predict densenet121 32px batch 4:", "loader 32px:",
         "concurrent resnet50 x2 batch 2:", "concurrent densenet121 x2 batch 2:",
         "projected paper grid, 30 epochs, one run at a time:",
         "projected paper grid, 30 epochs, runs side by side:",
         "projected paper grid, 15 epochs, one run at a time:",
         "projected paper grid, 15 epochs, runs side by side:"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_cpu_smoke_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([*COMMAND, "--cpu-smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for line in LINES:
        assert line in done.stdout, f"missing {line!r} in:\n{done.stdout}"
    figures = json.loads(out.read_text())
    assert figures["mode"] == "cpu-smoke" and figures["device"] == "cpu"
    assert figures["tests"]["failed"] == 0 and figures["tests"]["error"] == 0
    assert all(positive(r["images_per_s"]) for r in figures["predict"].values())
    assert positive(figures["finetune"]["seconds_per_step"])
    assert len(figures["train"]) == 8 and all(positive(r["images_per_s"]) for r in figures["train"])
    assert all(positive(v) for v in figures["eval"].values())
    assert positive(figures["loader_images_per_s"])
    assert [(r["arch"], r["runs"]) for r in figures["concurrent"]] == [("resnet50", 2),
                                                                        ("densenet121", 2)]
    assert all(positive(r["images_per_s"]) for r in figures["concurrent"])
    assert [(p["epochs"], p["concurrent"]) for p in figures["projection"]] == [
        (30, False), (30, True), (15, False), (15, True)]
    for p in figures["projection"]:
        parts = list(p["segmentation_s"].values()) + list(p["training_s"].values())
        assert all(positive(v) for v in parts)
        assert p["total_s"] == pytest.approx(sum(parts))
        assert p["meets_goal"] == (p["total_s"] <= 2 * 3600)


def test_refuses_to_run_without_cuda_unless_smoke():
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    done = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "--cpu-smoke" in done.stderr
