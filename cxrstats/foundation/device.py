"""One place that turns the `--device` and `--precision` flags into a torch device and an autocast
context.

CUDA when present, CPU otherwise. Precision `auto` means bfloat16 where the device runs it
natively (a CUDA GPU of compute capability 8.0 or newer, or a CPU with AVX512-BF16, AMX or Arm's
BF16 instructions) and float32 everywhere else; `fp32` and `bf16` force one. bf16 covers only the
networks' forward (and backward) passes under autocast: losses, sigmoid and threshold, Dice, every
statistic, optimiser state and master weights stay float32.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from pathlib import Path

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu', 'cuda', 'cuda:1' are taken as given, once
    checked: ValueError naming the flag for another kind of device, for CUDA on a machine without
    it, and for a GPU index beyond the GPUs this process sees (CUDA's own error would come later,
    at the first tensor moved there)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: not a device this toolkit runs on; use auto, cpu, "
                         "cuda or cuda:i")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine "
                         "(use cpu or auto)")
    if device.type == "cuda" and device.index is not None:
        check_gpu_index(device.index, f"--device {name}")
    return device


def check_gpu_index(index: int, what: str) -> None:
    """ValueError naming `what` when GPU `index` is not among the GPUs this process sees."""
    count = torch.cuda.device_count()
    if index >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise ValueError(f"{what}: GPU {index} does not exist; this process sees {count} "
                         f"GPU(s){shown}, cuda:0 to cuda:{count - 1}")


def keep_freed_cpu_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of handing it back to the kernel.

    Why: CPU inference allocates and frees tensors of tens of MB per layer (LiteMedSAM's first
    stage holds 64 MB per image). glibc serves blocks that large with mmap and unmaps them on free,
    so each layer pays again for fresh zeroed pages: on the team's 2-core machine that kernel time
    was a third of LiteMedSAM's encoder time. Raising the mmap and trim thresholds lets freed blocks
    be reused (`make bench` measures the gain). Process-wide and permanent; the price is that the
    process keeps its peak memory until it exits. Returns False, doing nothing, where the C library
    is not glibc.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    largest = ctypes.c_int(2**31 - 1)  # mallopt takes an int: 2 GiB
    return (bool(libc.mallopt(m_mmap_threshold, largest))
            and bool(libc.mallopt(m_trim_threshold, largest)))


def prepare_device(name: str = "auto") -> torch.device:
    """resolve_device(name), then what every CLI does once at start: on CPU
    keep_freed_cpu_memory(); on a numbered GPU, make it the current CUDA device, so that what
    defaults to the current device (pinned-memory transfers, cuDNN and cuBLAS handles, memory
    statistics) uses the GPU asked for, not cuda:0."""
    device = resolve_device(name)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    elif device.index is not None:
        torch.cuda.set_device(device)
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_runs_bf16() -> bool:
    """True when this CPU has native bfloat16 arithmetic: x86 AVX512-BF16 or AMX (as torch
    reports them), or an Arm core listing `bf16` among its features."""
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            features = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return any(line.startswith("Features") and " bf16" in line
                   for line in features.splitlines())
    return False


def cuda_runs_bf16(device: torch.device) -> bool:
    """True when the GPU `device` names has native bfloat16 arithmetic: compute capability 8.0 or
    newer (A100, H100, RTX 30xx and later), or any ROCm GPU. Not torch.cuda.is_bf16_supported():
    it also answers True on older GPUs (V100, T4) that only emulate bfloat16, and it asks about
    the current device rather than `device`."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def resolve_precision(choice: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where `device` runs bfloat16 natively, else 'fp32'; 'fp32' as given;
    'bf16' refused (ValueError) on a device without native bfloat16, where it would be slow."""
    if choice not in PRECISIONS:
        raise ValueError(f"--precision {choice}: choose one of {', '.join(PRECISIONS)}")
    native = (cuda_runs_bf16(device) if device.type == "cuda" else
              device.type == "cpu" and cpu_runs_bf16())
    if choice == "auto":
        return "bf16" if native else "fp32"
    if choice == "bf16" and not native:
        raise ValueError(f"--precision bf16: {device} does not run bfloat16 natively; use auto or "
                         "fp32")
    return choice


def add_precision_argument(parser) -> None:
    """The one `--precision` flag every stage that runs a network takes."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bfloat16 where the device runs it natively, else float32; "
                             "fp32 reproduces float32 results digit for digit")


def precision_autocast(device: torch.device, precision: str):
    """Autocast to bfloat16 for a resolved precision 'bf16'; a no-op for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision {precision!r}: resolve it first (fp32 or bf16)")
    return contextlib.nullcontext()

