"""Which convention each covid_dev annotation follows: per film, the Dice of a `field` segmenter's
mask and of a `full` approach's mask (an experiments.covid_extent run) against the annotation of
the left lung, where the two conventions differ most (the field stops at the heart border). A
left lung whose annotation the `field` mask matches better is drawn like a visible lung field
although the set's convention is the whole lung. Prints those films and the `full` approach's
mean Dice with and without them;
writes one row per film to `--table`, and with `--figure` draws those films: the annotation
(green), the `field` mask (blue) and the `full` mask (red).

The run and segmenter flags are experiments.covid_runs' (each film's `full` mask by the fold
model it was held out from, at that fold's validation threshold).

  python -m experiments.covid_convention --lungseg ../shared/data/lungseg \\
      --out work/covid-extent --tag _e20p3_tol005_enc6lr1vp --full covid-cv-enc@val \\
      --field work/mont_seg --table work/covid-extent/conventions.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import read_csv, write_csv
from experiments.covid_runs import (add_run_arguments, field_masks, full_mask, outline_panel,
                                   save_figure)
from experiments.seg_bench_common import load_lungs, score_masks

COLUMNS = ["stem", "fold_model", "full_dice", "field_dice", "full_dice_right",
           "field_dice_right", "full_dice_left", "field_dice_left", "left_like"]


def closer(field_dice: float, full_dice: float) -> str:
    """The convention an annotation follows by which mask matches it better (ties: `full`, the
    set's own)."""
    return "field" if field_dice > full_dice else "full"


def full_scores(out: Path, tag: str, approach: str) -> dict[str, dict]:
    """stem -> the run's per-image row of `approach` on covid_dev (dice, dice_right, dice_left)."""
    rows = {r["stem"]: r for r in read_csv(out / f"covid_extent{tag}_per_image.csv")
            if r["approach"] == approach and r["test"] == "covid_dev"}
    if not rows:
        raise SystemExit(f"error: {out}: no covid_dev rows of {approach!r} in run {tag!r}")
    return rows


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.covid_convention", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--table", required=True, help="CSV to write, one row per film")
    parser.add_argument("--figure", help="PNG of the films with a field-like annotation")
    args = parser.parse_args(argv)
    covid = Path(args.lungseg) / "covid_dev"
    lungs = load_lungs(f"{covid}/images", f"{covid}/masks")
    if lungs is None:
        raise SystemExit(f"error: {covid}: no per-lung masks (masks_right/, masks_left/)")
    full = full_scores(Path(args.out), args.tag, args.full)
    stems, imgs, masks, field = field_masks(args)
    missing = [s for s in stems if s not in full]
    if missing:
        raise SystemExit(f"error: run {args.tag!r} has no {args.full!r} row for {missing[:3]}")
    scores = score_masks(field, masks, lungs)      # dice, kept, dice_right, dice_left, ...

    rows, field_like = [], []
    for i, stem in enumerate(stems):
        f = full[stem]
        like = closer(scores[i, 3], float(f["dice_left"]))
        rows.append([stem, f["model"], f["dice"], f"{scores[i, 0]:.4f}",
                     f["dice_right"], f"{scores[i, 2]:.4f}", f["dice_left"],
                     f"{scores[i, 3]:.4f}", like])
        if like == "field":
            field_like.append(i)
    write_csv(Path(args.table), COLUMNS, rows)

    dice = np.array([float(full[s]["dice"]) for s in stems])
    rest = np.setdiff1d(np.arange(len(stems)), field_like)
    print(f"left lung: the field mask matches the annotation better on {len(field_like)} of "
          f"{len(rows)} films")
    print(f"{args.full} Dice: all {len(stems)} films {dice.mean():.4f}; the "
          f"{len(field_like)} with a field-like left lung {dice[field_like].mean():.4f}; the "
          f"other {len(rest)} {dice[rest].mean():.4f}")
    print("\n| film | left-lung Dice, field mask | left-lung Dice, full mask | full Dice |\n"
          "|---|---|---|---|")
    for i in field_like:
        print(f"| `{stems[i]}` | {scores[i, 3]:.3f} | {float(full[stems[i]]['dice_left']):.3f} | "
              f"{dice[i]:.3f} |")
    if args.figure and field_like:
        draw(args, [stems[i] for i in field_like], [imgs[i] for i in field_like],
             [masks[i] for i in field_like], [field[i] for i in field_like])


def draw(args, stems, imgs, masks, field) -> None:
    """One panel per film: the annotation (green), the field mask (blue), the full mask (red)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(stems), figsize=(3.2 * len(stems), 3.6), squeeze=False)
    for ax, stem, img, mask, f in zip(axes[0], stems, imgs, masks, field):
        outline_panel(ax, img, [(mask, "lime"), (f, "deepskyblue"),
                                (full_mask(args, stem, img, mask), "red")], stem[:36])
    save_figure(fig, args.figure)


if __name__ == "__main__":
    main()
