"""What fine-tuning, evaluation and prediction share: load a model, encode images (with an on-disk
embedding cache), build prompts in the model-input frame, decode masks, second-pass refinement.

The image encoder dominates the cost on CPU (LiteMedSAM about 1 image/s), so everything that does
not train the encoder works on embeddings computed once: `embeddings_for` keys them by image
content and encoder weights and keeps them in `embeddings_<config>_<encoder hash>_<precision>.pt`.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxrstats.foundation.fileio import file_sha256
from cxrstats.foundation.progress import Progress
from vendor_medsam import build_sam, load_medsam
from vendor_medsam.checkpoint import sam_from_checkpoint
from cxrstats.foundation.device import precision_autocast
from vendor_medsam.transforms import InputFrame
from vendor_medsam.weights import LITE_SHA256

from cxrstats.foundation.checkpoints import load_checkpoint, save_checkpoint
from cxrstats.foundation.extent import NOT_FINE_TUNED, UNRECORDED
from .prompts import PROMPT_MODES, Prior, mask_box, prediction_box
from .records import FINETUNE, FINETUNE_STAGE, is_finetune_checkpoint, require_finished

RANDOM_CONFIGS = ("micro", "tiny")   # names that build a seeded random model (tests, smoke runs)


def checkpoint_kind(checkpoint: str) -> str:
    """How `--checkpoint` is read: "random" (micro/tiny), "lite" (the LiteMedSAM weights) or
    "file"; a file of that name in the working folder wins over the built-in."""
    if Path(checkpoint).exists():
        return "file"
    if checkpoint in RANDOM_CONFIGS:
        return "random"
    return "lite" if checkpoint == "lite" else "file"


def load_model(checkpoint: str, config: str | None = None, seed: int = 0):
    """`lite` -> the LiteMedSAM weights; `micro`/`tiny` -> a random model seeded with `seed`;
    anything else -> a checkpoint file (raw state dict or our best.pt/last.pt). Eval mode, CPU.

    A checkpoint that cxrseg.finetune wrote is read only when that run finished:
    `done_finetune.json` beside it must list it (a killed run's best.pt raises
    IncompleteRunError)."""
    kind = checkpoint_kind(checkpoint)
    if kind == "random":
        if config not in (None, checkpoint):
            raise ValueError(f"--checkpoint {checkpoint} builds the {checkpoint} model; "
                             f"--config {config} disagrees")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_sam(checkpoint).eval()
    if kind == "lite":
        return load_medsam("lite", config or "lite")
    obj = load_checkpoint(checkpoint)
    if is_finetune_checkpoint(obj):
        require_finished(checkpoint, FINETUNE, FINETUNE_STAGE)
    return sam_from_checkpoint(obj, config, str(checkpoint))


def checkpoint_id(checkpoint: str, seed: int = 0) -> str:
    """The identity of the weights `load_model(checkpoint, ..., seed)` reads, by content: a file's
    "sha256:<hex>" (`lite` gives its verified weight file's, so naming the file gives the same),
    or "<name> seed <seed>" for a random model. Two spellings of one file path are one checkpoint;
    a file trained again is another. FileNotFoundError for a missing file."""
    kind = checkpoint_kind(checkpoint)
    if kind == "random":
        return f"{checkpoint} seed {seed}"
    if kind == "lite":
        return f"sha256:{LITE_SHA256}"
    return f"sha256:{file_sha256(checkpoint)}"


def checkpoint_extent(checkpoint: str) -> str:
    """The lung extent of the weights `--checkpoint` names (cxrstats.foundation.extent), the one
    place it is read: a checkpoint cxrseg.finetune wrote gives the `--extent` stored in its
    settings (`unrecorded` when it stores none); `lite`, `micro`, `tiny` and other weight files
    (official weights, raw state dicts) give `none`: not fine-tuned for lungs."""
    settings = finetune_settings(checkpoint)
    if settings is None:
        return NOT_FINE_TUNED
    extent = settings.get("extent")
    return extent if isinstance(extent, str) else UNRECORDED


def finetune_settings(checkpoint: str) -> dict | None:
    """The `settings` a checkpoint cxrseg.finetune wrote stores (cxrseg.finetune.resume_settings;
    {} when it stores none), or None for `lite`, `micro`, `tiny` and other weight files."""
    if checkpoint_kind(checkpoint) != "file":
        return None
    obj = load_checkpoint(checkpoint)
    if not is_finetune_checkpoint(obj):
        return None
    settings = obj.get("settings")
    return settings if isinstance(settings, dict) else {}


def encoder_hash(model) -> str:
    """sha256 (16 hex digits) of the image encoder's weights: embeddings are valid while it
    holds."""
    digest = hashlib.sha256(model.config_name.encode())
    for name, tensor in model.image_encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def image_key(stem: str, image: np.ndarray) -> str:
    """Cache key of one image: its name and a hash of its pixels."""
    return f"{stem}:{hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]}"


def model_inputs(model, images: list[np.ndarray]) -> tuple[list[InputFrame], torch.Tensor]:
    """Images (H, W) -> their frames and a (B, 3, S, S) float32 model-input batch."""
    frames = [InputFrame.for_model(model, *np.shape(img)[:2]) for img in images]
    return frames, torch.stack([f.image_to_input(img) for f, img in zip(frames, images)])


def encode(model, images: list[np.ndarray], device: torch.device, batch_size: int = 8,
           label: str = "encode", progress_every: float = 10.0,
           precision: str = "fp32") -> torch.Tensor:
    """(N, C, h, w) float16 CPU image embeddings (float16 halves the memory; the decoder runs in
    float32). `precision` is a resolved one (`cxrstats.foundation.device.resolve_precision`): 'bf16'
    runs the encoder under bfloat16 autocast.

    On CPU the encoder takes one image at a time whatever `batch_size` says: LiteMedSAM encoded
    batches of 8 about a quarter slower per image than single images there (more memory traffic;
    `make bench` shows both), and each image's embedding does not depend on its batch.
    """
    model.to(device).eval()
    if device.type == "cpu":
        batch_size = 1
    out = []
    progress = Progress(len(images), label, "images", progress_every)
    with torch.inference_mode(), precision_autocast(device, precision):
        for i in range(0, len(images), batch_size):
            _, x = model_inputs(model, images[i:i + batch_size])
            out.append(model.image_encoder(x.to(device)).to("cpu", torch.float16))
            progress.update(min(i + batch_size, len(images)))
    if not out:
        raise ValueError("no images to encode")
    return torch.cat(out)


def embeddings_for(model, images: list[np.ndarray], stems: list[str], device: torch.device,
                   batch_size: int = 8, cache_dir: str | os.PathLike | None = None,
                   precision: str = "fp32") -> torch.Tensor:
    """Embeddings of `images` (N, C, h, w) float16, reusing and extending the cache in
    `cache_dir` (one file per encoder and precision: bf16 embeddings never stand in for fp32
    ones)."""
    keys = [image_key(s, img) for s, img in zip(stems, images)]
    if cache_dir is None:
        return encode(model, images, device, batch_size, precision=precision)
    path = (Path(cache_dir)
            / f"embeddings_{model.config_name}_{encoder_hash(model)}_{precision}.pt")
    cached: dict[str, torch.Tensor] = {}
    if path.is_file():
        try:
            data = load_checkpoint(path)
            cached = dict(zip(data["keys"], data["embeddings"]))
        except (ValueError, KeyError, TypeError) as error:  # rebuilt, never trusted
            print(f"embedding cache {path} unreadable ({error}); recomputing")
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing:
        start = time.time()
        fresh = encode(model, [images[i] for i in missing], device, batch_size,
                       precision=precision)
        print(f"encoded {len(missing)} image(s) in {time.time() - start:.1f} s "
              f"({len(keys) - len(missing)} from cache {path.name})", flush=True)
        cached.update({keys[i]: e for i, e in zip(missing, fresh)})
        save_checkpoint(path, {"keys": list(cached),
                               "embeddings": torch.stack(list(cached.values())),
                               "config": model.config_name})
    else:
        print(f"embeddings: all {len(keys)} from cache {path.name}", flush=True)
    return torch.stack([cached[k] for k in keys])


@dataclass
class Prompts:
    """Prompts for N images in model-input pixels: boxes (N, 4) or None; points (N, P, 2),
    labels (N, P) or None."""
    boxes: torch.Tensor | None
    points: torch.Tensor | None
    labels: torch.Tensor | None

    def rows(self, index) -> "Prompts":
        def pick(t):
            return None if t is None else t[index]
        return Prompts(pick(self.boxes), pick(self.points), pick(self.labels))


def image_prompts(frames: list[InputFrame], images: list[np.ndarray], mode: str,
                  prior: Prior | None, boxes_px: np.ndarray | None = None) -> Prompts:
    """Prompts in model-input pixels for images. Boxes come from `boxes_px` (N, 4) image pixels when
    given (GT or refined boxes), else from the prior; points always from the prior."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; expected one of {PROMPT_MODES}")
    boxes = points = labels = None
    if "box" in mode:
        if boxes_px is None:
            if prior is None:
                raise ValueError("a box prompt needs ground-truth masks or a prior (prior.json)")
            boxes_px = np.stack([prior.box_for(img) for img in images])
        boxes = torch.stack([torch.as_tensor(f.boxes_to_input(b), dtype=torch.float32)
                             for f, b in zip(frames, np.asarray(boxes_px, np.float32))])
    if "points" in mode:
        if prior is None:
            raise ValueError("point prompts need a prior (prior.json)")
        pts = [prior.points_for(img) for img in images]
        points = torch.stack([torch.as_tensor(f.points_to_input(p.astype(np.float32)))
                              for f, (p, _) in zip(frames, pts)])
        labels = torch.stack([torch.as_tensor(lab) for _, lab in pts])
    return Prompts(boxes, points, labels)


