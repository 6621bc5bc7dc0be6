"""The lung's extent on diseased films: the visible lung field (Montgomery's convention) against the
whole lung (covid_dev's), per approach, merged and per lung.

Approaches, all LiteMedSAM with the paper profile's `SEG_MODEL=lite` recipe (decoder-only,
`--prior-box-fraction 0.5 --augment opacity --augment-copies 2`, 4 epochs, patience 2, batch 8),
scored with automatic prompting (prior box + `--refine` passes), holes filled (with
`--keep-largest N` only the N largest pieces kept), at `--threshold`:
- `recipe`: trained on Montgomery (seeded 70/15/15 split, seed 0, as experiments/seg_recipes.sh);
- `recipe+hull`: its masks, each lung (connected piece of at least 5% of the mask) replaced by its
  convex hull (`hull_per_lung`);
- `covid-cv`: trained on covid_dev itself (`--extent full`), K folds grouped by source (meta.csv
  `image_url`: films of one source stay in one fold); fold k is the test part, fold k+1 the
  validation part, the rest training; each image is scored by the model it was held out from;
- `covid-cv+hull`: the same with hulls;
- `joint-cv` (`--joint`): Montgomery's training/validation parts joined with covid_dev's of fold k
  (masks of both conventions; recorded as the default extent, `field`);
- `covid-cv-enc` (`--encoder-epochs N`, N > 0): each covid-cv fold model fine-tuned further with
  its image encoder trained too (`--train all`: image encoder + mask decoder), starting from that
  fold's decoder-only best.pt, on the same split, opacity copies, prior-box fraction and seed, for
  at most N epochs (`--encoder-patience`, Adam at `--encoder-lr`), in bfloat16 autocast
  (`--precision bf16`: the encoder's forward and backward pass run about twice as fast in bf16 on
  this CPU, and bf16 and fp32 masks agree at Dice 0.998, docs/benchmarks.md); run folders
  `covid-fold<k><suffix>-enc<N>` (`-lr<LR>`, `-p<P>` for a learning rate or patience other than
  the defaults). The embeddings of the opacity copies cannot be cached while the encoder trains:
  the encoder-trained run encodes every training image (copies included) in every step. Its
  models are scored on embeddings of their own encoder (float32, cached per run in <run>/emb),
  never on the base LiteMedSAM's, which every decoder-only approach keeps using.
`--no-recipe` leaves out `recipe` and `recipe+hull` (and their Montgomery fine-tuning).
`--epochs`, `--patience`, `--augment` (the copies' augmentations, e.g. `opacity whiteout`),
`--augment-copies`, `--val-prompt` (the prompt of the validation loss that stops a run: the
ground-truth box, or `prior`, the automatic prompt) and `--seed` (the training seed; the folds stay
the same) change the fine-tuning of every decoder-only run (run folders get a suffix such as
`-e20-p3-vprior`, `-aopacity+whiteout` or `-e20-p3-s1` for settings other than the defaults, so
runs of other settings sit side by side; experiments.covid_ensemble averages runs of one fold);
every decoder-only run trains in
float32 (`--precision fp32`). `--thresholds`
adds `covid-cv@val` (`joint-cv@val`, `covid-cv-enc@val`): each fold's model at the candidate
threshold chosen on that fold's validation part (fold k+1) by mean Dice,
`--threshold-tolerance` letting the lowest candidate within that much of the best win; the
held-out fold plays no part in any choice.
OUT/covid_extent<TAG>_folds.csv lists per fold the best epoch and the threshold. The K-fold
approaches are also scored on the validation parts (`covid_dev-val`: fold k's model on fold k+1,
all films pooled; these films chose the epoch and the threshold, so the rows are optimistic and
serve to compare options, never as the result). `--flip` averages each film's probabilities with
its mirror image's (mirrored back; their embeddings cached too) before the threshold;
`--hull-part lower` fills only the lower half of each lung's hull in the `+hull` approaches.
`--refine-margin F` widens each refine pass's box by F x its width and height (with
`--refine-margin-side lower` only its lower edge, by F x its height), clipped to the film: a test
of whether a box reaching past an opacity lets the mask reach the lung's base.
Each approach is also scored on Montgomery's test part (the field convention; for the K-fold
approaches every fold's model, pooled) to see whether the conventions blur.

Per approach and test set: Dice (mean, worst), share of the true lung kept by M-15 (mean, 10th
percentile, worst), and per lung (cxrseg.per_lung; covid_dev has masks_right/, masks_left/) Dice
and M-15 kept share (mean, 10th percentile, worst) and M-50 kept share (mean). Every step is
skipped when its output exists, so an interrupted run continues: a finished fine-tuning run only
when it is the run these flags make from today's files (cxrseg.finetune.check_finished), else it
stops naming the file; base LiteMedSAM image embeddings are cached once in OUT/emb.
`--threads`: torch threads of this process and of the fine-tuning subprocesses (OMP_NUM_THREADS);
the thread count changes the float sums of training, and that can move an early stop (fold 0 of
`--epochs 20 --patience 3`: best epoch 6 with one thread, 13 with two).

  python -m experiments.covid_extent --lungseg ../shared/data/lungseg --out work/covid-extent
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from cxrseg.augmented_copies import AUGMENTATIONS
from cxrseg.records import SPLIT
from cxrseg.anatomy import clean_mask
from cxrseg.engine import embeddings_for, segment
from cxrseg.finetune import check_finished
from cxrseg.threshold_rule import choose_threshold
from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, read_csv, read_done, write_csv,
                                        write_done, write_run_json)
from experiments.seg_bench_common import (DEVICE, MARGIN_SIDES, embed, load_lungs, load_run,
                                          load_set, predict_masks, score_masks)

RECIPE = ["--checkpoint", "lite", "--train", "decoder", "--prior-box-fraction", "0.5",
          "--batch-size", "8", "--seed", "0", "--device", "cpu", "--precision", "fp32"]
FULL = ["--extent", "full"]
DEFAULTS = {"epochs": 4, "patience": 2, "augment_copies": 2, "val_prompt": "gt",
            "augment": ["opacity"], "seed": 0}
ENCODER_DEFAULTS = {"encoder_lr": 3e-5, "encoder_patience": 2, "encoder_val_prompt": "gt"}
FOLD_COLUMNS = ["approach", "fold", "test_images", "val_images", "best_epoch", "threshold",
                "val_dice", "val_kept_m15"]
SUMMARY = ["approach", "test", "n", "dice", "dice_min", "kept_m15", "kept_m15_p10",
           "kept_m15_min", "dice_right", "dice_right_min", "dice_left", "dice_left_min",
           "kept_m15_right", "kept_m15_right_p10", "kept_m15_right_min", "kept_m15_left",
           "kept_m15_left_p10", "kept_m15_left_min", "kept_m50_right", "kept_m50_left"]
PER_IMAGE = ["approach", "test", "model", "stem", "dice", "kept_m15", "dice_right", "dice_left",
             "kept_m15_right", "kept_m15_left", "kept_m50_right", "kept_m50_left"]


def hull_per_lung(mask: np.ndarray, min_share: float = 0.05, lower: bool = False) -> np.ndarray:
    """The mask with each lung (a connected piece holding at least `min_share` of the mask's
    pixels) filled to its convex hull; smaller pieces are kept as they are. `lower`: only the
    hull's rows below the middle of the lung's height are filled (the upper half as it is)."""
    mask = np.asarray(mask).astype(bool)
    labels, count = ndimage.label(mask)
    out = mask.copy()
    total = mask.sum()
    for k in range(1, count + 1):
        piece = labels == k
        if piece.sum() < min_share * total:
            continue
        ys, xs = np.nonzero(piece)
        points = np.column_stack([xs, ys]).astype(float)
        try:
            hull = ConvexHull(points)
        except QhullError:       # a line or a point: nothing to fill
            continue
        canvas = Image.new("1", (mask.shape[1], mask.shape[0]), 0)
        ImageDraw.Draw(canvas).polygon([tuple(points[v]) for v in hull.vertices], fill=1)
        filled = np.array(canvas, dtype=bool)
        if lower:
            filled[: (ys.min() + ys.max() + 1) // 2] = False
        out |= filled
    return out


def source_folds(meta: Path, stems: list[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Fold per stem, whole sources (meta.csv `image_url`, the stem where empty) to one fold:
    sources largest first (seeded order among equal sizes), each to the fold with the fewest
    images so far."""
    with open(meta, newline="") as handle:
        source = {r["stem"]: (r.get("image_url") or r["stem"]) for r in csv.DictReader(handle)}
    missing = [s for s in stems if s not in source]
    if missing:
        raise SystemExit(f"error: {meta}: no row for {missing[:5]}")
    groups: dict[str, list[str]] = {}
    for stem in sorted(stems):
        groups.setdefault(source[stem], []).append(stem)
    names = sorted(groups)
    rank = np.random.default_rng(seed).permutation(len(names))
    order = sorted(range(len(names)), key=lambda i: (-len(groups[names[i]]), rank[i]))
    sizes, fold_of = [0] * folds, {}
    for i in order:
        k = min(range(folds), key=lambda f: (sizes[f], f))
        sizes[k] += len(groups[names[i]])
        fold_of.update({s: k for s in groups[names[i]]})
    return fold_of


