"""cxrseg benchmark (run by `make bench`):
  1. mask post-processing per 1024x1024 mask: erode r=5 + dilate r=15 + dilate r=50
     (distance transform), next to scipy.ndimage binary morphology with the same disks
     (same output);
  2. LiteMedSAM prediction throughput on CPU (images/s, 512x512 images, prior box, with and without
     one refine pass), through the same code as `cxrseg.predict`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cxrseg.engine import encode, load_model, segment  # noqa: E402
from cxrseg.morphology import dilate_disks, disk, erode_disk  # noqa: E402
from cxrseg.prompts import Prior  # noqa: E402
from vendor_medsam.device import prepare_device  # noqa: E402


def lung_like_mask(size: int = 1024, seed: int = 0) -> np.ndarray:
    """Two elliptical 'lungs' with a rough edge, (size, size) uint8 0/1."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    left = ((x - 0.3) / 0.16) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1
    right = ((x - 0.7) / 0.16) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1
    mask = left | right
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 8) > 0.02
    return (mask & (noise | ndimage.binary_erosion(mask, iterations=10))).astype(np.uint8)


def bench_postprocess(repeats: int = 10) -> None:
    mask = lung_like_mask()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        eroded = erode_disk(mask, 5)
        m15, m50 = dilate_disks(eroded, [15, 50])
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref_eroded = ndimage.binary_erosion(mask, structure=disk(5))
    ref15 = ndimage.binary_dilation(ref_eroded, structure=disk(15))
    ref50 = ndimage.binary_dilation(ref_eroded, structure=disk(50))
    scipy_seconds = time.perf_counter() - t
    same = (eroded == ref_eroded).all() and (m15 == ref15).all() and (m50 == ref50).all()
    print(f"postprocess 1024x1024 (erode 5 + dilate 15 + dilate 50): "
          f"median {np.median(times) * 1000:.0f} ms per mask over {repeats} "
          f"(min {min(times) * 1000:.0f} ms); scipy binary morphology "
          f"{scipy_seconds:.2f} s; identical output: {same}")


def bench_predict(n: int = 8, size: int = 512) -> None:
    try:
        model = load_model("lite")
    except (FileNotFoundError, ValueError) as error:
        print(f"predict: skipped, LiteMedSAM weights unavailable ({error})")
        return
    device = prepare_device("cpu")  # as the CLIs do (keeps freed memory for reuse)
    rng = np.random.default_rng(0)
    images = [np.clip(ndimage.gaussian_filter(rng.normal(120, 40, (size, size)), 3)
                      + 60 * lung_like_mask(size, i), 0, 255).astype(np.uint8) for i in range(n)]
    prior = Prior(box=[0.12, 0.15, 0.88, 0.85],
                  points=[[0.3, 0.5, 1], [0.7, 0.5, 1], [0.5, 0.5, 0]], frame="content")
    encode(model, images[:1], device, 1)     # warm-up
    for refine in (0, 1):
        t = time.perf_counter()
        embeddings = encode(model, images, device, batch_size=8)
        encoded = time.perf_counter() - t
        segment(model, embeddings, images, device, "box", prior, refine=refine)
        total = time.perf_counter() - t
        print(f"predict LiteMedSAM CPU ({torch.get_num_threads()} threads), "
              f"{n} images {size}x{size}, refine {refine}: {n / total:.2f} images/s "
              f"(encoder {encoded / n:.2f} s/image, "
              f"decoding {(total - encoded) / n * 1000:.0f} ms/image)")


if __name__ == "__main__":
    bench_postprocess()
    bench_predict()
