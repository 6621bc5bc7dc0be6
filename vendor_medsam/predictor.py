"""Batched inference: images + per-image prompts (in image pixels) -> probability masks in image
pixels.

Image i goes with prompt row i. Runs under torch.inference_mode(), with bf16 autocast on CUDA only.
"""
from __future__ import annotations

import numpy as np
import torch

from .device import autocast, resolve_device
from .sam import Sam
from .transforms import InputFrame


def _image_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    arr = images
    if arr.ndim == 2:
        raise ValueError(f"expected a batch of images (N, H, W) or a list of (H, W) arrays, "
                         f"got shape {arr.shape}")
    return [arr[i] for i in range(arr.shape[0])]


def _rows(values, n: int, width: tuple[int, ...], name: str) -> np.ndarray | None:
    """Prompts as a float32 array with one row per image, or None."""
    if values is None:
        return None
    arr = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float32)
    if arr.ndim < 2 or arr.shape[0] != n or tuple(arr.shape[-len(width):]) != width:
        raise ValueError(f"{name}: expected one row per image, "
                         f"shape ({n}, ..., {', '.join(map(str, width))}), got {arr.shape}")
    return arr


class Predictor:
    """Predictor(model, device="auto", batch_size=None): predict(images, boxes, points,
    point_labels), embed(images).

    Moves `model` to `device` and puts it in eval mode (the model itself, not a copy). `batch_size`
    is the number of images per forward; None means 1 on CPU (faster per image there than batch 8
    for LiteMedSAM; `make bench` compares both) and 8 on CUDA.
    """

    def __init__(self, model: Sam, device: str | torch.device = "auto",
                 batch_size: int | None = None) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if batch_size is None:
            batch_size = 1 if self.device.type == "cpu" else 8
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    def _inputs(self, images: list) -> tuple[list[InputFrame], torch.Tensor]:
        frames = [InputFrame.for_model(self.model, *np.shape(img)[:2]) for img in images]
        x = torch.stack([f.image_to_input(img) for f, img in zip(frames, images)])
        return frames, x.to(self.device)

    def embed(self, images) -> torch.Tensor:
        """(N, H, W) images or a list of them -> (N, C, h, w) float32 CPU image embeddings."""
        images = _image_list(images)
        out = []
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, len(images), self.batch_size):
                _, x = self._inputs(images[start:start + self.batch_size])
                out.append(self.model.image_encoder(x).float().cpu())
        return torch.cat(out)

    def predict(self, images, boxes=None, points=None, point_labels=None):
        """Probability masks (N, H, W) float32 (a list of (H, W) arrays when image sizes differ).

        images: (N, H, W) array or list of (H, W) / (H, W, 3) arrays. boxes: (N, 4) x0, y0, x1, y1;
        points: (N, P, 2) x, y; point_labels: (N, P), 1 foreground / 0 background (default all 1).
        All prompts in image pixel coordinates, row i for image i.
        """
        images = _image_list(images)
        n = len(images)
        if boxes is None and points is None:
            raise ValueError("give boxes and/or points, one row per image")
        boxes = _rows(boxes, n, (4,), "boxes")
        points = _rows(points, n, (2,), "points")
        if points is not None and points.ndim != 3:
            raise ValueError(f"points: expected (N, P, 2), got {points.shape}")
        if points is not None:
            labels = (np.ones(points.shape[:2], np.int64) if point_labels is None
                      else np.asarray(point_labels, np.int64))
            if labels.shape != points.shape[:2]:
                raise ValueError(f"point_labels: expected {points.shape[:2]}, got {labels.shape}")

        results: list[np.ndarray] = []
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, n, self.batch_size):
                rows = slice(start, min(start + self.batch_size, n))
                frames, x = self._inputs(images[rows])
                box_t = pts = None
                if boxes is not None:
                    box_t = torch.stack([torch.as_tensor(f.boxes_to_input(b))
                                         for f, b in zip(frames, boxes[rows])])
                    box_t = box_t.to(self.device)
                if points is not None:
                    coords = torch.stack([torch.as_tensor(f.points_to_input(p))
                                          for f, p in zip(frames, points[rows])])
                    pts = (coords.to(self.device),
                           torch.as_tensor(labels[rows], device=self.device))
                logits, _ = self.model(x, boxes=box_t, points=pts, multimask_output=False)
                logits = logits.float().cpu()
                results += [f.probabilities(logits[i, 0]).numpy() for i, f in enumerate(frames)]
        if len({r.shape for r in results}) == 1:
            return np.stack(results).astype(np.float32, copy=False)
        return results