def decode(model, embeddings: torch.Tensor, prompts: Prompts, device: torch.device) -> torch.Tensor:
    """Low-res logits (B, 1, L, L) for embeddings (B, C, h, w) and one prompt row per image."""
    points = None
    if prompts.points is not None:
        points = (prompts.points.to(device), prompts.labels.to(device))
    boxes = None if prompts.boxes is None else prompts.boxes.to(device)
    logits, _ = model.decode(embeddings.to(device, torch.float32), boxes=boxes, points=points,
                             multimask_output=False)
    return logits


def gt_boxes(masks: list[np.ndarray]) -> np.ndarray:
    """(N, 4) boxes around each ground-truth mask (image pixels); an empty mask gets the whole
    image."""
    out = []
    for m in masks:
        h, w = m.shape
        out.append(mask_box(m) if m.any() else np.array([0, 0, w - 1, h - 1], np.float64))
    return np.stack(out)


def segment(model, embeddings: torch.Tensor, images: list[np.ndarray], device: torch.device,
            mode: str, prior: Prior | None, boxes_px: np.ndarray | None = None, refine: int = 0,
            threshold: float = 0.5, batch_size: int = 16, precision: str = "fp32"
            ) -> tuple[list[torch.Tensor], list[torch.Tensor], np.ndarray]:
    """Decode every image: returns (low-res logits (1, L, L) per image, probabilities (H, W) per
    image, final boxes (N, 4) in image pixels or NaN without a box). The decoder runs under
    `precision` (resolved); its logits are cast to float32 before sigmoid, resizing and threshold.

    `refine` extra passes re-prompt with the box around the previous pass's prediction (thresholded
    at `threshold`); an image whose prediction is empty keeps its previous box.
    """
    frames = [InputFrame.for_model(model, *img.shape[:2]) for img in images]
    model.to(device).eval()
    low_res, probs = [], []
    final_boxes = np.full((len(images), 4), np.nan)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            rows = range(start, min(start + batch_size, len(images)))
            imgs = [images[i] for i in rows]
            fr = [frames[i] for i in rows]
            boxes = None if boxes_px is None else np.asarray(boxes_px)[list(rows)]
            if boxes is None and "box" in mode and prior is not None:
                # without a prior, image_prompts refuses the box prompt by name
                boxes = np.stack([prior.box_for(img) for img in imgs])
            pass_mode = mode
            for step in range(refine + 1):
                prompts = image_prompts(fr, imgs, pass_mode, prior, boxes)
                with precision_autocast(device, precision):   # the decoder only
                    logits = decode(model, embeddings[list(rows)], prompts, device)
                logits = logits.float().cpu()
                p = [f.probabilities(logits[j, 0]) for j, f in enumerate(fr)]
                if step < refine:
                    # the next pass is prompted with the box around this pass's prediction
                    # (points-only prompting gains a box); an empty prediction keeps the previous
                    # box (or the prior's)
                    new = [prediction_box(q.numpy() >= threshold) for q in p]
                    old = (boxes if boxes is not None
                           else np.stack([prior.box_for(img) for img in imgs]))
                    boxes = np.stack([b if n is None else n for b, n in zip(old, new)])
                    pass_mode = "box+points" if "points" in mode else "box"
            low_res += [logits[j] for j in range(len(fr))]
            probs += p
            if boxes is not None:
                final_boxes[list(rows)] = boxes
    return low_res, probs, final_boxes
