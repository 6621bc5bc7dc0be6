"""One place that turns a `--device` flag into a torch device and an autocast context.

CUDA when present, CPU otherwise; autocast (bf16) only ever on CUDA, so CPU runs stay plain float32.
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
import sys

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu', 'cuda', 'cuda:1' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine "
                         "(use cpu or auto)")
    return device


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
    """resolve_device(name), and on CPU keep_freed_cpu_memory(): what every CLI calls once at
    start.
    """
    device = resolve_device(name)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    return device


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA when `enabled`; a no-op on CPU, where runs stay float32 and match the
    official models."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
