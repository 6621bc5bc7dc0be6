"""A batch loader that only slices the memory-mapped cache: per batch, row indices -> uint8 arrays.

Everything else (masking, resizing, augmentation, normalization) happens on whole batches on the
device, so the loader stays far ahead of the model. Shuffling is a permutation seeded by
(seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would.

Under DistributedDataParallel every rank walks the same global batches of `batch_size` images and
takes its own contiguous share (batch_size / world_size); gradient averaging across ranks then gives
the same update as one process with the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cxrcls.inputs import InputSource


@dataclass
class Batch:
    """One rank's share of a global batch. `offset` is where that share starts in the global
    batch."""
    positions: np.ndarray      # (b,) positions in the loader's `rows` (to reassemble predictions)
    images: np.ndarray         # (b, S, S) uint8
    masks: np.ndarray | None   # (b, S, S) uint8 0/1, or None
    labels: np.ndarray         # (b, L) float32
    global_size: int
    offset: int


class BatchLoader:
    """Iterate over `rows` of an InputSource in batches, with labels (N_all, L) indexed by row."""

    def __init__(self, source: InputSource, rows, labels: np.ndarray, batch_size: int,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.source, self.rows, self.labels = source, np.asarray(rows, dtype=np.int64), labels
        self.batch_size, self.shuffle = batch_size, shuffle
        self.drop_last, self.seed = drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        """Positions into `rows` for this epoch (a seeded permutation when shuffling)."""
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))

    def __iter__(self) -> Iterator[Batch]:
        order = self.order()
        for k in range(len(self)):
            positions = order[k * self.batch_size:(k + 1) * self.batch_size]
            share = -(-len(positions) // self.world_size)
            offset = min(self.rank * share, len(positions))
            mine = positions[offset:offset + share]
            images, masks = self.source.read(self.rows[mine])
            yield Batch(mine, images, masks, self.labels[self.rows[mine]].astype(np.float32),
                        len(positions), offset)
