"""Segment the lungs of images that have no mask -> masks/raw.npy (N, H, W) uint8 0/1 + index.csv,
or, for a folder of radiographs, one folder of PNG masks per kind (cxrseg.predict_folder).

    python -m cxrseg.predict --images ~/my_cxrs --segmenter work/demo/seg --out ~/my_masks

The segmenter folder (a work folder's seg/, `make segmenter`) carries everything else: best.pt,
prior.json, the threshold cxrseg.evaluate chose on validation for that checkpoint and the
prompting it was chosen under (the recipe; cxrseg.segmenter gives the rule, flags only override);
`--checkpoint seg/best.pt` finds its folder too. The pipeline predicts its cache through the same
rule, so a folder and the pipeline give an image the same mask.

Images come from an (N, H, W) uint8 `.npy` stack with its `index.csv` (`row, image`, the
classifier's image cache) or from a folder. Each image is prompted with the prior box (the average
training mask's box, placed in the image's content frame), optionally with the prior's points;
`--refine N` re-prompts N more times with the box around the previous prediction (the image is
encoded once). Batched; CUDA when present. Also writes `prompts.csv` (first and final box per
image). A folder of images with a folder `--out` gives raw/, m15/, m50/ PNG masks at each image's
size, qc.csv, and with --masked / --overlay the masked images and a boundary overlay
(cxrseg.predict_folder has the layout); a `.npy` stack with a folder `--out` gives one PNG mask per
image in it, `<stem>.png` (index rows whose names share a stem are refused), with sha256.csv, the
sha256 of each PNG as written, which done_predict.json vouches for by content. A fine-tuned
checkpoint needs its done_finetune.json, an eval.csv its done_evaluate.json; done_predict.json is
written last. If every mask comes out empty the run fails (a wrong segmenter or threshold) instead
of writing them.

`--shard K/N` segments only the K-th of N contiguous row ranges of a `.npy` stack, so that N
processes (cores, GPUs or Slurm steps) share the work; `cxrseg.gather` then joins the N shard
folders into the one `raw.npy` + `index.csv` that the next stages read.

done_predict.json records what the masks depend on by content (cxrseg.records.MASK_FACTS): the
checkpoint's identity (sha256 of the file; a random model by name and seed) and lung extent
(field or full as fine-tuned, none for weights not fine-tuned; `--extent` refuses a checkpoint of
another extent), the threshold used, the sha256 of prior.json, of the image stack and of its index
rows, and the rows covered; gather joins only shards that agree on all of them. The threshold is
the one evaluated for the checkpoint with the same content, however its path is spelled.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (FILE_HASHES, USER_ERRORS, begin_run, content_facts,
                                        file_sha256, save_npy, write_csv, write_done,
                                        write_file_hashes, write_run_json)
from cxrstats.foundation.progress import Progress
from vendor_medsam.configs import CONFIGS
from cxrstats.foundation.device import add_precision_argument, prepare_device, resolve_precision
from cxrstats.foundation.extent import EXTENTS, check_extent

from .anatomy import add_anatomy_arguments, clean_mask
from .degenerate import RULE, degenerate_reason
from .engine import checkpoint_extent, checkpoint_id, encode, load_model, segment
from cxrstats.foundation.imageio import image_stem, write_png
from .pairs import load_stack
from .prompts import PROMPT_MODES, Prior
from .records import (PREDICT, PREDICT_STARTED, PROMPT_COLUMNS, index_rows_sha256,
                      previous_predict_outputs, write_predict_started)
from .segmenter import apply_segmenter
from .study_masks import DILATE_RADII, ERODE_RADIUS, PIPELINE_SIZE


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


def add_image(digest, name: str, image: np.ndarray) -> None:
    """Add one image of a folder (its file name and decoded pixels) to its images_sha256."""
    digest.update(f"{name}:{image.shape}:{image.dtype}\n".encode())
    digest.update(np.ascontiguousarray(image).tobytes())


def images_sha256(images: str, stack, names: list[str]) -> str:
    """sha256 of the images segmented: the `.npy` file's bytes, or for a folder its file names
    and decoded pixels in order."""
    if not Path(images).is_dir():
        return file_sha256(images)
    digest = hashlib.sha256()
    for name, image in zip(names, stack):
        add_image(digest, name, image)
    return digest.hexdigest()


def mask_facts(args, stack, names: list[str], rows: range, threshold: float,
               precision: str = "fp32") -> dict:
    """What the masks of `rows` depend on by content (cxrseg.records.MASK_FACTS), plus the hash of
    the rows covered."""
    return {"checkpoint_id": checkpoint_id(args.checkpoint, args.seed),
            "extent": checkpoint_extent(args.checkpoint),
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
        epilog="examples:\n  python -m cxrseg.predict --images ~/my_cxrs --segmenter "
               "work/demo/seg --out ~/my_masks --masked --overlay\n"
               "  python -m cxrseg.predict --images work/demo/cache/images.npy "
               "--index work/demo/cache/index.csv --segmenter work/demo/seg "
               "--out work/by-hand/masks/raw.npy")
    parser.add_argument("--images", required=True,
                        help="(N, H, W) uint8 .npy stack, or a folder of images")
    parser.add_argument("--index", default=None,
                        help="CSV `row, image` naming the stack rows (with a .npy stack)")
    parser.add_argument("--segmenter", default=None,
                        help="a segmenter folder (a work folder's seg/): checkpoint, prior, "
                             "threshold and prompting all come from it unless given "
                             "(cxrseg.segmenter)")
    parser.add_argument("--checkpoint", default=None,
                        help="seg/best.pt, lite, or micro (random, tests); default "
                             "SEGMENTER/best.pt")
    parser.add_argument("--config", default=None, choices=list(CONFIGS),
                        help="model config when the checkpoint file does not name it")
    parser.add_argument("--extent", default=None, choices=EXTENTS,
                        help="the lung extent the checkpoint must have (refused otherwise): "
                             "field or full; default: whatever it has (done_predict.json "
                             "records it)")
    parser.add_argument("--prior", default=None,
                        help="prior.json from cxrseg.finetune (default: the segmenter folder's)")
    parser.add_argument("--prompt", default=None, choices=PROMPT_MODES,
                        help="prompt mode (default: the segmenter's recipe, else box)")
    parser.add_argument("--refine", type=int_range(0), default=None,
                        help="extra passes prompted with the box of the previous prediction "
                             "(default: the segmenter's recipe, else 0)")
    parser.add_argument("--threshold", default=None,
                        type=float_range(0, 1, lo_open=True, hi_open=True),
                        help="binarization threshold (default: chosen on validation by "
                             "cxrseg.evaluate for this checkpoint, else 0.5)")
    parser.add_argument("--threshold-from", default=None,
                        help="an eval.csv to take the threshold (and recipe) from instead of the "
                             "segmenter folder's")
    add_anatomy_arguments(parser, unset=True)
    parser.add_argument("--erode", type=int_range(0), default=None,
                        help=f"folder --out: erosion radius in {PIPELINE_SIZE}-px units, scaled to "
                             f"each image (default {ERODE_RADIUS})")
    parser.add_argument("--dilate", type=int_range(0), nargs="+", default=None,
                        help="folder --out: radii r of the m<r> masks in "
                             f"{PIPELINE_SIZE}-px units, scaled to each image (default "
                             f"{' '.join(map(str, DILATE_RADII))})")
    parser.add_argument("--masked", action="store_true",
                        help="folder --out: also write each image cut out by each m<r> mask "
                             "(masked_m<r>/)")
    parser.add_argument("--overlay", action="store_true",
                        help="folder --out: also write each image with the mask boundaries drawn "
                             "(overlay/, for viewing)")
    parser.add_argument("--batch-size", type=int_range(1), default=8, help="images per batch")
    parser.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                        help="segment only shard K of N (contiguous rows of a .npy stack; join "
                             "the shards with cxrseg.gather)")
    parser.add_argument("--out", required=True,
                        help="masks/raw.npy, or a folder for PNG masks (raw/, m<r>/, qc.csv ...)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed of a random (micro) model")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_precision_argument(parser)
    return parser


@dataclass
class Job:
    """A checked run: the images, the rows to segment, the model, and where the masks go."""
    out: Path                    # raw.npy for a stack, else the folder of PNG masks
    folder: Path                 # the folder that holds the outputs and the records
    stack: object                # (N, H, W) uint8 array or memory map, or a list of (H, W) images
    names: list[str]
    rows: range                  # the rows this run (or shard) segments
    prior: Prior
    model: object
    device: object
    precision: str
    facts: dict                  # cxrseg.records.MASK_FACTS of these masks
    outputs: list[str]

    @property
    def to_stack(self) -> bool:
        return self.out.suffix == ".npy"


@dataclass
class Predicted:
    """What segmenting the rows gave: the stack of masks (None when each went to a PNG; then the
    sha256 of each PNG written), the prompts.csv rows, and the names of empty masks and
    degenerate images."""
    raw: np.ndarray | None
    hashes: dict[str, str] = field(default_factory=dict)
    prompt_rows: list = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    degenerate: list[dict] = field(default_factory=list)


def check_stack_arguments(args, to_stack: bool) -> None:
    """ValueError for flags that only a folder of images into a folder --out takes, and for a
    `.npy` stack without its index."""
    folder_only = [f"--{name}" for name in ("erode", "dilate", "masked", "overlay")
                   if getattr(args, name) not in (None, False)]
    if folder_only:
        raise ValueError(f"{' '.join(folder_only)}: only for a folder of images segmented "
                         "into a folder --out (the pipeline post-processes a stack with "
                         "cxrseg.postprocess)")
    if Path(args.images).suffix == ".npy" and args.index is None:
        raise ValueError(f"{args.images}: a .npy stack needs --index (CSV `row, image`)")


def rows_to_segment(args, stack, names: list[str], to_stack: bool) -> range:
    """All rows, or the shard's; ValueError for images of several sizes into one stack, a shard
    of a folder, or an empty shard."""
    if len(names) == 0:
        raise ValueError(f"{args.images}: no images")
    shapes = ({tuple(np.shape(img)) for img in stack} if isinstance(stack, list)
              else {stack.shape[1:]})
    if to_stack and len(shapes) > 1:
        raise ValueError(f"{args.images}: images differ in size {sorted(shapes)[:3]}; "
                         "give a folder as --out to write one PNG mask per image")
    if args.shard is None:
        return range(len(names))
    if not to_stack or isinstance(stack, list):
        raise ValueError("--shard needs a .npy image stack and a .npy --out")
    rows = shard_rows(len(names), args.shard)
    if not rows:
        raise ValueError(f"{args.images}: shard {args.shard[0]}/{args.shard[1]} of "
                         f"{len(names)} images is empty; use fewer shards")
    return rows


def png_names(names: list[str], index) -> list[str]:
    """`<stem>.png` per row of a stack segmented into a folder; ValueError naming the rows whose
    names share a stem (their masks would be one file, the last written over the others)."""
    rows_of: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        rows_of.setdefault(image_stem(name), []).append(row)
    repeated = {stem: rows for stem, rows in rows_of.items() if len(rows) > 1}
    if repeated:
        stem, rows = next(iter(repeated.items()))
        shown = ", ".join(f"row {r} {names[r]}" for r in rows)
        raise ValueError(f"{index}: {len(repeated)} stem(s) name several rows, e.g. {stem!r}: "
                         f"{shown}; their masks would all be {stem}.png. Give each image its own "
                         "stem, or write a .npy --out")
    return [stem + ".png" for stem in rows_of]


def plan(args, device, precision: str) -> Job:
    """Read and check the inputs, load the model, and start the run (begin_run): a Job."""
    out = Path(args.out)
    to_stack = out.suffix == ".npy"
    folder = out.parent if to_stack else out
    check_stack_arguments(args, to_stack)
    stack, names = load_stack(args.images, args.index)
    rows = rows_to_segment(args, stack, names, to_stack)
    prior = Prior.load(args.prior)
    refuse_overlap(folder, args.images, args.index)
    model = load_model(args.checkpoint, args.config, args.seed).to(device)
    facts = mask_facts(args, stack, names, rows, args.threshold, precision)
    files = [out.name] if to_stack else png_names(names, args.index)
    outputs = [*files, "index.csv", "prompts.csv", *([] if to_stack else [FILE_HASHES]),
               "run_predict.json"]
    if to_stack:
        begin_run(folder, outputs, done=PREDICT)
    else:
        begin_run(folder, [*outputs, *previous_predict_outputs(folder)], done=PREDICT)
        write_predict_started(folder, outputs)
    return Job(out, folder, stack, names, rows, prior, model, device, precision, facts, outputs)


def segment_rows(job: Job, args) -> Predicted:
    """Encode, prompt and threshold the job's rows in batches; PNG masks are written as they come,
    a stack's are kept for the end."""
    first_row = job.rows.start
    # one size for all when they go into a stack (rows_to_segment checked it)
    shape = np.shape(job.stack[first_row])[:2]
    raw = np.zeros((len(job.rows), *shape), np.uint8) if job.to_stack else None
    result = Predicted(raw)
    if not job.to_stack:
        job.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(job.rows), "predict", "images", every_s=10)
    for start in range(job.rows.start, job.rows.stop, args.batch_size):
        rows = list(range(start, min(start + args.batch_size, job.rows.stop)))
        # a copy: the stack may be a read-only memory map
        images = [np.array(job.stack[i]) for i in rows]
        embeddings = encode(job.model, images, job.device, args.batch_size,
                            precision=job.precision)
        first = np.stack([job.prior.box_for(img) for img in images])
        _, probs, boxes = segment(job.model, embeddings, images, job.device, args.prompt,
                                  job.prior, refine=args.refine, threshold=args.threshold,
                                  batch_size=args.batch_size, precision=job.precision)
        for j, i in enumerate(rows):
            name = job.names[i]
            reason = degenerate_reason(images[j])
            if reason:
                result.degenerate.append({"row": i, "image": name, "reason": reason})
            mask = clean_mask(probs[j].numpy() >= args.threshold, args.fill_holes,
                              args.keep_largest)
            if not mask.any():
                result.empty.append(name)
            if job.to_stack:
                result.raw[i - first_row] = mask
            else:
                png = image_stem(name) + ".png"
                result.hashes[png] = write_png(job.out / png, mask * 255)
            result.prompt_rows.append([i, name, *(f"{v:.1f}" for v in first[j]),
                                       *(f"{v:.1f}" for v in boxes[j])])
        progress.update(rows[-1] + 1 - first_row)
    return result


