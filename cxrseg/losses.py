"""Segmentation losses on logits, per image, and overlap metrics on binary masks.

The study trains on the mean of the soft Dice loss and binary cross-entropy; `dicefocal` swaps BCE
for the focal loss (gamma 2). Shapes: logits and targets (B, 1, H, W) or (B, H, W); targets 0/1.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("dicebce", "dicefocal")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B,) soft Dice loss 1 - 2|p·t| / (|p| + |t|) with p = sigmoid(logits)."""
    p, t = _flat(torch.sigmoid(logits)), _flat(target.float())
    return 1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean binary cross-entropy per image."""
    per_pixel = F.binary_cross_entropy_with_logits(_flat(logits), _flat(target.float()),
                                                   reduction="none")
    return per_pixel.mean(1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """(B,) mean focal loss per image: BCE weighted by (1 - p_true)^gamma."""
    x, t = _flat(logits), _flat(target.float())
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_true = torch.exp(-bce)
    return ((1 - p_true) ** gamma * bce).mean(1)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "dicebce"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dice_loss, second_loss), each (B,): loss = mean of Dice loss and BCE (or focal)."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
    dice = dice_loss(logits, target)
    second = bce_loss(logits, target) if kind == "dicebce" else focal_loss(logits, target)
    return (dice + second) / 2, dice, second


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks; both 1.0 when both masks are empty."""
    p, t = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    inter = np.logical_and(p, t).sum()
    total = p.sum() + t.sum()
    union = total - inter
    if total == 0:
        return 1.0, 1.0
    return float(2 * inter / total), float(inter / union)
