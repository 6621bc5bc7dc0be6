"""The CUDA path: bf16 autocast, channels_last, pinned transfers, cxrseg.engine's CUDA batch, a
classifier step under autocast, CUDA-vs-CPU agreement of SAM predictions (through cxrseg.engine,
the path cxrseg.predict takes), what `--precision auto` picks on this GPU, and the stages' command
lines end to end on the GPU: classifier training (with --deterministic, killed and resumed from its
own last.pt) and Grad-CAM attribution; segmentation fine-tuning of the decoder and of both
networks, box and point prompts (resumed), and evaluation and prediction with it.

Every test here is marked `cuda` and skipped where CUDA is absent (`pytest -m cuda` selects them;
tools/gpu_check.py runs them first). Tolerances are loose on purpose: bf16 keeps about
3 significant digits, so CUDA results agree with float32 CPU ones, not bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrcls.inputs import InputSource
from cxrcls.loader import BatchLoader
from cxrcls.models import build_model
from cxrcls.training import make_optimizer, to_model_input, train_step
from cxrseg.engine import encode, segment
from vendor_medsam import build_sam, load_medsam, weights
from cxrstats.foundation.device import precision_autocast, resolve_device, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
MICRO = (Path(__file__).resolve().parent / "fixtures" / "vendor_medsam" / "micro_sam"
         / "state_dict.pt")
CUDA = torch.device("cuda") if torch.cuda.is_available() else None

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(CUDA is None, reason="needs a CUDA GPU")]


def test_auto_device_is_cuda():
    assert resolve_device("auto").type == "cuda"


def test_precision_auto_is_bf16_exactly_from_compute_capability_8():
    major, _ = torch.cuda.get_device_capability(CUDA)
    assert resolve_precision("auto", CUDA) == ("bf16" if major >= 8 else "fp32")


def test_autocast_runs_matmul_and_conv_in_bf16_and_can_be_switched_off():
    a = torch.rand(8, 16, device=CUDA)
    conv = torch.nn.Conv2d(3, 4, 3).to(CUDA)
    x = torch.rand(1, 3, 8, 8, device=CUDA)
    with precision_autocast(CUDA, "bf16"):
        assert (a @ a.T).dtype == torch.bfloat16
        assert conv(x).dtype == torch.bfloat16
    with precision_autocast(CUDA, "fp32"):
        assert (a @ a.T).dtype == torch.float32


def test_channels_last_model_input_keeps_its_layout_and_values():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    masks = (rng.random((3, 32, 32)) > 0.5).astype(np.uint8)
    for size in (None, 16):
        fast = to_model_input(images, masks, "m15", CUDA, size, 2, channels_last=True)
        plain = to_model_input(images, masks, "m15", torch.device("cpu"), size, 2,
                               channels_last=False)
        assert fast.device.type == "cuda"
        assert fast.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast.cpu(), plain, atol=1e-5, rtol=0)


def test_pinned_transfer_of_a_loader_batch_is_exact():
    rng = np.random.default_rng(1)
    source = InputSource("original", rng.integers(0, 256, (6, 24, 24), dtype=np.uint8), None)
    batch = next(iter(BatchLoader(source, np.arange(6), np.zeros((6, 5), np.float32), 4)))
    assert torch.from_numpy(batch.images).pin_memory().is_pinned()
    x = to_model_input(batch.images, None, "original", CUDA, None, 2, channels_last=False)
    torch.cuda.synchronize()
    expected = torch.from_numpy(batch.images).float().div(255).unsqueeze(1)
    assert torch.equal(x.cpu(), expected)


def test_encode_batches_eight_images_on_cuda_and_returns_cpu_embeddings():
    model = load_medsam(MICRO, "micro")
    seen = []
    model.image_encoder.register_forward_hook(lambda m, x, y: seen.append(len(x[0])))
    images, _ = _images_and_boxes(9, 50)
    embeddings = encode(model, list(images), CUDA, batch_size=8)
    assert seen == [8, 1]
    assert next(model.parameters()).device.type == "cuda"
    assert embeddings.device.type == "cpu" and embeddings.dtype == torch.float16


def test_resnet_step_under_bf16_autocast_matches_float32_loosely():
    x = torch.rand(4, 1, 64, 64, device=CUDA)
    y = (torch.rand(4, 5, device=CUDA) < 0.3).float()
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model("resnet18", "none").to(CUDA).train()
        model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, 1e-4)
        xl = x.contiguous(memory_format=torch.channels_last)
        losses[precision] = [float(train_step(model, optimizer, xl, y, precision))
                             for _ in range(3)]
    assert all(np.isfinite(losses["bf16"]))
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.05, atol=0.02)


def _images_and_boxes(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    blob = (((x - 0.5) / 0.3) ** 2 + ((y - 0.5) / 0.35) ** 2 < 1)
    images = np.stack([np.clip(rng.normal(90, 25, (size, size)) + 100 * blob, 0, 255)
                       for _ in range(n)]).astype(np.uint8)
    boxes = np.tile(np.array([[0.2, 0.15, 0.8, 0.85]], np.float32) * size, (n, 1))
    return images, boxes


def _probabilities(model, images, boxes, device: torch.device) -> np.ndarray:
    """(N, H, W) float32 probabilities through cxrseg.engine, as cxrseg.predict gets them: bf16 on
    CUDA (`--precision auto`), float32 on the CPU (the reference)."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    embeddings = encode(model, list(images), device, batch_size=8, precision=precision)
    _, probs, _ = segment(model, embeddings, list(images), device, "box", None, boxes_px=boxes,
                          batch_size=8, precision=precision)
    return np.stack([p.numpy() for p in probs])


