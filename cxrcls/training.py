"""What classifier training computes, for cxrcls.train and the modules that do as it does
(cxrcls.attribution, benchmarks, tools/gpu_check): cached rows -> model input, one optimizer step,
logits over rows of a split.

Images are composed (original / overlay / m<r> cut-out, `cxrcls.inputs.compose`) and resized on the
device, on whole batches.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cxrcls.augment import augment
from cxrcls.bf16adam import BF16Adam
from cxrcls.loader import BatchLoader
from cxrcls.inputs import compose
from cxrstats.foundation.device import precision_autocast


def to_model_input(images: np.ndarray, masks: np.ndarray | None, kind: str, device: torch.device,
                   image_size: int | None, thickness: int, channels_last: bool) -> torch.Tensor:
    """uint8 (B, S, S) (+ masks) -> float (B, 1, s, s) in [0, 1] on `device`: variant, then
    resize."""
    pin = device.type == "cuda"
    def move(a):
        t = torch.from_numpy(a)
        return (t.pin_memory() if pin else t).to(device, non_blocking=pin).unsqueeze(1)
    x = move(images).float().div_(255)
    m = move(masks) if masks is not None else None
    x = compose(x, m, kind, thickness)
    if image_size and image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training_input(batch, kind: str, device: torch.device, image_size: int | None, thickness: int,
                   channels_last: bool, params=None) -> torch.Tensor:
    """A loader Batch -> augmented model input (b, 1, s, s) on `device` (this rank's share of the
    global batch's augmentation parameters)."""
    x = to_model_input(batch.images, batch.masks, kind, device, image_size, thickness,
                       channels_last)
    if params is not None:
        x = augment(x, params.slice(batch.offset, batch.offset + len(batch.positions)))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_optimizer(model: torch.nn.Module, lr: float, precision: str = "fp32",
                   distributed: bool = False, bf16_copies: bool = False) -> torch.optim.Adam:
    """The study's Adam over the trainable weights, fused: one pass over the weights per step
    instead of one per operation. Its state and the weights stay float32 in every precision.
    `bf16_copies` (bf16 on a CPU, one process only): train through bf16 weight copies
    (`cxrcls.bf16adam`), which saves autocast's two casts of every weight per step."""
    if bf16_copies and precision == "bf16" and not distributed and all(
            p.device.type == "cpu" for p in model.parameters()):
        return BF16Adam(model, lr)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, fused=True)



def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """What updated the weights, for run.json: 'adam', or 'adam, bf16 weight copies, update
    compiled' ('update eager' where torch.compile was not available)."""
    if isinstance(optimizer, BF16Adam):
        return f"adam, bf16 weight copies, update {optimizer.update_kind}"
    return "adam"


def train_step(net, optimizer, x: torch.Tensor, y: torch.Tensor,
               precision: str = "fp32") -> torch.Tensor:
    """One optimizer step of BCE-with-logits on (x, y); returns the (detached) mean loss. The
    forward pass runs under `precision` (resolved: fp32 or bf16 autocast); the logits are cast to
    float32 for the loss, and the weights and Adam's state stay float32."""
    with precision_autocast(x.device, precision):
        logits = optimizer.forward(x) if isinstance(optimizer, BF16Adam) else net(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: BatchLoader, kind: str, device: torch.device,
                   image_size: int | None, thickness: int, channels_last: bool,
                   precision: str = "fp32",
                   gather: Callable[[object], list] | None = None) -> np.ndarray:
    """(len(loader.rows), L) float32 logits of `model` (eval mode) in the loader's row order.

    Under DistributedDataParallel each rank predicts its share of every batch and `gather`
    (`cxrcls.distributed.Dist.gather`) gives every rank all shares. Pass the unwrapped model, not
    the DDP wrapper: its forward would sync buffers and could wait forever for a rank whose share
    of the last batch is empty."""
    model.eval()
    outputs = loader.labels.shape[1]
    positions, chunks = [], []
    for batch in loader:
        if len(batch.positions) == 0:
            continue
        x = to_model_input(batch.images, batch.masks, kind, device, image_size, thickness,
                           channels_last)
        with precision_autocast(device, precision):
            logits = model(x)
        chunks.append(logits.float().cpu().numpy())
        positions.append(batch.positions)
    mine = (np.concatenate(positions) if positions else np.zeros(0, np.int64),
            np.concatenate(chunks) if chunks else np.zeros((0, outputs), np.float32))
    logits = np.zeros((len(loader.rows), outputs), np.float32)
    for pos, values in (gather(mine) if gather else [mine]):
        logits[pos] = values
    return logits


def bce(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean BCE-with-logits of (n, L) logits against 0/1 targets."""
    return float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                    torch.from_numpy(y.astype(np.float32))))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities (float32) of logits."""
    return torch.sigmoid(torch.from_numpy(logits)).numpy().astype(np.float32)
