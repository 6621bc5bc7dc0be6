"""Evaluate lung segmentation checkpoints -> seg/eval.csv (+ eval_per_image.csv).

Per image: Dice and IoU of the mask binarized at the threshold, soft Dice loss and BCE of the
probabilities, all at the image's own resolution; then means per part. The fine-tuned checkpoint
and a zero-shot one (`--zero-shot`, the checkpoint before fine-tuning) are evaluated side by side.
The binarization threshold is chosen per checkpoint on validation (sweep `--thresholds`, best
mean Dice, or with `--threshold-tolerance T` the lowest threshold within T of it;
cxrseg.threshold_rule) and applied to the other parts; without a validation part `--threshold`
is used. The record holds the tolerance (`threshold_tolerance`), which predict applies too.
With `--refine N` each candidate threshold is scored on the masks cxrseg.predict makes at it: a
refine pass takes its box from the mask at that threshold.
Works on any dataset: pass another `--images/--masks` without `--splits` for a cross-dataset test.
Several datasets at once: `--data NAME=IMAGES:MASKS` per dataset; rows are written per dataset and
part, plus `all` rows pooling the datasets when there are several.

Beside Dice, `kept_m15` / `kept_m50` give the share of the true lung inside the M-15 / M-50 mask
built from the prediction as cxrseg.postprocess builds it (eroded `--erode`, dilated 15 / 50, in
pixels of the pipeline's `--kept-size` side; cxrseg.coverage): whether masking could hide lung.
When a dataset's masks folder has sibling folders `<masks>_right/` and `<masks>_left/` (one mask
per lung, the patient's sides), the same rows also give Dice and the kept shares per lung
(cxrseg.per_lung; columns `dice_right ... kept_m50_left`, empty for datasets without them).

Reads a split file only with its done_split.json and a fine-tuned checkpoint only with its
done_finetune.json; every pair of every dataset given must have a row in --splits (a dataset the
split file does not know is refused, not left out). A --checkpoint that cxrseg.finetune wrote is
evaluated only on the parts it was fine-tuned on (the hash of the parts in its settings; a k-fold
file's validation part is drawn with its fine-tuning seed): another split is refused.
Writes done_evaluate.json last (one evaluation per folder: the record covers the latest). Each
row names its checkpoint as given and by content (`checkpoint_id`, cxrseg.engine.checkpoint_id:
the file's sha256), so that
`cxrseg.predict --threshold-from` finds the threshold of the same weights however the path is
spelled, and refuses weights trained again since. The record also holds `prompting`, the recipe
the threshold was chosen under (cxrseg.segmenter): cxrseg.predict --segmenter prompts new images
with it. Each row also gives its checkpoint's lung extent (`extent`: field or full as fine-tuned,
none for weights not fine-tuned for lungs; cxrseg.engine.checkpoint_extent); `--extent` refuses a
--checkpoint of another extent.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, content_facts, write_csv,
                                        write_done, write_run_json)
from vendor_medsam.configs import CONFIGS
from cxrstats.foundation.device import add_precision_argument, prepare_device, resolve_precision
from cxrstats.foundation.extent import EXTENTS, check_extent

from .anatomy import add_anatomy_arguments, clean_mask
from .coverage import lung_kept
from .datasets import POOLED, add_data_arguments, find_all_pairs, sources_from_args
from .engine import (checkpoint_extent, checkpoint_id, embeddings_for, finetune_settings, gt_boxes,
                     load_model, segment)
from .pairs import load_pairs
from .losses import dice_iou
from .per_lung import LUNG_METRICS, lung_metrics, read_lung_masks
from .prompts import PROMPT_MODES, Prior
from .records import EVALUATE
from .segmenter import prompting_fact
from .split import PARTS, check_splits_match, parts_sha256, read_finished_splits
from .study_masks import ERODE_RADIUS, PIPELINE_SIZE
from .threshold_rule import choose_threshold, threshold_text

METRICS = ["dice", "iou", "dice_loss", "bce_loss", "kept_m15", "kept_m50"]
# Per-lung columns come last, so that the columns before them keep their places and meaning.
EVAL_COLUMNS = ["checkpoint", "checkpoint_id", "extent", "dataset", "part", "threshold", *METRICS,
                "n", "prompt", *LUNG_METRICS]
PER_IMAGE_COLUMNS = ["checkpoint", "checkpoint_id", "extent", "dataset", "part", "stem",
                     "threshold", *METRICS, *LUNG_METRICS]
# Thresholds tried on validation (max mean Dice, the lowest on ties). Below 0.5 too: under
# synthetic opacities a lower threshold kept more of the true lung at equal clean Dice
# (experiments/seg_recipes.sh, README), and validation decides whether it is taken.
SWEEP = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
PROBABILITY = float_range(0, 1, lo_open=True, hi_open=True)  # a threshold on probabilities


def soft_losses(prob: np.ndarray, mask: np.ndarray, eps: float = 1e-6) -> tuple[float, float]:
    """(soft Dice loss, BCE) of a probability map (H, W) against a 0/1 mask (H, W)."""
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    t = mask.astype(np.float64)
    dice = 1 - (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    return float(dice), float(bce)


def image_metrics(probs: list[np.ndarray], masks: list[np.ndarray], threshold: float,
                  erode: int = ERODE_RADIUS, kept_size: int | None = PIPELINE_SIZE,
                  clean=None, lungs=None) -> np.ndarray:
    """(N, 6) per image: Dice, IoU (binarized at `threshold`, then `clean`ed when given, e.g.
    cxrseg.anatomy.clean_mask), soft Dice loss, BCE, and the shares of the true lung kept by M-15
    and M-50 (cxrseg.coverage.lung_kept). With `lungs` (per image (right, left) masks or None,
    cxrseg.per_lung.read_lung_masks): (N, 12), the LUNG_METRICS after them (NaN where None)."""
    rows = []
    for i, (p, m) in enumerate(zip(probs, masks)):
        pred = p >= threshold if clean is None else clean(p >= threshold).astype(bool)
        row = [*dice_iou(pred, m), *soft_losses(p, m), *lung_kept(pred, m, erode, size=kept_size)]
        if lungs is not None:
            row += (lung_metrics(pred, *lungs[i], erode, kept_size) if lungs[i] is not None
                    else [np.nan] * len(LUNG_METRICS))
        rows.append(row)
    width = len(METRICS) + (len(LUNG_METRICS) if lungs is not None else 0)
    return np.asarray(rows, dtype=np.float64).reshape(-1, width)


def sweep_threshold(probs_at, masks, thresholds=SWEEP, erode: int = ERODE_RADIUS,
                    kept_size: int | None = PIPELINE_SIZE, clean=None, lungs=None,
                    tolerance: float = 0.0) -> tuple[float, list[tuple[float, np.ndarray]]]:
    """The threshold chosen by the study's rule (cxrseg.threshold_rule: best mean Dice, or the
    lowest within `tolerance` of it) and the per-threshold metrics; `probs_at(t)`: the
    probabilities (H, W) per image as they are when the masks are made at threshold t."""
    sweep = [(t, image_metrics(probs_at(t), masks, t, erode, kept_size, clean, lungs))
             for t in thresholds]
    return choose_threshold({t: m[:, 0].mean() for t, m in sweep}, tolerance), sweep


def probabilities_by_threshold(model, ev: "Evaluation", device, args, cache_dir,
                               precision: str = "fp32"):
    """`at(threshold, rows)` -> probabilities (H, W) of those images with the requested prompts
    (GT box or prior box, `--refine` passes), each refine pass prompted with the box around the
    mask at `threshold`, as cxrseg.predict makes it: so the threshold sweep scores the masks
    predict would make at each candidate. The encoder runs once (networks under `precision`);
    without refine passes the probabilities do not depend on the threshold and are reused."""
    embeddings = embeddings_for(model, ev.images, ev.stems, device, batch_size=args.batch_size,
                                cache_dir=cache_dir, precision=precision)
    boxes = gt_boxes(ev.masks) if args.box_source == "gt" else None
    latest: dict = {}     # the last result only, so that one set of probabilities is held

    def at(threshold: float, rows) -> list[np.ndarray]:
        rows = [int(i) for i in rows]
        key = (threshold if args.refine else None, tuple(rows))
        if key not in latest:
            latest.clear()
            _, probs, _ = segment(model, embeddings[rows], [ev.images[i] for i in rows], device,
                                  args.prompt, ev.prior,
                                  boxes_px=None if boxes is None else boxes[rows],
                                  refine=args.refine, threshold=threshold, precision=precision)
            latest[key] = [p.numpy() for p in probs]
        return latest[key]
    return at


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.evaluate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.evaluate --images work/demo/data/seg/images "
               "--masks work/demo/data/seg/masks --splits work/by-hand/seg/splits.csv "
               "--checkpoint work/by-hand/seg/best.pt --zero-shot lite "
               "--out work/by-hand/seg/eval.csv")
    add_data_arguments(parser)
    parser.add_argument("--splits", default=None,
                        help="seg/splits.csv; omit to evaluate every pair as part 'all'")
    parser.add_argument("--fold", type=int_range(0), default=None,
                        help="test fold of a --folds split file")
    parser.add_argument("--parts", nargs="+", default=["val", "test"], choices=PARTS,
                        help="parts to report (default val test)")
    parser.add_argument("--checkpoint", required=True,
                        help="fine-tuned checkpoint (seg/best.pt), lite or micro")
    parser.add_argument("--extent", default=None, choices=EXTENTS,
                        help="the lung extent --checkpoint must have (refused otherwise); "
                             "default: whatever it has (eval.csv's extent column says)")
    parser.add_argument("--zero-shot", default=None,
                        help="also evaluate this checkpoint (e.g. lite) as zero-shot")
    parser.add_argument("--config", default=None, choices=list(CONFIGS),
                        help="model config when the checkpoint file does not name it")
    parser.add_argument("--dataset", default=None,
                        help="dataset name for the CSV (default: images folder's parent)")
    parser.add_argument("--prompt", default="box", choices=PROMPT_MODES, help="prompt mode")
    parser.add_argument("--box-source", default="gt", choices=["gt", "prior"],
                        help="box from the ground-truth mask (the study) or from the prior "
                             "(no ground truth)")
    parser.add_argument("--prior", default=None,
                        help="prior.json (default: beside --checkpoint or --out)")
    parser.add_argument("--refine", type=int_range(0), default=0,
                        help="second passes re-prompting with the predicted box")
    parser.add_argument("--thresholds", type=PROBABILITY, nargs="+", default=list(SWEEP),
                        help="validation threshold sweep (default "
                             f"{' '.join(f'{t:.2f}' for t in SWEEP)})")
    parser.add_argument("--threshold", type=PROBABILITY, default=0.5,
                        help="threshold when there is no validation part")
    parser.add_argument("--threshold-tolerance", type=float_range(0, 1, hi_open=True),
                        default=0.0,
                        help="choose the lowest threshold whose mean validation Dice is within "
                             "this of the best (0: the best; a lower threshold keeps more lung)")
    parser.add_argument("--batch-size", type=int_range(1), default=8,
                        help="images per encoder batch")
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache folder (default: --out's folder)")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not keep image embeddings on disk")
    add_anatomy_arguments(parser)
    parser.add_argument("--erode", type=int_range(0), default=ERODE_RADIUS,
                        help="erosion radius of the kept-lung shares")
    parser.add_argument("--kept-size", type=int_range(0), default=PIPELINE_SIZE,
                        help="pipeline image side the radii refer to (the cache size); "
                             "0 = the masks' own pixels")
    parser.add_argument("--out", required=True, help="output CSV (seg/eval.csv)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed of a random (micro) model, and of a --folds split file's "
                             "validation part unless --checkpoint was fine-tuned (its seed then)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_precision_argument(parser)
    return parser


def _find_prior(args) -> Prior | None:
    candidates = [args.prior] if args.prior else [Path(args.checkpoint).parent / "prior.json",
                                                   Path(args.out).parent / "prior.json"]
    for path in candidates:
        if path and Path(path).is_file():
            return Prior.load(path)
    if args.prior:
        return Prior.load(args.prior)  # raises the not-found error
    return None


@dataclass
class Evaluation:
    """A checked evaluation: the pairs with their part and set, and the checkpoints to score."""
    stems: list[str]
    images: list
    masks: list
    lungs: list                  # per-lung masks (cxrseg.per_lung) or None per pair
    part_of: np.ndarray          # (N,) "train" / "val" / "test" / "all"
    dataset: np.ndarray          # (N,) the set each pair comes from
    prior: object
    checkpoints: list[str]
    models: list
    identity: dict               # checkpoint -> checkpoint_id
    extent: dict                 # checkpoint -> lung extent
    outputs: list[str]

    @property
    def groups(self) -> list[str]:
        """Each set, and the sets pooled when there are several."""
        return list(dict.fromkeys(self.dataset)) + ([POOLED] if len(set(self.dataset)) > 1 else [])


def prompt_label(args) -> str:
    """The prompting in a few characters, for eval.csv's `prompt` column."""
    return (f"{args.prompt}:{args.box_source}"
            + (f"+refine{args.refine}" if args.refine else "")
            + ("+fill" if args.fill_holes else "")
            + (f"+largest{args.keep_largest}" if args.keep_largest else ""))


