"""Segment the lungs of images that have no mask -> masks/raw.npy (N, H, W) uint8 0/1 + index.csv.

Images come from an (N, H, W) uint8 `.npy` stack with its `index.csv` (`row, image`, the
classifier's image cache) or from a folder. Each image is prompted with the prior box (the average
training mask's box, placed in the image's content frame), optionally with the prior's points;
`--refine N` re-prompts N more times with the box around the previous prediction (the image is
encoded once). Batched; CUDA when present. Also writes `prompts.csv` (first and final box per
image). With `--out` a folder instead of a `.npy` file, masks are written as PNG files (0/255),
which allows images of different sizes. `--threshold-from eval.csv` needs its done_evaluate.json, a
fine-tuned checkpoint its done_finetune.json; done_predict.json is written last. If every mask comes
out empty the run fails (a wrong segmenter or threshold) instead of writing them.

`--shard K/N` segments only the K-th of N contiguous row ranges of a `.npy` stack, so that N
processes (cores, GPUs or Slurm steps) share the work; `cxrseg.gather` then joins the N shard
folders into the one `raw.npy` + `index.csv` that the next stages read.

done_predict.json records what the masks depend on by content (cxrseg.records.MASK_FACTS): the
checkpoint's identity (sha256 of the file; a random model by name and seed), the threshold used,
the sha256 of prior.json, of the image stack and of its index rows, and the rows covered; gather
joins only shards that agree on all of them. `--threshold-from` takes the threshold evaluated for
the checkpoint with the same content, however its path is spelled.

The outputs never share a folder with the inputs: --out may not be the images folder, lie inside
it, or contain --images / --index (a folder of the user's images is never written over), and a
folder holding files the toolkit did not write is refused. An image too small or featureless to
hold a radiograph (cxrseg.degenerate; the rule is below) is still segmented, so that the mask rows
stay aligned with the image rows, named in a warning, and listed in done_predict.json
(`degenerate`), which cxrseg.postprocess turns into a qc.csv flag.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxrstats.argtypes import Parser, float_range, int_range
from cxrstats.fileio import (IncompleteRunError, atomic_path, begin_run, file_sha256, read_csv,
                             save_npy, write_csv, write_done, write_run_json)
from cxrstats.progress import Progress
from vendor_medsam.configs import CONFIGS
from vendor_medsam.device import add_precision_argument, prepare_device, resolve_precision

from .anatomy import add_anatomy_arguments, clean_mask
from .datasets import POOLED
from .degenerate import RULE, degenerate_reason
from .engine import checkpoint_id, encode, load_model, segment
from .imageio import image_stem
from .pairs import load_stack
from .prompts import PROMPT_MODES, Prior
from .records import EVALUATE, PREDICT, index_rows_sha256, require_finished


def threshold_from_eval(path: str | Path, identity: str, checkpoint: str) -> float:
    """The threshold that cxrseg.evaluate chose on validation for the checkpoint whose content is
    `identity` (cxrseg.engine.checkpoint_id; `checkpoint` is its spelling, for messages): max mean
    val Dice, over all datasets pooled when eval.csv has several. ValueError naming the file when
    eval.csv evaluated other weights."""
    rows = read_csv(path, required=["checkpoint", "part", "threshold", "dice"])
    if rows and "checkpoint_id" not in rows[0]:
        raise ValueError(f"{path}: has no checkpoint_id column, so the checkpoint it evaluated "
                         "cannot be matched by content; re-run cxrseg.evaluate")
    val = [r for r in rows if r["part"] == "val"]
    rows = [r for r in val if r["checkpoint_id"] == identity]
    if not rows:
        evaluated = sorted({f"{r['checkpoint']} ({r['checkpoint_id']})" for r in val})
        raise ValueError(f"{path}: no validation rows for checkpoint {checkpoint} "
                         f"({identity}); it evaluated {', '.join(evaluated) or 'nothing'}. The "
                         "weights differ (e.g. fine-tuned again since): re-run cxrseg.evaluate, "
                         "or give the checkpoint it evaluated")
    pooled = [r for r in rows if r.get("dataset") == POOLED]   # several datasets: pooled rows
    rows = pooled or rows
    best = max(rows, key=lambda r: (float(r["dice"]), -float(r["threshold"])))
    return float(best["threshold"])


def refuse_overlap(folder: Path, images: str, index: str | None) -> None:
    """ValueError unless the output `folder` is apart from the inputs: not the images folder nor
    inside it, and holding neither the images (file or folder) nor the index."""
    out = folder.resolve()
    inputs = [Path(p).resolve() for p in (images, index) if p]
    image_folder = inputs[0] if inputs[0].is_dir() else None
    for path in inputs:
        if path == out or out in path.parents:
            raise ValueError(f"--out {folder}: holds the input {path}; predict would write over "
                             "or beside the inputs. Give a separate folder for the masks")
    if image_folder is not None and image_folder in out.parents:
        raise ValueError(f"--out {folder}: lies inside the images folder {image_folder}; give a "
                         "folder outside it for the masks")


def images_sha256(images: str, stack, names: list[str]) -> str:
    """sha256 of the images segmented: the `.npy` file's bytes, or for a folder its file names
    and decoded pixels in order."""
    if not Path(images).is_dir():
        return file_sha256(images)
    digest = hashlib.sha256()
    for name, image in zip(names, stack):
        digest.update(f"{name}:{image.shape}:{image.dtype}\n".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def mask_facts(args, stack, names: list[str], rows: range, threshold: float,
               precision: str = "fp32") -> dict:
    """What the masks of `rows` depend on by content (cxrseg.records.MASK_FACTS), plus the hash of
    the rows covered."""
    return {"checkpoint_id": checkpoint_id(args.checkpoint, args.seed),
            "threshold": threshold,
            "precision": precision,
            "prior_sha256": file_sha256(args.prior),
            "images_sha256": images_sha256(args.images, stack, names),
            "index_sha256": index_rows_sha256(enumerate(names)),
            "total_images": len(names),
            "rows_sha256": index_rows_sha256((i, names[i]) for i in rows)}


def warn_degenerate(degenerate: list[dict], n: int, shown: int = 20) -> None:
    """Name each degenerate image and its reason on stderr (the first `shown`; all are in
    done_predict.json)."""
    if not degenerate:
        return
    print(f"predict: warning: {len(degenerate)} of {n} images are too small or featureless to hold "
          "a chest radiograph; their masks are written and flagged (done_predict.json "
          "`degenerate`, postprocess qc.csv):", file=sys.stderr)
    for item in degenerate[:shown]:
        print(f"  row {item['row']} {item['image']}: {item['reason']}", file=sys.stderr)
    if len(degenerate) > shown:
        print(f"  ... and {len(degenerate) - shown} more", file=sys.stderr, flush=True)


def shard_arg(text: str) -> tuple[int, int]:
    """argparse type for `--shard K/N`: shard K (0-based) of N."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (e.g. 0/4)") from None
    if not sep or n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= K < N, e.g. 0/4")
    return k, n


