"""Benchmark of the classification stages on CPU (run by `make bench`; about 1-3 minutes):
`python -m benchmarks.bench_cxrcls`.

1. Image cache: 1024x1024 PNGs -> 512x512 uint8 memmap, images/s with all cores, and peak memory.
2. Loader: images/s delivered to the model (memmap slicing, m15 masking, resize, augmentation).
3. Training steps (batch 4, Adam, BCE) for resnet50 and densenet121 at 224 and 512 px.
The loader must deliver at least 10x what the slowest-to-feed model (the fastest one) consumes.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrcls.augment import draw_params
from cxrcls.cache import build_cache
from cxrcls.inputs import open_input
from cxrcls.loader import BatchLoader
from cxrcls.models import build_model
from cxrcls.training import make_optimizer, train_step, training_input
from cxrseg.study_masks import PIPELINE_SIZE
from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import write_csv, write_done
from cxrstats.foundation.device import precision_autocast, prepare_device

N_PNG = 24
N_CACHE = 200
BATCH = 4


def bench_cache(folder: Path) -> float:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:1024, :1024]
    base = (128 + 60 * np.sin(x / 40.0) * np.cos(y / 55.0)).astype(np.float32)
    names = []
    for i in range(N_PNG):
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        names.append(f"img{i:03d}.png")
        Image.fromarray(img).save(folder / "png" / names[-1])
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    build_cache(names, folder / "png", folder / "cache_png", size=PIPELINE_SIZE, workers=workers,
                progress_every=1e9)
    seconds = time.perf_counter() - start
    rate = N_PNG / seconds
    print(f"cache build: {N_PNG} PNGs 1024x1024 -> 512, {workers} workers: {seconds:.2f} s, "
          f"{rate:.1f} images/s")
    return rate


def make_cache(folder: Path, size: int = PIPELINE_SIZE, n: int = N_CACHE) -> None:
    """An (n, size, size) image memmap with m15 masks, written without holding it in memory."""
    rng = np.random.default_rng(1)
    (folder / "cache").mkdir()
    (folder / "masks").mkdir()
    images = np.lib.format.open_memmap(folder / "cache" / "images.npy", "w+", np.uint8,
                                       (n, size, size))
    masks = np.lib.format.open_memmap(folder / "masks" / "m15.npy", "w+", np.uint8,
                                      (n, size, size))
    for i in range(n):
        images[i] = rng.integers(0, 256, (size, size), dtype=np.uint8)
        masks[i, size // 8:-size // 8, size // 8:-size // 8] = 1
    images.flush(), masks.flush()
    del images, masks
    index = [[i, f"img{i:05d}.png"] for i in range(n)]  # open_input checks the records
    raw = {"raw_sha256": "benchmark"}   # m15 counts as made from the current raw masks
    for stage, outputs, done, facts in (
            ("cache", ["images.npy", "index.csv"], "done.json", {}),
            ("masks", ["m15.npy", "index.csv"], "done_postprocess.json", raw),
            ("masks", [], "done_predict.json", raw)):
        write_csv(folder / stage / "index.csv", ["row", "image"], index)
        write_done(folder / stage, {"benchmark": True}, outputs, done=done, **facts)


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer read afterwards covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loader(folder: Path, image_size: int, seconds: float = 3.0, device: str = "cpu",
                 batch: int = BATCH) -> float:
    """Images/s the loader delivers as model input on `device` (cache in `folder`, m15 masks)."""
    source = open_input(folder / "cache", folder / "masks", "m15")
    n = len(source.images)
    labels = np.zeros((n, 5), np.float32)
    loader = BatchLoader(source, np.arange(n), labels, batch, shuffle=True, drop_last=True)
    generator = torch.Generator().manual_seed(0)
    device = prepare_device(device)  # as the CLIs do (on CPU: keeps freed memory for reuse)
    delivered, start, epoch = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        epoch += 1
        loader.set_epoch(epoch)
        for batch_ in loader:
            x = training_input(batch_, "m15", device, image_size, 2, False,
                               draw_params(generator, batch_.global_size))
            delivered += x.shape[0]
            if time.perf_counter() - start >= seconds:
                break
    sync(device)
    rate = delivered / (time.perf_counter() - start)
    print(f"loader (memmap slice + m15 mask + resize + augmentation) at {image_size}px: "
          f"{rate:.0f} images/s")
    return rate


def bench_train(arch: str, image_size: int, max_steps: int = 3, budget: float = 8.0,
                batch: int = BATCH, device: str = "cpu", precision: str = "fp32",
                channels_last: bool = False, warmup: int = 1, quiet: bool = False,
                ready=None, bf16_copies: bool = False) -> float:
    """Training images/s of cxrcls.training's train_step on random data: after `warmup` steps, up to
    `max_steps` steps or `budget` seconds. `precision` (resolved: fp32 or bf16 autocast),
    `channels_last` and `bf16_copies` as the training CLI sets them. `ready()`, when given, is
    called between warm-up and timing (a barrier for runs timed side by side)."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = build_model(arch, "none").train().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-4, precision, bf16_copies=bf16_copies)
    x = torch.rand(batch, 1, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 5, device=device) < 0.3).float()
    for _ in range(warmup):
        train_step(model, optimizer, x, y, precision)
    sync(device)
    if ready is not None:
        ready()
    start, steps = time.perf_counter(), 0
    while steps < max_steps and (steps == 0 or time.perf_counter() - start < budget):
        train_step(model, optimizer, x, y, precision)
        steps += 1
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    rate = batch / seconds
    if not quiet:
        print(f"train step {arch:>11} at {image_size}px, batch {batch}: {seconds:.2f} s/step, "
              f"{rate:.2f} images/s")
    return rate


def bench_eval(arch: str, image_size: int, batch: int = 16, max_steps: int = 3,
               budget: float = 8.0, device: str = "cpu", precision: str = "fp32",
               channels_last: bool = False, warmup: int = 1) -> float:
    """Prediction images/s (eval mode, no gradients, cxrcls.train's default eval batch of 16), the
    validation and test passes of a training run."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = build_model(arch, "none").eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 1, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad(), precision_autocast(device, precision):
            model(x)
    for _ in range(warmup):
        forward()
    sync(device)
    start, steps = time.perf_counter(), 0
    while steps < max_steps and (steps == 0 or time.perf_counter() - start < budget):
        forward()
        steps += 1
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    Parser(prog="python -m benchmarks.bench_cxrcls", description=__doc__,
           formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(f"cxrcls benchmark: CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "png").mkdir()
        bench_cache(folder)
        make_cache(folder)
        loader = {s: bench_loader(folder, s) for s in (224, 512)}
    model = {(a, s): bench_train(a, s) for s in (224, 512) for a in ("resnet50", "densenet121")}
    for s in (224, 512):
        fastest = max(rate for (a, size), rate in model.items() if size == s)
        ratio = loader[s] / fastest
        verdict = "OK" if ratio >= 10 else "TOO SLOW"
        print(f"loader / fastest model at {s}px: {ratio:.0f}x (needs >= 10x): {verdict}")


if __name__ == "__main__":
    main()