def write_parts(path: Path, rows: list[list[str]], facts: dict) -> None:
    """A part split file (`stem, dataset, part`) with its done_split.json. One written already is
    kept when it holds the same rows, and refused when it does not (covid_dev's films or folds
    changed under the runs that trained on it)."""
    if (path.parent / SPLIT).is_file():
        read_done(path.parent, SPLIT, "split")
        held = [[r["stem"], r["dataset"], r["part"]] for r in read_csv(path)]
        if sorted(held) != sorted(rows):
            raise SystemExit(f"{path}: holds other rows than these films and folds give now; "
                             "use another --out, or remove its folder and the runs trained on it")
        return
    write_csv(path, ["stem", "dataset", "part"], rows)
    write_done(path.parent, facts, [path.name], done=SPLIT)


THREADS = {"n": 1}    # --threads, for the subprocesses


def run(module: str, *argv: str) -> None:
    """`python -m module argv` with --threads threads (OMP_NUM_THREADS), failing loudly."""
    print(f"[covid_extent] python -m {module} {' '.join(argv)}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS["n"])}
    subprocess.run([sys.executable, "-m", module, *argv], check=True, env=env)


def copy_flags(args) -> list[str]:
    """`--augment <kinds> --augment-copies N` of the training copies (none with 0 copies)."""
    return (["--augment", *args.augment, "--augment-copies", str(args.augment_copies)]
            if args.augment_copies else [])


def seeded(recipe: list[str], seed: int) -> list[str]:
    """`recipe` with its `--seed` replaced by `seed` (the training seed; the folds keep theirs)."""
    recipe = [*recipe]
    recipe[recipe.index("--seed") + 1] = str(seed)
    return recipe


def train_flags(args) -> list[str]:
    """The fine-tuning flags beside RECIPE: epochs, patience, copies, validation prompt."""
    return [*copy_flags(args), "--patience", str(args.patience), "--epochs", str(args.epochs),
            "--val-prompt", args.val_prompt]


def run_suffix(args) -> str:
    """Suffix of the run folders' names for settings other than the defaults (none for them, so
    runs of the default settings keep their folder), e.g. `-e20-p3-c0-vprior`,
    `-aopacity+whiteout`, `-e20-p3-s1` (training seed 1)."""
    parts = [f"{key}{getattr(args, name)}" for key, name in
             (("e", "epochs"), ("p", "patience"), ("c", "augment_copies"), ("v", "val_prompt"))
             if getattr(args, name) != DEFAULTS[name]]
    if list(getattr(args, "augment", DEFAULTS["augment"])) != DEFAULTS["augment"]:
        parts.append("a" + "+".join(args.augment))
    if getattr(args, "seed", DEFAULTS["seed"]) != DEFAULTS["seed"]:
        parts.append(f"s{args.seed}")
    return "".join("-" + p for p in parts)


def encoder_suffix(args) -> str:
    """Suffix that an encoder-trained run adds to its decoder-only run's folder name: `-enc<N>`,
    then `-lr<LR>`, `-p<P>` and `-vprior` for settings other than the defaults."""
    extra = "".join(f"-{key}{getattr(args, name):g}" for key, name in
                    (("lr", "encoder_lr"), ("p", "encoder_patience"))
                    if getattr(args, name) != ENCODER_DEFAULTS[name])
    if args.encoder_val_prompt != ENCODER_DEFAULTS["encoder_val_prompt"]:
        extra += f"-v{args.encoder_val_prompt}"
    return f"-enc{args.encoder_epochs}{extra}"


def encoder_recipe(start: Path, args) -> list[str]:
    """RECIPE for training the image encoder and the mask decoder from a decoder-only run's best.pt
    (its config read from the file), in bf16, with the encoder stage's epochs, patience and lr."""
    recipe = seeded(RECIPE, getattr(args, "seed", DEFAULTS["seed"]))
    for flag, value in (("--checkpoint", str(start / "best.pt")), ("--train", "all"),
                        ("--precision", "bf16")):
        recipe[recipe.index(flag) + 1] = value
    return [*recipe, "--config", "lite", *copy_flags(args),
            "--patience", str(args.encoder_patience),
            "--epochs", str(args.encoder_epochs), "--lr", f"{args.encoder_lr:g}",
            "--val-prompt", args.encoder_val_prompt]


def experiment_parser(prog: str, doc: str, out_help: str) -> Parser:
    """The flags every covid_dev experiment has: --lungseg, --out, --tag (the tables' suffix) and
    --threads."""
    parser = Parser(prog=f"python -m {prog}", description=doc,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lungseg", default="../shared/data/lungseg",
                        help="folder holding montgomery/ and covid_dev/")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--tag", default="",
                        help="suffix of the tables' names, e.g. for other scoring settings on the "
                             "same runs")
    parser.add_argument("--threads", type=int_range(1), default=1,
                        help="torch threads of this process and of the fine-tuning subprocesses")
    return parser


