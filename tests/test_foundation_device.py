"""cxrstats.foundation.device: --device and --precision resolution, the precision autocast, and the
CPU allocator setting.
"""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from types import SimpleNamespace

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


def fake_gpus(monkeypatch, majors: list[int]) -> list:
    """Pretend this machine has CUDA GPUs of these compute-capability majors (cuda:0 first), as a
    fresh process sees them: cuda:0 current, and bfloat16 tensors can be made on every one (torch
    emulates bfloat16 below 8.0). Returns the list that records torch.cuda.set_device calls."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(majors))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)

    def properties(device=None):
        index = device if isinstance(device, int) else getattr(device, "index", None)
        return SimpleNamespace(major=majors[index or 0], minor=0)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_precision_auto_is_float32_on_a_gpu_that_only_emulates_bfloat16(monkeypatch):
    import cxrstats.foundation.device as dev
    fake_gpus(monkeypatch, [7])  # a V100: torch.cuda.is_bf16_supported() says True (emulation)
    v100 = torch.device("cuda")
    assert dev.resolve_precision("auto", v100) == "fp32"
    with pytest.raises(ValueError, match="does not run bfloat16 natively"):
        dev.resolve_precision("bf16", v100)
    fake_gpus(monkeypatch, [8])  # an A100
    assert dev.resolve_precision("auto", v100) == "bf16"


def test_precision_auto_asks_the_gpu_given_not_the_current_one(monkeypatch):
    import cxrstats.foundation.device as dev
    fake_gpus(monkeypatch, [9, 7])  # an H100 as cuda:0 (current), a V100 as cuda:1
    assert dev.resolve_precision("auto", torch.device("cuda:1")) == "fp32"
    assert dev.resolve_precision("auto", torch.device("cuda:0")) == "bf16"
    assert dev.resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_a_gpu_index_beyond_the_machine_or_an_unknown_device_is_a_clear_error(monkeypatch):
    fake_gpus(monkeypatch, [9, 9])
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(ValueError, match=r"--device cuda:3: GPU 3 does not exist; this process "
                                         r"sees 2 GPU\(s\) \(CUDA_VISIBLE_DEVICES=2,3\)"):
        resolve_device("cuda:3")
    for name in ("gpu", "cuda:x", "mps"):
        with pytest.raises(ValueError, match=f"--device {name}: not a device"):
            resolve_device(name)


def test_prepare_device_makes_a_numbered_gpu_the_current_one(monkeypatch):
    chosen = fake_gpus(monkeypatch, [9, 9])
    assert prepare_device("cuda:1") == torch.device("cuda:1")
    assert chosen == [torch.device("cuda:1")]
    assert prepare_device("cuda") == torch.device("cuda")  # the current one, whichever it is
    assert chosen == [torch.device("cuda:1")]


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
