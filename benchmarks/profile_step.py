"""Where a classifier training step spends its time, float32 against bfloat16 on the CPU:
`python -m benchmarks.profile_step [--arch resnet50] [--threads 1]`.

1. Per phase (forward under the precision's autocast, backward, fused Adam update), ms per step,
   median over rounds, the two precisions alternating round by round; the phases are
   cxrcls.training.train_step's, timed apart.
2. torch.profiler's convolution backward per input shape, ms per step, for each precision: the
   layers where bf16 gains least (float32's small 1x1 convolutions take PyTorch's own path,
   `_slow_conv2d_backward`, counted with oneDNN's `convolution_backward`).
3. The copies autocast adds (`aten::copy_`: float32 weights cast to bf16 in the forward pass,
   bf16 gradients cast back), ms per step, and a bound: forward + backward of the model held in
   bf16 itself (no float32 master weights, so not a training recipe; no update).
A diagnostic for benchmarks.bench_precision's training rows (same model, input and optimizer).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cxrcls.models import build_model
from cxrcls.bf16adam import BF16Adam
from cxrcls.training import make_optimizer
from cxrstats.foundation.argtypes import Parser, int_range
from benchmarks.bench_precision import PRECISIONS, start_cpu
from cxrstats.foundation.device import precision_autocast

PHASES = ("forward", "backward", "update")
CONV_BACKWARD = ("aten::convolution_backward", "aten::_slow_conv2d_backward")


def setup(arch: str, size: int, batch: int, precision: str, bf16_copies: bool = False):
    """(model, optimizer, x, y) as benchmarks.bench_cxrcls.bench_train builds them,
    channels_last (the optimizer cxrcls.train uses at `precision`, `--bf16-copies`)."""
    torch.manual_seed(0)
    model = build_model(arch, "none").train().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 5) < 0.3).float()
    return model, make_optimizer(model, 1e-4, precision, bf16_copies=bf16_copies), x, y


def timed_step(model, optimizer, x, y, precision: str) -> list[float]:
    """One training step; seconds of its forward pass, backward pass and Adam update."""
    t0 = time.perf_counter()
    with precision_autocast(x.device, precision):
        logits = optimizer.forward(x) if isinstance(optimizer, BF16Adam) else model(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    optimizer.step()
    return [t1 - t0, t2 - t1, time.perf_counter() - t2]


def phases(runs: dict, rounds: int, steps: int) -> None:
    """Prints ms per phase and step, median over alternating rounds, and the speed-up."""
    times = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for precision, run in runs.items():
            total = np.zeros(3)
            for _ in range(steps):
                total += timed_step(*run, precision)
            times[precision].append(1000 * total / steps)
    for precision in PRECISIONS:
        ms = np.median(np.array(times[precision]), axis=0)
        print(f"{precision}: " + ", ".join(f"{n} {v:.1f}" for n, v in zip(PHASES, ms))
              + f", step {ms.sum():.1f} ms")
    ratios = (np.array(times["fp32"]).sum(1) / np.array(times["bf16"]).sum(1))
    print(f"speed-up per round: {' '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{np.median(ratios):.2f}x")


def conv_backward(run, precision: str, steps: int, top: int) -> None:
    """Prints the `top` input shapes by convolution-backward time, ms per step."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            timed_step(*run, precision)
    events = [e for e in prof.key_averages(group_by_input_shape=True)
              if e.key in CONV_BACKWARD]
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    print(f"{precision}: convolution backward {total:.1f} ms a step; largest "
          "(grad_output, input, weight shapes: ms a step, calls a step):")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        shapes = " ".join("x".join(map(str, s)) for s in e.input_shapes[:3])
        print(f"  {shapes}: {e.self_cpu_time_total / 1000 / steps:.1f} ms, "
              f"{e.count // steps} calls")


def copies(run, precision: str, steps: int) -> None:
    """Prints the ms a step spent in dtype copies (`aten::copy_`)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            timed_step(*run, precision)
    ms = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::copy_")
    print(f"{precision}: aten::copy_ {ms / 1000 / steps:.1f} ms a step")


def bf16_bound(arch: str, size: int, batch: int, rounds: int, steps: int) -> None:
    """Prints forward + backward ms of the model held in bf16 (weights and input), median of
    `rounds`: what the step's compute costs without autocast's copies."""
    model, _, x, y = setup(arch, size, batch, "fp32")
    model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)

    def forward_backward():
        F.binary_cross_entropy_with_logits(model(x).float(), y).backward()
        model.zero_grad(set_to_none=True)

    forward_backward()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            forward_backward()
        times.append(1000 * (time.perf_counter() - t0) / steps)
    print(f"model held in bf16: forward + backward {np.median(times):.1f} ms (no update)")


def main(argv=None) -> None:
    parser = Parser(prog="python -m benchmarks.profile_step", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("resnet50", "densenet121"), default="resnet50")
    parser.add_argument("--threads", type=int_range(0), default=1,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int_range(1), default=7)
    parser.add_argument("--steps", type=int_range(1), default=5, help="steps per round")
    parser.add_argument("--size", type=int_range(32), default=64, help="input side, px")
    parser.add_argument("--batch", type=int_range(1), default=8)
    parser.add_argument("--top", type=int_range(1), default=6, help="shapes listed")
    parser.add_argument("--bf16-copies", action="store_true",
                        help="bf16 trains as cxrcls.train --bf16-copies does")
    args = parser.parse_args(argv)
    if not start_cpu(args.threads, "profile_step"):
        return
    print(f"{args.arch}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    runs = {p: setup(args.arch, args.size, args.batch, p, args.bf16_copies) for p in PRECISIONS}
    for precision, run in runs.items():
        for _ in range(2):
            timed_step(*run, precision)          # warm-up
    phases(runs, args.rounds, args.steps)
    for precision, run in runs.items():
        conv_backward(run, precision, args.steps, args.top)
    for precision, run in runs.items():
        copies(run, precision, args.steps)
    bf16_bound(args.arch, args.size, args.batch, args.rounds, args.steps)


if __name__ == "__main__":
    main()
