"""Data-parallel context for training under `torchrun`: rank, world size, device, collectives.

Launched without torchrun (no WORLD_SIZE in the environment) it is a single process and every
collective is the identity, so the training code has one path for both cases. Under torchrun the
process group uses nccl on CUDA (one GPU per local rank) and gloo on CPU.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from cxrstats.foundation.device import check_gpu_index, prepare_device


class Dist:
    """Rank, world size and collective helpers; a single process when not launched by torchrun."""

    def __init__(self, device_name: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = prepare_device(device_name)
        if self.world_size > 1 and device.type == "cuda":
            check_gpu_index(self.local_rank, f"torchrun process LOCAL_RANK={self.local_rank} "
                                             "(one GPU per process: --nproc_per_node at most the "
                                             "GPUs)")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.world_size > 1:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        """True on the one process (rank 0) that writes files and prints."""
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """Sum floats over ranks."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        """Every rank's `obj` (any picklable value), in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank
        after the last training forward), so all ranks predict with the model rank 0 saves."""
        if self.world_size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


def close_if_open() -> None:
    """Tear down a process group left open by an error (before exiting with its message)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
