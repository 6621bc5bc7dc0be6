"""cxrstats.foundation.device: --device and --precision resolution, the precision autocast, and the
CPU allocator setting.
"""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from cxrstats.foundation.device import prepare_device, resolve_device


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_prepare_device_gives_the_resolved_device():
    assert prepare_device("cpu") == torch.device("cpu")


# A child process mallocs, touches and frees a 64 MB block 8 times and prints its minor page
# faults. It calls glibc's malloc directly: torch's own small allocations in between can split a
# freed block, which makes a torch-level count depend on the address layout of the run.
_FAULTS = textwrap.dedent("""
    import ctypes, resource, sys
    if sys.argv[1] == "keep":
        from cxrstats.foundation.device import keep_freed_cpu_memory
        assert keep_freed_cpu_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the allocator setting is glibc-only")
def test_keep_freed_cpu_memory_stops_repeated_page_faults():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.strip())

    pages = 64 * 2**20 // 4096
    default, keep = faults("default"), faults("keep")
    print(f"minor page faults for 8 x 64 MB: default {default}, kept {keep} ({pages} pages each)")
    assert default > 6 * pages  # each malloc maps fresh pages (munmap on free)
    assert keep < 2 * pages  # the first block maps its pages, the other seven reuse them


def test_precision_auto_follows_the_hardware_and_fp32_is_plain_float32(monkeypatch):
    import cxrstats.foundation.device as dev
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_runs_bf16", lambda: False)
    assert dev.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="does not run bfloat16 natively"):
        dev.resolve_precision("bf16", cpu)
    monkeypatch.setattr(dev, "cpu_runs_bf16", lambda: True)
    assert dev.resolve_precision("auto", cpu) == "bf16"
    assert dev.resolve_precision("fp32", cpu) == "fp32"
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with dev.precision_autocast(cpu, "fp32"):
        assert layer(x).dtype == torch.float32
    with dev.precision_autocast(cpu, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="resolve it first"):
        dev.precision_autocast(cpu, "auto")