def lung_sets(lungseg: Path) -> tuple[Path, Path] | None:
    """(montgomery/, covid_dev/) under `lungseg`; None, saying so, when either is missing (the
    covid_dev experiments skip without the real data)."""
    mont, covid = lungseg / "montgomery", lungseg / "covid_dev"
    if not mont.is_dir() or not covid.is_dir():
        print(f"skip: {mont} or {covid} not found")
        return None
    return mont, covid


def add_keep_largest(parser: Parser, default: int) -> None:
    """--keep-largest N: the clean-up after the holes are filled (cxrseg.predict --keep-largest)."""
    parser.add_argument("--keep-largest", type=int_range(0, 16), default=default,
                        help="keep only the N largest pieces of every mask after the holes are "
                             "filled (0: all; cxrseg.predict --keep-largest)")


def start(parser: Parser, argv, check=None
          ) -> tuple[argparse.Namespace, float, Path, Path, Path] | None:
    """Parse argv (`check(args)`: a message for parser.error, or None), set --threads (this
    process; the fine-tuning subprocesses through `run`), then (args, the start time, OUT,
    montgomery/, covid_dev/); None when the lung sets are missing."""
    args = parser.parse_args(argv)
    problem = check(args) if check is not None else None
    if problem:
        parser.error(problem)
    torch.set_num_threads(args.threads)
    THREADS["n"] = args.threads
    started = time.time()
    found = lung_sets(Path(args.lungseg))
    return None if found is None else (args, started, Path(args.out), *found)


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """`rows` under `columns` as a Markdown table on stdout."""
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def write_tables(out: Path, name: str, args, started: float, summary: list[list[str]],
                 per_image: list[list[str]], fold_rows: list[list[str]], **facts) -> None:
    """The tables of a covid_dev experiment `name`: OUT/<name><TAG>.csv (SUMMARY), `_per_image.csv`
    (PER_IMAGE), `_folds.csv` (FOLD_COLUMNS) and run_<name><TAG>.json (with the folds' choices and
    `facts`); the summary printed as a Markdown table."""
    write_csv(out / f"{name}{args.tag}.csv", SUMMARY, summary)
    write_csv(out / f"{name}{args.tag}_per_image.csv", PER_IMAGE, per_image)
    write_csv(out / f"{name}{args.tag}_folds.csv", FOLD_COLUMNS, fold_rows)
    write_run_json(out, args, name=f"run_{name}{args.tag}.json", seconds=time.time() - started,
                   fold_choices=[dict(zip(FOLD_COLUMNS, r)) for r in fold_rows], **facts)
    print_table(SUMMARY, summary)


