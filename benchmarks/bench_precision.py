"""bfloat16 against float32 on the CPU, in one process, the two precisions alternating round by
round (run by `make bench`; `python -m benchmarks.bench_precision [--threads 1]`):
  1. LiteMedSAM encoding on cxrseg.predict's path (cxrseg.engine.encode, 512x512 images): images/s
     and the relative error of the bf16 embeddings;
  2. fine-tune encoding (`cxrseg.finetune --train all`): the image encoder's forward and backward
     pass, images/s;
  3. classifier training steps (cxrcls.training.train_step, channels_last as cxrcls.train) for
     resnet50 and densenet121 at 64 px, batch 8 (the demo profile's TRAIN_ARGS), steps/s, in bf16
     with and without `cxrcls.train --bf16-copies`.
Speed-up = bf16 rate / fp32 rate (median over rounds). Skipped where the CPU has no native bf16
(`cxrstats.foundation.device.cpu_runs_bf16`) and, for 1 and 2, without the LiteMedSAM weights. The
masks themselves (bf16 against fp32 on real radiographs) are experiments/precision.py.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.bench_cxrcls import bench_train
from benchmarks.bench_cxrseg import radiographs
from cxrseg.engine import encode, load_model, model_inputs
from cxrseg.study_masks import PIPELINE_SIZE
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.device import cpu_runs_bf16, precision_autocast, prepare_device

PRECISIONS = ("fp32", "bf16")


def start_cpu(threads: int, name: str) -> bool:
    """False (saying so) where this CPU has no native bf16; else sets `threads` torch threads (0:
    torch's default) and prepares the CPU as every stage does, and returns True."""
    if not cpu_runs_bf16():
        print(f"{name}: skipped, this CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16)")
        return False
    if threads:
        torch.set_num_threads(threads)
    prepare_device("cpu")
    return True


def alternate(rounds: int, measure) -> dict[str, list[float]]:
    """{precision: [rate per round]}, fp32 and bf16 taking turns in every round."""
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for precision in PRECISIONS:
            rates[precision].append(measure(precision))
    return rates


def line(what: str, rates: dict[str, list[float]], unit: str) -> float:
    fp32, bf16 = (float(np.median(rates[p])) for p in PRECISIONS)
    print(f"{what}: fp32 {fp32:.3f} {unit}, bf16 {bf16:.3f} {unit}, speed-up {bf16 / fp32:.2f}x "
          f"(median of {len(rates['fp32'])} rounds)", flush=True)
    return bf16 / fp32


def bench_encode(model, images, rounds: int) -> float:
    """cxrseg.predict's encoder path; prints images/s, speed-up and the embedding error."""
    device = torch.device("cpu")
    encode(model, images[:1], device, precision="bf16", progress_every=1e9)   # warm-up, both
    reference = encode(model, images[:1], device, progress_every=1e9).float()

    def measure(precision):
        start = time.perf_counter()
        encode(model, images, device, precision=precision, progress_every=1e9)
        return len(images) / (time.perf_counter() - start)
    speedup = line(f"LiteMedSAM encode (cxrseg.engine.encode), {len(images)} images "
                   f"{images[0].shape[0]}x{images[0].shape[1]}", alternate(rounds, measure),
                   "images/s")
    low = encode(model, images[:1], device, precision="bf16", progress_every=1e9).float()
    error = float((low - reference).norm() / reference.norm())
    print(f"  relative error of the bf16 embedding: {100 * error:.2f}%")
    return speedup


def bench_finetune_encode(model, images, rounds: int) -> float:
    """The encoder's forward + backward pass as `cxrseg.finetune --train all` runs it."""
    device = torch.device("cpu")
    _, x = model_inputs(model, images[:1])
    encoder = model.image_encoder.train(False)   # finetune keeps the encoder's BatchNorm in eval
    for p in encoder.parameters():
        p.requires_grad_(True)

    def step(precision):
        with precision_autocast(device, precision):
            out = encoder(x)
        loss = out.float().square().mean()
        loss.backward()
        encoder.zero_grad(set_to_none=True)

    for precision in PRECISIONS:
        step(precision)   # warm-up

    def measure(precision):
        start = time.perf_counter()
        for _ in range(len(images)):
            step(precision)
        return len(images) / (time.perf_counter() - start)
    return line("LiteMedSAM fine-tune encode (encoder forward + backward, batch 1)",
                alternate(rounds, measure), "images/s")


def bench_classifiers(rounds: int, steps: int, size: int, batch: int) -> dict[str, float]:
    """Training steps/s in fp32, in bf16 (autocast) and in bf16 with `--bf16-copies`, the three
    taking turns in every round; returns each arch's speed-ups over fp32."""
    out = {}
    variants = {"fp32": ("fp32", False), "bf16": ("bf16", False),
                "bf16 + copies": ("bf16", True)}
    for arch in ("resnet50", "densenet121"):
        rates: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for name, (precision, copies) in variants.items():
                rates[name].append(bench_train(
                    arch, size, max_steps=steps, budget=1e9, batch=batch, precision=precision,
                    channels_last=True, warmup=1, quiet=True, bf16_copies=copies) / batch)
        fp32 = float(np.median(rates["fp32"]))
        out[arch] = {v: float(np.median(r)) / fp32 for v, r in rates.items()}
        print(f"{arch} training step, {size} px, batch {batch}: " + ", ".join(
            f"{v} {float(np.median(r)):.3f} steps/s ({out[arch][v]:.2f}x)"
            for v, r in rates.items()) + f" (median of {rounds} rounds)", flush=True)
    return out


def main(argv=None) -> None:
    parser = Parser(prog="python -m benchmarks.bench_precision", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int_range(0), default=1,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int_range(1), default=3)
    parser.add_argument("--images", type=int_range(1), default=2, help="images per encode round")
    parser.add_argument("--steps", type=int_range(1), default=3, help="training steps per round")
    parser.add_argument("--size", type=int_range(32), default=64, help="classifier input side")
    parser.add_argument("--batch", type=int_range(1), default=8, help="classifier batch")
    parser.add_argument("--classifiers-only", action="store_true",
                        help="only the classifier training steps (3)")
    args = parser.parse_args(argv)
    if not start_cpu(args.threads, "precision"):
        return
    print(f"precision: CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    model = None
    try:
        model = None if args.classifiers_only else load_model("lite")
    except (FileNotFoundError, ValueError) as error:
        print(f"LiteMedSAM: skipped, weights unavailable ({error})")
    if model is not None:
        images = radiographs(args.images, PIPELINE_SIZE)
        bench_encode(model, images, args.rounds)
        bench_finetune_encode(model, images, args.rounds)
    bench_classifiers(args.rounds, args.steps, args.size, args.batch)


if __name__ == "__main__":
    main()
