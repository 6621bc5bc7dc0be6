"""Augmented copies of training images for fine-tuning, made once and encoded once.

Decoder-only fine-tuning works on cached image embeddings, so an augmentation that changes pixels
cannot be drawn fresh at every step without re-running the encoder. Instead `augmented_copies`
makes a fixed number of seeded copies of each training image; they join the training part as extra
rows (their embeddings are cached like any image's). Kinds:

- `opacity`: a synthetic opacity inside the true lung (cxrseg.opacity; random kind, strength
  0.3..1); the mask is unchanged, so the model learns to keep lung that disease whitens.
- `whiteout`: both lower zones whitened up to 30-65% of the lungs' height (cxrseg.opacity
  `whiteout`, strength 0.5..1), hiding the bases and the diaphragm's edge; the mask unchanged.
- `photometric`: gamma 0.6..1.6, contrast 0.7..1.3 around the mean, Gaussian blur sigma 0..1.2
  pixels, Gaussian noise sd 0..6 grey levels (scanner and exposure differences).
- `letterbox`: the film squeezed to 75..100% of its width or height and padded back to the same
  size with black borders (films that are not square); the mask goes through the same geometry.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from .opacity import KINDS as OPACITY_KINDS
from .opacity import add_opacity

AUGMENTATIONS = ("opacity", "whiteout", "photometric", "letterbox")


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 with random gamma, contrast, blur and noise."""
    x = image.astype(np.float64) / 255.0
    x = x ** rng.uniform(0.6, 1.6)
    x = x.mean() + (x - x.mean()) * rng.uniform(0.7, 1.3)
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.1:
        x = ndimage.gaussian_filter(x, sigma)
    x = x * 255.0 + rng.normal(0.0, rng.uniform(0.0, 6.0), x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Squeeze the picture along one axis to 75..100% and pad it back to (H, W) with black."""
    h, w = image.shape
    factor = rng.uniform(0.75, 1.0)
    if rng.random() < 0.5:
        size = (max(1, int(round(w * factor))), h)
    else:
        size = (w, max(1, int(round(h * factor))))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    small_mask = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    small_mask = np.asarray(small_mask) > 127
    out, out_mask = np.zeros_like(image), np.zeros(mask.shape, np.uint8)
    y0, x0 = (h - size[1]) // 2, (w - size[0]) // 2
    out[y0:y0 + size[1], x0:x0 + size[0]] = small
    out_mask[y0:y0 + size[1], x0:x0 + size[0]] = small_mask
    return out, out_mask


def augment(image: np.ndarray, mask: np.ndarray, kinds: list[str], rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Apply each augmentation in `kinds` in order -> (image (H, W) uint8, mask (H, W) 0/1)."""
    image, mask = np.asarray(image), (np.asarray(mask) > 0).astype(np.uint8)
    for kind in kinds:
        if kind == "opacity":
            image = add_opacity(image, mask, OPACITY_KINDS[rng.integers(len(OPACITY_KINDS))],
                                float(rng.uniform(0.3, 1.0)), seed=int(rng.integers(2**31)))
        elif kind == "whiteout":
            image = add_opacity(image, mask, "whiteout", float(rng.uniform(0.5, 1.0)),
                                seed=int(rng.integers(2**31)))
        elif kind == "photometric":
            image = photometric(image, rng)
        elif kind == "letterbox":
            image, mask = letterbox(image, mask, rng)
        else:
            raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
    return image, mask


def augmented_copies(stems: list[str], images: list[np.ndarray], masks: list[np.ndarray],
                     kinds: list[str], copies: int, seed: int
                     ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """`copies` augmented copies of every pair, named `<stem>~aug<j>`; seeded per stem and copy,
    so the same copies (and cached embeddings) come back on every run."""
    out_stems, out_images, out_masks = [], [], []
    for stem, image, mask in zip(stems, images, masks):
        for j in range(copies):
            digest = np.frombuffer(stem.encode(), np.uint8).astype(np.int64)
            rng = np.random.default_rng([seed, j, *digest.tolist()])
            img, m = augment(image, mask, kinds, rng)
            out_stems.append(f"{stem}~aug{j}")
            out_images.append(img)
            out_masks.append(m)
    return out_stems, out_images, out_masks