def read_split_parts(args) -> dict[str, str]:
    """--splits' parts for --fold. For a --checkpoint cxrseg.finetune wrote, a k-fold file's
    validation part is drawn with the seed it was fine-tuned with, and the parts must be the ones
    it was fine-tuned on (its settings' `data`, cxrseg.split.parts_sha256): ValueError otherwise,
    as its training images would be scored as held out."""
    settings = finetune_settings(args.checkpoint) or {}
    parts = read_finished_splits(args.splits, args.fold, settings.get("seed", args.seed))
    trained = settings.get("data")
    if trained is None or parts_sha256(parts) == trained:
        return parts
    fold = settings.get("fold")
    folds = (f" (it was fine-tuned with --fold {fold}, evaluate has --fold {args.fold})"
             if fold != args.fold else "")
    raise ValueError(f"{args.splits}: its train/val/test parts are not the ones "
                     f"{args.checkpoint} was fine-tuned on{folds}, so images it trained on could "
                     "be scored as held out; give the split file and --fold it was fine-tuned "
                     "with, or fine-tune again on this split")


def plan(args, out: Path, per_image_path: Path) -> Evaluation:
    """Read and check the pairs, splits, prior and checkpoints, and start the run (begin_run)."""
    if args.erode < 0 or args.kept_size < 0:
        raise ValueError("--erode and --kept-size must be non-negative")
    pairs, dataset_of = find_all_pairs(sources_from_args(args))
    checkpoints = [args.checkpoint] + ([args.zero_shot] if args.zero_shot else [])
    models = [load_model(c, args.config, args.seed) for c in checkpoints]
    identity = {c: checkpoint_id(c, args.seed) for c in checkpoints}
    extent = {c: checkpoint_extent(c) for c in checkpoints}
    check_extent(args.checkpoint, extent[args.checkpoint], args.extent)
    if args.splits:
        parts = read_split_parts(args)
        check_splits_match(parts, pairs, dataset_of, args.splits)
        pairs = [p for p in pairs if parts.get(p.stem) in args.parts]
    else:
        parts = {p.stem: "all" for p in pairs}
    if not pairs:
        raise ValueError(f"no pairs in parts {args.parts}")
    prior = _find_prior(args)
    if prior is None and (args.box_source == "prior" or "points" in args.prompt):
        raise ValueError("prior prompts need --prior seg/prior.json")
    images, masks = load_pairs(pairs)
    lungs = read_lung_masks(pairs)
    outputs = [out.name, per_image_path.name, "run_evaluate.json"]
    begin_run(out.parent, outputs, done=EVALUATE)
    stems = [p.stem for p in pairs]
    return Evaluation(stems, images, masks, lungs, np.array([parts[s] for s in stems]),
                      np.array([dataset_of[s] for s in stems]), prior, checkpoints, models,
                      identity, extent, outputs)


