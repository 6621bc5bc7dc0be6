"""Benchmark of the classification stages on CPU (run by `make bench`; about 1-3 minutes).

1. Image cache: 1024x1024 PNGs -> 512x512 uint8 memmap, images/s with all cores, and peak memory.
2. Loader: images/s delivered to the model (memmap slicing, m15 masking, resize, augmentation).
3. Training steps (batch 4, Adam, BCE) for resnet50 and densenet121 at 224 and 512 px.
The loader must deliver at least 10x what the slowest-to-feed model (the fastest one) consumes.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cxrcls.augment import draw_params  # noqa: E402
from cxrcls.cache import build_cache  # noqa: E402
from cxrcls.data import BatchLoader  # noqa: E402
from cxrcls.inputs import open_input  # noqa: E402
from cxrcls.models import build_model  # noqa: E402
from cxrcls.train import train_step, training_input  # noqa: E402
from cxrstats.fileio import write_csv, write_done  # noqa: E402
from vendor_medsam.device import prepare_device  # noqa: E402

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
    build_cache(names, folder / "png", folder / "cache_png", size=512, workers=workers,
                progress_every=1e9)
    seconds = time.perf_counter() - start
    rate = N_PNG / seconds
    print(f"cache build: {N_PNG} PNGs 1024x1024 -> 512, {workers} workers: {seconds:.2f} s, "
          f"{rate:.1f} images/s")
    return rate


def make_cache(folder: Path, size: int = 512) -> None:
    """A (N_CACHE, 512, 512) image memmap with m15 masks, written without holding it in memory."""
    rng = np.random.default_rng(1)
    (folder / "cache").mkdir()
    (folder / "masks").mkdir()
    images = np.lib.format.open_memmap(folder / "cache" / "images.npy", "w+", np.uint8,
                                       (N_CACHE, size, size))
    masks = np.lib.format.open_memmap(folder / "masks" / "m15.npy", "w+", np.uint8,
                                      (N_CACHE, size, size))
    for i in range(N_CACHE):
        images[i] = rng.integers(0, 256, (size, size), dtype=np.uint8)
        masks[i, size // 8:-size // 8, size // 8:-size // 8] = 1
    images.flush(), masks.flush()
    del images, masks
    index = [[i, f"img{i:05d}.png"] for i in range(N_CACHE)]  # open_input checks both records
    for stage, outputs, done in (("cache", ["images.npy", "index.csv"], "done.json"),
                                 ("masks", ["m15.npy", "index.csv"], "done_postprocess.json")):
        write_csv(folder / stage / "index.csv", ["row", "image"], index)
        write_done(folder / stage, {"benchmark": True}, outputs, done=done)


def bench_loader(folder: Path, image_size: int, seconds: float = 3.0) -> float:
    source = open_input(folder / "cache", folder / "masks", "m15")
    labels = np.zeros((N_CACHE, 5), np.float32)
    loader = BatchLoader(source, np.arange(N_CACHE), labels, BATCH, shuffle=True, drop_last=True)
    generator = torch.Generator().manual_seed(0)
    device = prepare_device("cpu")  # as the CLIs do (keeps freed memory for reuse)
    delivered, start, epoch = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        epoch += 1
        loader.set_epoch(epoch)
        for batch in loader:
            x = training_input(batch, "m15", device, image_size, 2, False,
                               draw_params(generator, batch.global_size))
            delivered += x.shape[0]
            if time.perf_counter() - start >= seconds:
                break
    rate = delivered / (time.perf_counter() - start)
    print(f"loader (memmap slice + m15 mask + resize + augmentation) at {image_size}px: "
          f"{rate:.0f} images/s")
    return rate


def bench_train(arch: str, image_size: int, max_steps: int = 3, budget: float = 8.0) -> float:
    """Seconds per step after one warm-up step: up to `max_steps` steps or `budget` seconds."""
    torch.manual_seed(0)
    model = build_model(arch, "none").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(BATCH, 1, image_size, image_size)
    y = (torch.rand(BATCH, 5) < 0.3).float()
    train_step(model, optimizer, x, y, amp=False)  # warm-up
    start, steps = time.perf_counter(), 0
    while steps < max_steps and (steps == 0 or time.perf_counter() - start < budget):
        train_step(model, optimizer, x, y, amp=False)
        steps += 1
    seconds = (time.perf_counter() - start) / steps
    rate = BATCH / seconds
    print(f"train step {arch:>11} at {image_size}px, batch {BATCH}: {seconds:.2f} s/step, "
          f"{rate:.2f} images/s")
    return rate


def main() -> None:
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