def _agreement(model, n: int, size: int):
    images, boxes = _images_and_boxes(n, size)
    on_cpu = _probabilities(model, images, boxes, torch.device("cpu"))
    on_cuda = _probabilities(model, images, boxes, CUDA)
    assert on_cuda.shape == on_cpu.shape and on_cuda.dtype == np.float32
    return np.abs(on_cuda - on_cpu), ((on_cuda > 0.5) == (on_cpu > 0.5)).mean()


def test_micro_predictions_agree_between_cuda_and_cpu():
    diff, _ = _agreement(load_medsam(MICRO, "micro"), 9, 50)  # random weights: p near 0.5, no masks
    assert diff.mean() < 0.02


def test_litemedsam_predictions_agree_between_cuda_and_cpu():
    real = weights.find_lite_weights() is not None
    if real:
        model = load_medsam("lite")
    else:
        torch.manual_seed(0)
        model = build_sam("lite").eval()
    diff, same = _agreement(model, 9, 256)
    assert diff.mean() < 0.02
    if real:  # trained weights give confident masks, which must not flip beyond their edges
        assert same >= 0.97


# ----------------------------------------------------------------------------- the stages on CUDA

def _train(work: Path, out: Path, epochs: int, *extra: str) -> None:
    """cxrcls.train on the GPU in a child process (--deterministic is process-wide), m15 input."""
    command = [sys.executable, "-m", "cxrcls.train", "--work", str(work), "--train-input", "m15",
               "--out", str(out), "--arch", "resnet18", "--weights", "none", "--lr", "1e-3",
               "--batch-size", "4", "--seed", "3", "--device", str(CUDA), "--deterministic",
               "--save-every", "0", "--epochs", str(epochs), *extra]
    done = subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_classifier_training_resumes_on_cuda_and_attribution_runs_there(tmp_path):
    from cxrcls import attribution
    from synthetic_work import make_work

    work = make_work(tmp_path / "work", n=20, size=32, fractions=(0.4, 0.3, 0.3))
    whole = work / "runs" / "resnet18_m15" / "split0"
    resumed = tmp_path / "resumed"
    _train(work, whole, 2)
    _train(work, resumed, 1)
    _train(work, resumed, 2, "--resume")   # last.pt holds Adam's state as saved on the GPU
    a = torch.load(whole / "last.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(resumed / "last.pt", map_location="cpu", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    timing = json.loads((whole / "timing.json").read_text())
    assert timing["device"] == str(CUDA)
    assert timing["device_name"] == torch.cuda.get_device_name(CUDA)
    assert timing["precision"] == resolve_precision("auto", CUDA)
    out = tmp_path / "results"
    attribution.main(["--work", str(work), "--out", str(out), "--device", str(CUDA),
                      "--settings", "resnet18_m15", "--panel-images", "2", "--min-grid", "1"])
    assert (out / "attribution.csv").is_file()


@pytest.mark.parametrize("train, prompt", [("decoder", "box"), ("all", "box+points")])
def test_segmentation_finetunes_resumes_evaluates_and_predicts_on_cuda(tmp_path, train, prompt):
    from PIL import Image
    from synthetic_pairs import (run_evaluate, run_finetune, run_predict, run_split, write_pairs,
                                 write_stack)

    root = write_pairs(tmp_path / "pairs")
    run_split(root)
    on_gpu = ("--device", str(CUDA), "--train", train, "--prompt", prompt)
    run_finetune(root, root / "seg", *on_gpu)
    run_finetune(root, root / "seg", *on_gpu, "--epochs", "2", "--resume")
    curves = (root / "seg" / "curves.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in curves[1:]] == ["0"] * 2 + ["1"] * 2 + ["2"] * 2
    run_evaluate(root, root / "seg", "--device", str(CUDA))
    files = sorted((root / "images").iterdir())
    write_stack(root / "cache", [np.asarray(Image.open(f)) for f in files],
                [f.name for f in files])
    run_predict(root, root / "seg", tmp_path / "masks" / "raw.npy", "--device", str(CUDA))
    masks = np.load(tmp_path / "masks" / "raw.npy")
    assert masks.shape == (len(files), 40, 36) and set(np.unique(masks)) <= {0, 1}