def finetune(out: Path, data: list[str], splits: Path, flags: list[str], cache: Path | None,
             recipe: list[str] = RECIPE) -> Path:
    """A cxrseg.finetune run into `out` unless it is done; `cache`: the embedding cache (None for
    an encoder-trained run, which cannot use one). A finished run is reused only when it is the
    run these arguments make from today's files (`cxrseg.finetune.check_finished`); otherwise
    this stops, naming the file, and leaves the run as it is."""
    sets = [f for d in data for f in ("--data", d)]
    caching = ["--cache-dir", str(cache)] if cache is not None else ["--no-cache"]
    argv = [*sets, "--splits", str(splits), *recipe, *flags, *caching, "--out", str(out)]
    if (out / "done_finetune.json").is_file():
        try:
            check_finished(argv)
        except USER_ERRORS as error:
            raise SystemExit(f"error: {out} cannot be reused: {error}; remove it, or give another "
                             "--out or --tag") from None
        return out
    started = time.time()
    run("cxrseg.finetune", *argv)
    print(f"[covid_extent] {out.name}: fine-tuned in {time.time() - started:.0f} s", flush=True)
    return out


def best_epoch(folder: Path) -> str:
    """The best epoch done_finetune.json records ('' when it has none)."""
    with open(folder / "done_finetune.json") as handle:
        return str(json.load(handle).get("best_epoch", ""))