def check_empty(empty: list[str], n: int, args, consequence: str,
                all_may_be_empty: bool = False) -> None:
    """The empty-mask rule of both prediction paths: ValueError when all `n` masks are empty (a
    wrong segmenter or threshold; the run is not finished), else a warning naming the empty ones
    and `consequence`, what happens to them downstream."""
    if len(empty) == n and not all_may_be_empty:
        raise ValueError(f"all {n} predicted masks are empty at threshold {args.threshold:g}: the "
                         f"segmenter ({args.checkpoint}) or the threshold is wrong; the run is not "
                         "marked finished")
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        print(f"predict: warning: {len(empty)} of {n} masks are empty ({consequence}): {shown}",
              file=sys.stderr, flush=True)


def check_masks(job: Job, result: Predicted, args) -> None:
    """Warn of degenerate images and empty masks; stop, unfinished, when every mask is empty."""
    n = len(job.rows)
    warn_degenerate(result.degenerate, n)
    try:
        # A shard may hold only empty masks by chance; cxrseg.gather checks all of them together.
        check_empty(result.empty, n, args, "postprocess uses the whole image for them",
                    all_may_be_empty=args.shard is not None)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def write_outputs(job: Job, result: Predicted, args, resolved, started: float) -> None:
    """The stack of masks, index.csv, prompts.csv, run_predict.json, and done_predict.json last."""
    n = len(job.rows)
    if job.to_stack:
        save_npy(job.out, result.raw)
    write_csv(job.folder / "index.csv", ["row", "image"], [(i, job.names[i]) for i in job.rows])
    write_csv(job.folder / "prompts.csv", PROMPT_COLUMNS, result.prompt_rows)
    seconds = time.time() - started
    print(f"predict: {n} images in {seconds:.1f} s ({n / seconds:.2f}/s), "
          f"threshold {args.threshold:.2f}, {len(result.empty)} empty mask(s), "
          f"{len(result.degenerate)} degenerate image(s) -> {job.out}")
    shard = {} if args.shard is None else {"shard": list(args.shard)}
    if job.to_stack:
        vouched = {"raw_sha256": file_sha256(job.out)}
    else:
        write_file_hashes(job.folder, result.hashes)
        vouched = content_facts(job.folder, [FILE_HASHES])
    write_run_json(job.folder, args, name="run_predict.json", seconds=seconds,
                   device=str(job.device), precision=job.precision, threshold=args.threshold,
                   images=n, **shard)
    write_done(job.folder, args, job.outputs, done=PREDICT, images=n, empty=len(result.empty),
               degenerate=result.degenerate, settings=resolved.sources, **job.facts, **shard,
               **vouched)
    if not job.to_stack:
        (job.folder / PREDICT_STARTED).unlink()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.time()
    try:
        device = prepare_device(args.device)
        precision = resolve_precision(args.precision, device)
        resolved = apply_segmenter(args)
        check_extent(args.checkpoint, checkpoint_extent(args.checkpoint), args.extent)
        if Path(args.images).is_dir() and Path(args.out).suffix != ".npy":
            from .predict_folder import segment_folder  # here: it imports this module's helpers
            segment_folder(args, resolved, device, started, precision)
            return
        job = plan(args, device, precision)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    result = segment_rows(job, args)
    check_masks(job, result, args)
    write_outputs(job, result, args, resolved, started)


if __name__ == "__main__":
    main()