def score_checkpoint(ev: Evaluation, name: str, model, args, device, precision: str,
                     cache_dir) -> tuple[float, list, list]:
    """One checkpoint: its threshold (chosen on the validation part when there is one, with the
    sweep's rows), then its eval.csv rows per part and set, and its per-image rows."""
    kept_size = args.kept_size or None
    clean = None
    if args.fill_holes or args.keep_largest:
        def clean(m):
            return clean_mask(m, args.fill_holes, args.keep_largest)
    label = prompt_label(args)
    probs_at = probabilities_by_threshold(model, ev, device, args, cache_dir, precision)
    head = [name, ev.identity[name], ev.extent[name]]
    rows, per_image = [], []
    threshold = args.threshold
    if "val" in ev.part_of:
        val = np.flatnonzero(ev.part_of == "val")
        threshold, sweep = sweep_threshold(lambda t: probs_at(t, val),
                                           [ev.masks[i] for i in val],
                                           args.thresholds, args.erode, kept_size, clean,
                                           [ev.lungs[i] for i in val], args.threshold_tolerance)
        for t, metrics in sweep:
            for group in ev.groups:
                sel = ev.dataset[val] == group if group != POOLED else np.ones(len(val), bool)
                if sel.any():
                    merged, lung = _means(metrics[sel])
                    rows.append([*head, group, "val", threshold_text(t), *merged, int(sel.sum()),
                                 label, *lung])
    metrics = image_metrics(probs_at(threshold, range(len(ev.images))), ev.masks, threshold,
                            args.erode, kept_size, clean, ev.lungs)
    for part in [p for p in dict.fromkeys(ev.part_of) if p != "val"]:
        for group in ev.groups:
            sel = (ev.part_of == part) & ((ev.dataset == group) | (group == POOLED))
            if sel.any():
                merged, lung = _means(metrics[sel])
                rows.append([*head, group, part, threshold_text(threshold), *merged, int(sel.sum()),
                             label, *lung])
    for i, stem in enumerate(ev.stems):
        per_image.append([*head, ev.dataset[i], ev.part_of[i], stem, threshold_text(threshold)]
                         + [_number(v) for v in metrics[i, :len(METRICS)]]
                         + [_number(v) for v in metrics[i, len(METRICS):]])
    summary = ", ".join(f"{p} Dice {metrics[ev.part_of == p, 0].mean():.4f} "
                        f"M-15 keeps {metrics[ev.part_of == p, 4].mean():.4f}"
                        + _lung_summary(metrics[ev.part_of == p])
                        for p in dict.fromkeys(ev.part_of))
    print(f"evaluate: {name}: threshold {threshold_text(threshold)}; {summary} ({label})",
          flush=True)
    return threshold, rows, per_image


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.time()
    out = Path(args.out)
    per_image_path = out.with_name(out.stem + "_per_image.csv")
    try:
        device = prepare_device(args.device)
        precision = resolve_precision(args.precision, device)
        ev = plan(args, out, per_image_path)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    cache_dir = None if args.no_cache else args.cache_dir or out.parent

    rows, per_image, chosen = [], [], {}
    for name, model in zip(ev.checkpoints, ev.models):
        chosen[name], its_rows, its_images = score_checkpoint(ev, name, model, args, device,
                                                              precision, cache_dir)
        rows += its_rows
        per_image += its_images

    write_csv(out, EVAL_COLUMNS, rows)
    write_csv(per_image_path, PER_IMAGE_COLUMNS, per_image)
    write_run_json(out.parent, args, name="run_evaluate.json", seconds=time.time() - started,
                   device=str(device), precision=precision, thresholds=chosen)
    write_done(out.parent, args, ev.outputs, done=EVALUATE, thresholds=chosen,
               checkpoint_ids=ev.identity, extents=ev.extent, prompting=prompting_fact(args),
               threshold_tolerance=args.threshold_tolerance, precision=precision,
               **content_facts(out.parent, [out.name, per_image_path.name]))


def _means(metrics: np.ndarray) -> tuple[list[str], list[str]]:
    """Means of METRICS, and of LUNG_METRICS when every image of the row has per-lung masks
    (empty cells otherwise)."""
    merged = [f"{v:.6f}" for v in metrics[:, :len(METRICS)].mean(axis=0)]
    lung = metrics[:, len(METRICS):]
    if not lung.size or not np.isfinite(lung).all():
        return merged, [""] * len(LUNG_METRICS)
    return merged, [f"{v:.6f}" for v in lung.mean(axis=0)]


def _number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def _lung_summary(metrics: np.ndarray) -> str:
    lung = metrics[:, len(METRICS):]
    if not lung.size or not np.isfinite(lung).all():
        return ""
    d_r, d_l, k_r, k_l = (lung[:, LUNG_METRICS.index(c)].mean() for c in
                          ("dice_right", "dice_left", "kept_m15_right", "kept_m15_left"))
    return f" (right lung {d_r:.4f} / {k_r:.4f}, left {d_l:.4f} / {k_l:.4f})"


if __name__ == "__main__":
    main()
