"""cxrseg benchmark (run by `make bench`; `python -m benchmarks.bench_cxrseg`):
  1. mask post-processing per 1024x1024 mask: erode r=5 + dilate r=15 + dilate r=50 (the study's
     radii, cxrseg.study_masks; distance transform), next to scipy.ndimage binary morphology with
     the same disks (same output);
  2. LiteMedSAM prediction throughput on CPU (images/s, 512x512 images, prior box, with and without
     one refine pass), through the same code as `cxrseg.predict` (cxrseg.engine.encode + segment).

`predict_throughput` is that measurement for any model and device (tools.gpu_check times the
segmenters on the GPU with it).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from cxrseg import predict
from cxrseg.engine import encode, load_model, segment
from cxrseg.morphology import dilate_disks, disk, erode_disk
from cxrseg.prompts import Prior
from cxrseg.study_masks import DILATE_RADII, ERODE_RADIUS, PIPELINE_SIZE
from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.device import prepare_device


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
        eroded = erode_disk(mask, ERODE_RADIUS)
        dilated = dilate_disks(eroded, list(DILATE_RADII))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref_eroded = ndimage.binary_erosion(mask, structure=disk(ERODE_RADIUS))
    refs = [ndimage.binary_dilation(ref_eroded, structure=disk(r)) for r in DILATE_RADII]
    scipy_seconds = time.perf_counter() - t
    same = (eroded == ref_eroded).all() and all((d == r).all() for d, r in zip(dilated, refs))
    steps = " + ".join(f"dilate {r}" for r in DILATE_RADII)
    print(f"postprocess 1024x1024 (erode {ERODE_RADIUS} + {steps}): "
          f"median {np.median(times) * 1000:.0f} ms per mask over {repeats} "
          f"(min {min(times) * 1000:.0f} ms); scipy binary morphology "
          f"{scipy_seconds:.2f} s; identical output: {same}")


PRIOR = Prior(box=[0.12, 0.15, 0.88, 0.85],
              points=[[0.3, 0.5, 1], [0.7, 0.5, 1], [0.5, 0.5, 0]], frame="content")
PREDICT_BATCH = predict.build_parser().get_default("batch_size")   # cxrseg.predict's default


def radiographs(n: int, size: int) -> list[np.ndarray]:
    """n (size, size) uint8 chest-like images: smooth noise with two brighter 'lungs'."""
    rng = np.random.default_rng(0)
    return [np.clip(ndimage.gaussian_filter(rng.normal(120, 40, (size, size)), 3)
                    + 60 * lung_like_mask(size, i), 0, 255).astype(np.uint8) for i in range(n)]


def predict_seconds(model, images: list[np.ndarray], device: torch.device,
                    batch_size: int = PREDICT_BATCH, refine: int = 0,
                    precision: str = "fp32") -> tuple[float, float]:
    """(encoder seconds, total seconds) of cxrseg.predict's path on `images`: encode, then
    segment with the prior's box (and `refine` extra passes), under `precision` (resolved)."""
    start = time.perf_counter()
    embeddings = encode(model, images, device, batch_size, precision=precision)
    encoded = time.perf_counter() - start
    segment(model, embeddings, images, device, "box", PRIOR, refine=refine, batch_size=batch_size,
            precision=precision)
    return encoded, time.perf_counter() - start


def predict_throughput(model, n_images: int, rounds: int, device: str = "cpu",
                       size: int = PIPELINE_SIZE, batch_size: int = PREDICT_BATCH,
                       quiet: bool = False, precision: str = "fp32") -> float:
    """Images/s of cxrseg.predict's path (no refine pass) on `n_images` synthetic (size, size)
    images, the best of `rounds` after one warm-up batch (CUDA: kernels, cuDNN plans)."""
    device = torch.device(device)
    images = radiographs(n_images, size)
    predict_seconds(model, images[:batch_size], device, batch_size, precision=precision)
    best = min(predict_seconds(model, images, device, batch_size, precision=precision)[1]
               for _ in range(rounds))
    if not quiet:
        print(f"  {model.config_name} cxrseg.predict path ({precision}), batch {batch_size}: "
              f"{n_images / best:.2f} images/s (best of {rounds}; {n_images} images of "
              f"{size}x{size}, prior box, pre/post-processing included)")
    return n_images / best


def bench_predict(n: int = 8, size: int = PIPELINE_SIZE) -> None:
    try:
        model = load_model("lite")
    except (FileNotFoundError, ValueError) as error:
        print(f"predict: skipped, LiteMedSAM weights unavailable ({error})")
        return
    device = prepare_device("cpu")  # as the CLIs do (keeps freed memory for reuse)
    images = radiographs(n, size)
    encode(model, images[:1], device, 1)     # warm-up
    for refine in (0, 1):
        encoded, total = predict_seconds(model, images, device, refine=refine)
        print(f"predict LiteMedSAM CPU ({torch.get_num_threads()} threads), "
              f"{n} images {size}x{size}, refine {refine}: {n / total:.2f} images/s "
              f"(encoder {encoded / n:.2f} s/image, "
              f"decoding {(total - encoded) / n * 1000:.0f} ms/image)")


def main(argv=None) -> None:
    Parser(prog="python -m benchmarks.bench_cxrseg", description=__doc__,
           formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    bench_postprocess()
    bench_predict()


if __name__ == "__main__":
    main()