def summarize(approach: str, test: str, scores: np.ndarray) -> list[str]:
    """One SUMMARY row from score_masks rows ((N, 2) or (N, 8) with per-lung columns)."""
    def stat(col, how):
        if scores.shape[1] <= col:
            return ""
        v = scores[:, col]
        return f"{ {'mean': v.mean(), 'min': v.min(), 'p10': np.percentile(v, 10)}[how]:.4f}"
    spec = [(0, "mean"), (0, "min"), (1, "mean"), (1, "p10"), (1, "min"),
            (2, "mean"), (2, "min"), (3, "mean"), (3, "min"),
            (4, "mean"), (4, "p10"), (4, "min"), (5, "mean"), (5, "p10"), (5, "min"),
            (6, "mean"), (7, "mean")]
    return [approach, test, str(len(scores))] + [stat(c, h) for c, h in spec]


def flags_conflict(args) -> str | None:
    """The flags that cannot go together: the mirrored pass has no widened refine box."""
    if args.flip and args.refine_margin:
        return "--flip and --refine-margin cannot be combined"
    return None


def main(argv=None) -> None:
    parser = experiment_parser("experiments.covid_extent", __doc__,
                               "work folder (runs, embeddings, tables)")
    parser.add_argument("--folds", type=int_range(3), default=5)
    parser.add_argument("--epochs", type=int_range(1), default=DEFAULTS["epochs"],
                        help="maximum fine-tuning epochs")
    parser.add_argument("--patience", type=int_range(1), default=DEFAULTS["patience"],
                        help="early stopping: stop after this many epochs without a lower loss "
                             "on the run's validation part (a covid_dev run's: fold k+1); the "
                             "best epoch is kept")
    parser.add_argument("--augment-copies", type=int_range(0, 16),
                        default=DEFAULTS["augment_copies"],
                        help="augmented copies per training image (0: none)")
    parser.add_argument("--augment", nargs="+", choices=AUGMENTATIONS,
                        default=DEFAULTS["augment"],
                        help="the augmentations of each copy, applied in order "
                             "(cxrseg.finetune --augment; default: opacity)")
    parser.add_argument("--threshold", type=float_range(0, 1, lo_open=True, hi_open=True),
                        default=0.4, help="mask threshold of every approach")
    parser.add_argument("--thresholds", type=float_range(0, 1, lo_open=True, hi_open=True),
                        nargs="+", default=None,
                        help="candidate thresholds: adds the approaches `covid-cv@val` (and "
                             "`joint-cv@val`), each fold's model at the candidate chosen on its "
                             "validation part (fold k+1) by --threshold-tolerance")
    parser.add_argument("--threshold-tolerance", type=float_range(0, 1), default=0.0,
                        help="the lowest candidate whose mean validation Dice is within this of "
                             "the best candidate's (0: the best)")
    parser.add_argument("--val-prompt", choices=("gt", "prior"), default=DEFAULTS["val_prompt"],
                        help="the prompt of the validation loss that stops the decoder-only "
                             "runs (cxrseg.finetune --val-prompt)")
    parser.add_argument("--refine", type=int_range(0), default=1)
    parser.add_argument("--seed", type=int_range(0), default=DEFAULTS["seed"],
                        help="training seed of every fine-tuning (opacity copies, batches, "
                             "prompts; run folders get `-s<N>` for seeds other than 0); the "
                             "folds are the same for every seed")
    add_keep_largest(parser, 0)
    parser.add_argument("--refine-margin", type=float_range(0, 1), default=0.0,
                        help="each refine pass's box widened by this share of its width and "
                             "height (0: the box around the previous pass's mask)")
    parser.add_argument("--refine-margin-side", choices=MARGIN_SIDES, default="all",
                        help="widen the refine box on every side, or its lower edge only")
    parser.add_argument("--joint", action="store_true",
                        help="also Montgomery + covid_dev joint training per fold")
    parser.add_argument("--hull-part", choices=("whole", "lower"), default="whole",
                        help="the `+hull` approaches fill each lung's whole convex hull or only "
                             "its lower half")
    parser.add_argument("--flip", action="store_true",
                        help="test-time flip: the mean of the probabilities of the film and of "
                             "its mirror image (mirrored back), then the threshold")
    parser.add_argument("--no-recipe", action="store_true",
                        help="leave out the Montgomery-trained recipe (and its hull)")
    parser.add_argument("--encoder-epochs", type=int_range(0), default=0,
                        help="adds `covid-cv-enc`: each covid fold's decoder-only model trained "
                             "further, image encoder + mask decoder, for at most this many "
                             "epochs, in bf16 (0: off)")
    parser.add_argument("--encoder-lr", type=float_range(0, lo_open=True),
                        default=ENCODER_DEFAULTS["encoder_lr"],
                        help="Adam learning rate of the encoder-trained runs")
    parser.add_argument("--encoder-patience", type=int_range(1),
                        default=ENCODER_DEFAULTS["encoder_patience"],
                        help="early stopping patience of the encoder-trained runs")
    parser.add_argument("--encoder-val-prompt", choices=("gt", "prior"),
                        default=ENCODER_DEFAULTS["encoder_val_prompt"],
                        help="the box of the encoder-trained runs' validation losses (their "
                             "early stopping): the ground truth's, or the prior box that "
                             "automatic prompting starts from")
    begun = start(parser, argv, flags_conflict)
    if begun is None:
        return
    args, started, out, mont, covid = begun
    cache = out / "emb"
    mont_data = f"montgomery={mont}/images:{mont}/masks"
    covid_data = f"covid={covid}/images:{covid}/masks"
    flags, suffix = train_flags(args), run_suffix(args)
    recipe = seeded(RECIPE, args.seed)

    # Montgomery: the recipe's split and fine-tune (the field convention).
    mont_splits = out / "montgomery" / "splits.csv"
    if not (mont_splits.parent / SPLIT).is_file():
        run("cxrseg.split", "--data", mont_data, "--out", str(mont_splits), "--seed", "0")
    models = {}
    if not args.no_recipe:
        models["recipe"] = [finetune(out / "runs" / f"montgomery{suffix}", [mont_data],
                                     mont_splits, flags, cache, recipe)]

    # covid_dev: folds grouped by source; part split files per fold.
    c_stems, c_imgs, c_masks = load_set(f"{covid}/images", f"{covid}/masks")
    c_lungs = load_lungs(f"{covid}/images", f"{covid}/masks")
    fold_of = source_folds(covid / "meta.csv", c_stems, args.folds)
    mont_rows = [[r["stem"], "montgomery", r["part"]] for r in read_csv(mont_splits)]
    cv, joint, enc = [], [], []
    for k in range(args.folds):
        def part(stem, k=k):
            f = fold_of[stem]
            return "test" if f == k else "val" if f == (k + 1) % args.folds else "train"
        rows = [[s, "covid", part(s)] for s in c_stems]
        facts = {"folds": args.folds, "fold": k, "grouped_by": "meta.csv image_url"}
        write_parts(out / "covid" / f"fold{k}" / "splits.csv", rows, facts)
        # covid_dev's masks draw the whole lung, so its segmenters are `full`
        cv.append(finetune(out / "runs" / f"covid-fold{k}{suffix}", [covid_data],
                           out / "covid" / f"fold{k}" / "splits.csv", [*flags, *FULL], cache,
                           recipe))
        if args.encoder_epochs:
            enc.append(finetune(out / "runs" / f"{cv[-1].name}{encoder_suffix(args)}",
                                [covid_data], out / "covid" / f"fold{k}" / "splits.csv", FULL,
                                None, encoder_recipe(cv[-1], args)))
        if args.joint:
            write_parts(out / "joint" / f"fold{k}" / "splits.csv", mont_rows + rows, facts)
            joint.append(finetune(out / "runs" / f"joint-fold{k}{suffix}",
                                  [mont_data, covid_data],
                                  out / "joint" / f"fold{k}" / "splits.csv", flags, cache,
                                  recipe))
    models["covid-cv"] = cv
    if enc:
        models["covid-cv-enc"] = enc
    if joint:
        models["joint-cv"] = joint

    # Scoring.
    c_emb = embed(c_stems, c_imgs, cache)
    m_stems, m_imgs, m_masks = load_set(f"{mont}/images", f"{mont}/masks", str(mont_splits))
    m_emb = embed(m_stems, m_imgs, cache)
    if args.flip:
        c_mirror = [np.ascontiguousarray(np.fliplr(i)) for i in c_imgs]
        m_mirror = [np.ascontiguousarray(np.fliplr(i)) for i in m_imgs]
        c_emb_f = embed([s + "_mirror" for s in c_stems], c_mirror, cache)
        m_emb_f = embed([s + "_mirror" for s in m_stems], m_mirror, cache)
        c_emb = (c_emb, c_emb_f, c_mirror)
        m_emb = (m_emb, m_emb_f, m_mirror)
    fold = np.array([fold_of[s] for s in c_stems])

    def own_embeddings(folder, stems, imgs):
        """Embeddings of the films by an encoder-trained run's own encoder (float32, cached in
        <run>/emb), with --flip those of the mirrored films too, in rows_of's form."""
        model = load_run(str(folder))[0]
        emb = embeddings_for(model, imgs, stems, DEVICE, cache_dir=folder / "emb")
        if not args.flip:
            return emb
        mirror = [np.ascontiguousarray(np.fliplr(i)) for i in imgs]
        return emb, embeddings_for(model, mirror, [s + "_mirror" for s in stems], DEVICE,
                                   cache_dir=folder / "emb"), mirror

    own = {}     # encoder-trained run -> its embeddings of covid_dev (by row) and Montgomery

    def embeddings_of(folder, k):
        """The embeddings fold k's model scores on: (covid_dev rows -> embeddings, Montgomery's
        test part). The base LiteMedSAM's, cached in OUT/emb, for every decoder-only run; an
        encoder-trained run's own for its validation and test folds and Montgomery."""
        if folder not in enc:
            return (lambda idx: rows_of(c_emb, idx)), m_emb
        if folder not in own:
            rows = np.flatnonzero((fold == k) | (fold == (k + 1) % args.folds))
            started = time.time()
            c_own = own_embeddings(folder, [c_stems[i] for i in rows], [c_imgs[i] for i in rows])
            own[folder] = ({int(i): j for j, i in enumerate(rows)}, c_own,
                           own_embeddings(folder, m_stems, m_imgs))
            print(f"[covid_extent] {folder.name}: own embeddings in {time.time() - started:.0f} s",
                  flush=True)
        row_of, c_own, m_own = own[folder]
        return (lambda idx: rows_of(c_own, [row_of[int(i)] for i in idx])), m_own

    def hull(mask):
        return hull_per_lung(mask, lower=args.hull_part == "lower")

    def rows_of(emb, idx):
        """Embeddings (with --flip: embeddings, mirrored ones, mirrored films) of rows idx."""
        if not args.flip:
            return emb[idx]
        return emb[0][idx], emb[1][idx], [emb[2][i] for i in idx]
    summary, per_image, fold_rows = [], [], []

    def predict(folder, emb, imgs, masks, threshold):
        model, prior = load_run(str(folder))
        if not args.flip:
            return predict_masks(model, prior, emb, imgs, masks, refine=args.refine,
                                 threshold=threshold, cleans=[(True, args.keep_largest)],
                                 margin=args.refine_margin, side=args.refine_margin_side)[0]
        emb, emb_f, mirror = emb
        probs = segment(model, emb, imgs, DEVICE, "box", prior, refine=args.refine,
                        threshold=threshold)[1]
        probs_f = segment(model, emb_f, mirror, DEVICE, "box", prior, refine=args.refine,
                          threshold=threshold)[1]
        return [clean_mask((p.numpy() + np.fliplr(q.numpy())) / 2 >= threshold, True,
                           args.keep_largest)
                .astype(bool) for p, q in zip(probs, probs_f)]

    def fold_threshold(approach, k, folder):
        """The fold's threshold: --threshold, or with --thresholds the one chosen on the fold's
        validation part (fold k+1 of covid_dev)."""
        if not approach.endswith("@val"):
            return args.threshold
        val = np.flatnonzero(fold == (k + 1) % args.folds)
        c_rows = embeddings_of(folder, k)[0]
        dice, kept = {}, {}
        for t in sorted(set(args.thresholds)):
            s = score_masks(predict(folder, c_rows(val), [c_imgs[i] for i in val],
                                    [c_masks[i] for i in val], t), [c_masks[i] for i in val])
            dice[t], kept[t] = s[:, 0].mean(), s[:, 1].mean()
        chosen = choose_threshold(dice, args.threshold_tolerance)
        print(f"[covid_extent] {approach} fold {k}: validation Dice "
              + " ".join(f"{t:g}:{d:.4f}" for t, d in dice.items()) + f" -> {chosen:g}",
              flush=True)
        fold_rows.append([approach, str(k), str(int((fold == k).sum())), str(len(val)),
                          best_epoch(folder), f"{chosen:g}", f"{dice[chosen]:.4f}",
                          f"{kept[chosen]:.4f}"])
        return chosen

    variants = [(name, name, folders) for name, folders in models.items()]
    if args.thresholds:
        variants += [(name + "@val", name, folders) for name, folders in models.items()
                     if len(folders) > 1]
    for approach, base, folders in variants:
        c_pred = [None] * len(c_stems)
        v_pred = [None] * len(c_stems)
        m_scores = {False: [], True: []}
        for k, folder in enumerate(folders):
            threshold = fold_threshold(approach, k, folder) if len(folders) > 1 else args.threshold
            c_rows, m_rows = embeddings_of(folder, k)
            if len(folders) > 1 and not approach.endswith("@val"):
                fold_rows.append([approach, str(k), str(int((fold == k).sum())),
                                  str(int((fold == (k + 1) % args.folds).sum())),
                                  best_epoch(folder), f"{threshold:g}", "", ""])
            held = np.arange(len(c_stems)) if len(folders) == 1 else np.flatnonzero(fold == k)
            preds = predict(folder, c_rows(held), [c_imgs[i] for i in held],
                            [c_masks[i] for i in held], threshold)
            for i, p in zip(held, preds):
                c_pred[i] = (p, folder.name)
            if len(folders) > 1:      # the fold's validation part, as the model scores it
                val = np.flatnonzero(fold == (k + 1) % args.folds)
                preds = predict(folder, c_rows(val), [c_imgs[i] for i in val],
                                [c_masks[i] for i in val], threshold)
                for i, p in zip(val, preds):
                    v_pred[i] = (p, folder.name)
            m_pred = predict(folder, m_rows, m_imgs, m_masks, threshold)
            for with_hull in (False, True):
                ps = [hull(p) for p in m_pred] if with_hull else m_pred
                s = score_masks(ps, m_masks)
                m_scores[with_hull].append(s)
                per_image += [[approach + ("+hull" if with_hull else ""), "montgomery-test",
                               folder.name, stem, *[f"{v:.4f}" for v in row], *[""] * 6]
                              for stem, row in zip(m_stems, s)]
        hulls = (False,) if base == "joint-cv" else (False, True)
        for with_hull in hulls:
            name = approach + ("+hull" if with_hull else "")
            sets = [("covid_dev", c_pred)] + ([("covid_dev-val", v_pred)] if len(folders) > 1
                                              else [])
            for test, pred in sets:
                preds = [hull(p) if with_hull else p for p, _ in pred]
                s = score_masks(preds, c_masks, c_lungs)
                per_image += [[name, test, model, stem, *[f"{v:.4f}" for v in row]]
                              for (_, model), stem, row in zip(pred, c_stems, s)]
                summary.append(summarize(name, test, s))
                print(" | ".join(summary[-1]), f"({time.time() - started:.0f} s)", flush=True)
            summary.append(summarize(name, "montgomery-test", np.vstack(m_scores[with_hull])))
            print(" | ".join(summary[-1]), flush=True)
    write_tables(out, "covid_extent", args, started, summary, per_image, fold_rows,
                 folds={s: int(fold_of[s]) for s in c_stems})
    print_table(FOLD_COLUMNS, fold_rows)


if __name__ == "__main__":
    main()
