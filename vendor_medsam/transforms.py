"""Pre- and post-processing: map between an image's pixel frame (H, W) and the model-input frame
(S, S).

Two families, as in the official inference scripts:
  medsam (ViT-B, micro, tiny): resize the image to S x S (bicubic, antialiased: skimage's order-3
      resize with anti_aliasing in MedSAM), min-max to [0, 1]; x scales by S/W and y by S/H; output
      sigmoid(low-res logits) resized bilinearly to (H, W).
  lite (LiteMedSAM): resize the longest side to S keeping the aspect ratio (antialiased bilinear,
      in place of cv2 INTER_AREA), min-max to [0, 1], zero-pad bottom/right to S x S; coordinates
      scale by S / max(H, W) (kept as floats; the official script truncates boxes to integers);
      output logits cropped to the unpadded area, resized bilinearly to (H, W), then sigmoid.
The mask decoder's low-resolution frame (L x L, L = 4 x embedding grid) covers the whole model
input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _to_tensor(array) -> torch.Tensor:
    """numpy-like -> tensor sharing memory when possible (read-only arrays, e.g. from PIL, are
    copied).
    """
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def _as_float_hwc(img) -> torch.Tensor:
    """(H, W) or (H, W, C) array/tensor of any dtype -> (H, W, C) float32 tensor with C in
    {1, 3}.
    """
    t = img if isinstance(img, torch.Tensor) else _to_tensor(img)
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] < 1:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {tuple(t.shape)}")
    if t.shape[-1] >= 3:
        t = t[..., :3]
    elif t.shape[-1] == 2:
        t = t[..., :1]
    return t.to(torch.float32)


def _min_max(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / torch.clamp(hi - lo, min=1e-8)


def _scale_like(values, factors: tuple[float, float]):
    """Multiply (..., 2k) x/y-interleaved coordinates by (fx, fy); numpy in -> numpy out,
    tensor -> tensor.
    """
    if isinstance(values, torch.Tensor):
        n = values.shape[-1]
        scale = torch.tensor(factors * (n // 2), dtype=torch.float32, device=values.device)
        return values.to(torch.float32) * scale
    values = np.asarray(values, dtype=np.float32)
    return values * np.asarray(factors * (values.shape[-1] // 2), dtype=np.float32)


@dataclass(frozen=True)
class InputFrame:
    """The geometry linking one image of size (height, width) to a model's input and low-res
    frames.
    """

    family: str  # "medsam" | "lite"
    size: int  # model input side S
    low_res: int  # low-res logits side L
    height: int
    width: int

    @classmethod
    def for_model(cls, model, height: int, width: int) -> "InputFrame":
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        if model.family not in ("medsam", "lite"):
            raise ValueError(f"unknown model family {model.family!r}")
        return cls(model.family, int(model.img_size), int(model.low_res_size), int(height),
                   int(width))

    # ------------------------------------------------------------------ geometry
    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from image pixels to model-input pixels."""
        if self.family == "lite":
            s = self.size / max(self.height, self.width)
            return (s, s)
        return (self.size / self.width, self.size / self.height)

    @property
    def content_size(self) -> tuple[int, int]:
        """(h, w) of the image inside the model input (the rest is zero padding for lite)."""
        if self.family == "lite":
            s = self.size / max(self.height, self.width)
            return (max(1, int(self.height * s + 0.5)), max(1, int(self.width * s + 0.5)))
        return (self.size, self.size)

    def _low_res_content(self) -> tuple[int, int]:
        ch, cw = self.content_size
        r = self.low_res / self.size
        return (max(1, int(ch * r + 0.5)), max(1, int(cw * r + 0.5)))

    # ------------------------------------------------------------------ image side -> model side
    def image_to_input(self, img) -> torch.Tensor:
        """(H, W) or (H, W, C) image, any dtype -> (3, S, S) float32 in [0, 1]."""
        x = _as_float_hwc(img)
        if tuple(x.shape[:2]) != (self.height, self.width):
            raise ValueError(f"image is {tuple(x.shape[:2])}, "
                             f"this frame was made for {(self.height, self.width)}")
        # constant image: all zeros (resampling noise must not be min-max stretched)
        if x.min() == x.max():
            return torch.zeros(3, self.size, self.size)
        # (1, C, H, W); grayscale stays 1 channel until the end (a third of the work)
        x = x.permute(2, 0, 1)[None]
        ch, cw = self.content_size
        if (ch, cw) != (self.height, self.width):
            mode = "bilinear" if self.family == "lite" else "bicubic"
            x = F.interpolate(x, size=(ch, cw), mode=mode, align_corners=False, antialias=True)
        x = _min_max(x)
        if (ch, cw) != (self.size, self.size):
            x = F.pad(x, (0, self.size - cw, 0, self.size - ch))
        return x[0].expand(3, -1, -1).contiguous() if x.shape[1] == 1 else x[0].contiguous()

    def boxes_to_input(self, boxes):
        """(..., 4) boxes x0, y0, x1, y1 in image pixels -> model-input pixels (float32)."""
        return _scale_like(boxes, self.scale)

    def points_to_input(self, points):
        """(..., 2) points x, y in image pixels -> model-input pixels (float32)."""
        return _scale_like(points, self.scale)

    def mask_to_input(self, mask) -> torch.Tensor:
        """(H, W) binary mask -> (L, L) float32 0/1 target in the low-res logits frame (zero in
        the padding).
        """
        m = mask if isinstance(mask, torch.Tensor) else _to_tensor(mask)
        if tuple(m.shape) != (self.height, self.width):
            raise ValueError(f"mask is {tuple(m.shape)}, "
                             f"this frame was made for {(self.height, self.width)}")
        m = (m > 0).to(torch.float32)[None, None]
        lh, lw = self._low_res_content()
        m = F.interpolate(m, size=(lh, lw), mode="bilinear", align_corners=False, antialias=True)
        m = (m >= 0.5).to(torch.float32)
        m = F.pad(m, (0, self.low_res - lw, 0, self.low_res - lh))
        return m[0, 0]

    # ------------------------------------------------------------------ model side -> image side
    def logits_to_image(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., L, L) low-res logits -> (..., H, W): crop the unpadded area, bilinear resize."""
        lead = logits.shape[:-2]
        lh, lw = self._low_res_content()
        x = logits[..., :lh, :lw].reshape(-1, 1, lh, lw)
        x = F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return x.reshape(*lead, self.height, self.width)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., L, L) logits -> (..., H, W) probabilities, in each family's official order of
        operations.
        """
        if self.family == "lite":
            return torch.sigmoid(self.logits_to_image(logits))
        return self.logits_to_image(torch.sigmoid(logits))  # MedSAM: sigmoid, then resize