def shard_rows(n: int, shard: tuple[int, int]) -> range:
    """Rows of shard (K, N) among n images: [K*n//N, (K+1)*n//N); the N shards cover 0..n-1 once,
    in order, and differ in size by at most one."""
    k, parts = shard
    return range(k * n // parts, (k + 1) * n // parts)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.predict", description=f"{__doc__}\nDegenerate image: {RULE}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.predict --images work/cache/images.npy "
               "--index work/cache/index.csv --checkpoint work/seg/best.pt "
               "--prior work/seg/prior.json --refine 1 --out work/masks/raw.npy")
    parser.add_argument("--images", required=True,
                        help="(N, H, W) uint8 .npy stack, or a folder of images")
    parser.add_argument("--index", default=None,
                        help="CSV `row, image` naming the stack rows (with a .npy stack)")
    parser.add_argument("--checkpoint", required=True,
                        help="seg/best.pt, lite, or micro (random, tests)")
    parser.add_argument("--config", default=None, choices=list(CONFIGS),
                        help="model config when the checkpoint file does not name it")
    parser.add_argument("--prior", required=True, help="seg/prior.json from cxrseg.finetune")
    parser.add_argument("--prompt", default="box", choices=PROMPT_MODES,
                        help="prompt mode (default box)")
    parser.add_argument("--refine", type=int_range(0), default=0,
                        help="extra passes prompted with the box of the previous prediction "
                             "(e.g. 1)")
    parser.add_argument("--threshold", default=0.5,
                        type=float_range(0, 1, lo_open=True, hi_open=True),
                        help="binarization threshold")
    parser.add_argument("--threshold-from", default=None,
                        help="take the threshold chosen on validation from this eval.csv instead")
    add_anatomy_arguments(parser)
    parser.add_argument("--batch-size", type=int_range(1), default=8, help="images per batch")
    parser.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                        help="segment only shard K of N (contiguous rows of a .npy stack; join "
                             "the shards with cxrseg.gather)")
    parser.add_argument("--out", required=True, help="masks/raw.npy, or a folder for PNG masks")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed of a random (micro) model")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_precision_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.time()
    out = Path(args.out)
    to_stack = out.suffix == ".npy"
    folder = out.parent if to_stack else out
    try:
        device = prepare_device(args.device)
        precision = resolve_precision(args.precision, device)
        if Path(args.images).suffix == ".npy" and args.index is None:
            raise ValueError(f"{args.images}: a .npy stack needs --index (CSV `row, image`)")
        stack, names = load_stack(args.images, args.index)
        if len(names) == 0:
            raise ValueError(f"{args.images}: no images")
        if isinstance(stack, list):
            shapes = {tuple(np.shape(img)) for img in stack}
        else:
            shapes = {stack.shape[1:]}
        if to_stack and len(shapes) > 1:
            raise ValueError(f"{args.images}: images differ in size {sorted(shapes)[:3]}; "
                             "give a folder as --out to write one PNG mask per image")
        rows_to_do = range(len(names))
        if args.shard is not None:
            if not to_stack or isinstance(stack, list):
                raise ValueError("--shard needs a .npy image stack and a .npy --out")
            rows_to_do = shard_rows(len(names), args.shard)
            if not rows_to_do:
                raise ValueError(f"{args.images}: shard {args.shard[0]}/{args.shard[1]} of "
                                 f"{len(names)} images is empty; use fewer shards")
        prior = Prior.load(args.prior)
        refuse_overlap(folder, args.images, args.index)
        threshold = args.threshold
        if args.threshold_from:
            require_finished(args.threshold_from, EVALUATE, "cxrseg.evaluate")
            threshold = threshold_from_eval(args.threshold_from,
                                            checkpoint_id(args.checkpoint, args.seed),
                                            args.checkpoint)
        model = load_model(args.checkpoint, args.config, args.seed).to(device)
        facts = mask_facts(args, stack, names, rows_to_do, threshold, precision)
        files = [out.name] if to_stack else [image_stem(name) + ".png" for name in names]
        outputs = [*files, "index.csv", "prompts.csv", "run_predict.json"]
        begin_run(folder, outputs, done=PREDICT)
    except (ValueError, FileNotFoundError, IncompleteRunError) as error:
        raise SystemExit(f"error: {error}") from None

    n, first_row = len(rows_to_do), rows_to_do.start
    raw = np.zeros((n, *next(iter(shapes))), np.uint8) if to_stack else None
    prompt_rows, empty, degenerate = [], [], []
    if not to_stack:
        out.mkdir(parents=True, exist_ok=True)
    progress = Progress(n, "predict", "images", every_s=10)
    for start in range(rows_to_do.start, rows_to_do.stop, args.batch_size):
        rows = list(range(start, min(start + args.batch_size, rows_to_do.stop)))
        # a copy: the stack may be a read-only memory map
        images = [np.array(stack[i]) for i in rows]
        embeddings = encode(model, images, device, args.batch_size, precision=precision)
        first = np.stack([prior.box_for(img) for img in images])
        _, probs, boxes = segment(model, embeddings, images, device, args.prompt, prior,
                                  refine=args.refine, threshold=threshold,
                                  batch_size=args.batch_size, precision=precision)
        for j, i in enumerate(rows):
            reason = degenerate_reason(images[j])
            if reason:
                degenerate.append({"row": i, "image": names[i], "reason": reason})
            mask = clean_mask(probs[j].numpy() >= threshold, args.fill_holes, args.keep_largest)
            if not mask.any():
                empty.append(names[i])
            if to_stack:
                raw[i - first_row] = mask
            else:
                with atomic_path(out / (image_stem(names[i]) + ".png")) as tmp:
                    Image.fromarray(mask * 255).save(tmp, format="PNG")
            prompt_rows.append([i, names[i], *(f"{v:.1f}" for v in first[j]),
                                *(f"{v:.1f}" for v in boxes[j])])
        progress.update(rows[-1] + 1 - first_row)

    warn_degenerate(degenerate, n)
    # A shard may hold only empty masks by chance; cxrseg.gather checks all of them together.
    if len(empty) == n and args.shard is None:
        raise SystemExit(f"error: all {n} predicted masks are empty at threshold {threshold:g}: "
                         f"the segmenter ({args.checkpoint}) or the threshold is wrong; the run is "
                         "not marked finished")
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        print(f"predict: warning: {len(empty)} of {n} masks are empty (postprocess uses the whole "
              f"image for them): {shown}", file=sys.stderr, flush=True)
    if to_stack:
        save_npy(out, raw)
    write_csv(folder / "index.csv", ["row", "image"], [(i, names[i]) for i in rows_to_do])
    write_csv(folder / "prompts.csv",
              ["row", "image", "prior_x0", "prior_y0", "prior_x1", "prior_y1",
               "x0", "y0", "x1", "y1"], prompt_rows)
    seconds = time.time() - started
    print(f"predict: {n} images in {seconds:.1f} s ({n / seconds:.2f}/s), "
          f"threshold {threshold:.2f}, {len(empty)} empty mask(s), {len(degenerate)} degenerate "
          f"image(s) -> {out}")
    shard = {} if args.shard is None else {"shard": list(args.shard)}
    write_run_json(folder, args, name="run_predict.json", seconds=seconds, device=str(device),
                   precision=precision, threshold=threshold, images=n, **shard)
    write_done(folder, args, outputs, done=PREDICT, images=n, empty=len(empty),
               degenerate=degenerate, **facts, **shard)


if __name__ == "__main__":
    main()
