"""Where a `full` segmenter draws more lung than covid_dev's annotation: the held-out films with
the lowest Dice among those whose lung its M-15 mask keeps (at least `--min-kept`), each with the
share of the annotated area the mask adds (`over`) and misses (`under`), drawn with the
annotation's outline (green) and the mask's (red). Masks are experiments.covid_runs.full_mask's:
each film by the fold model it was held out from, at its fold's threshold. `--conventions`
(experiments.covid_convention's table) leaves out the films whose left lung is drawn as a
visible field, which that script draws already.

  python -m experiments.covid_overdraw --lungseg ../shared/data/lungseg --out work/covid-extent \\
      --tag _e20p3_tol005_enc6lr1vp_k2 --full covid-cv-enc@val \\
      --conventions work/covid-extent/conventions.csv --figure docs/figures/covid_overdraw.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import read_csv
from experiments.covid_runs import full_mask, full_models, outline_panel, save_figure
from experiments.seg_bench_common import load_set, score_masks


def over_under(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(area the mask adds, area it misses), each as a share of the annotated area."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    area = max(int(truth.sum()), 1)
    return float((pred & ~truth).sum() / area), float((truth & ~pred).sum() / area)


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.covid_overdraw", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lungseg", default="../shared/data/lungseg")
    parser.add_argument("--out", required=True, help="experiments.covid_extent's work folder")
    parser.add_argument("--tag", default="", help="the covid_extent run (its --tag)")
    parser.add_argument("--full", default="covid-cv@val", help="the run's `full` approach")
    parser.add_argument("--refine", type=int_range(0), default=1)
    parser.add_argument("--count", type=int_range(1, 12), default=6)
    parser.add_argument("--min-kept", type=float_range(0, 1), default=0.98,
                        help="only films whose M-15 mask keeps at least this share of the lung")
    parser.add_argument("--conventions", default=None,
                        help="experiments.covid_convention's --table: leave out its `field` films")
    parser.add_argument("--figure", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    field_drawn = ({r["stem"] for r in read_csv(args.conventions) if r["left_like"] == "field"}
                   if args.conventions else set())
    covid = Path(args.lungseg) / "covid_dev"
    stems, imgs, masks = load_set(f"{covid}/images", f"{covid}/masks")
    wanted = set(full_models(Path(args.out), args.tag, args.full)) - field_drawn
    rows = []
    for i, stem in enumerate(stems):
        if stem in wanted:
            pred = full_mask(args, stem, imgs[i], masks[i])
            dice, kept = score_masks([pred], [masks[i]])[0]
            rows.append((dice, kept, i, pred))
    chosen = sorted((r for r in rows if r[1] >= args.min_kept), key=lambda r: r[0])[:args.count]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols, lines = 3, -(-len(chosen) // 3)
    fig, axes = plt.subplots(lines, cols, figsize=(9.6, 3.4 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (dice, kept, i, pred) in zip(axes.ravel(), chosen):
        over, under = over_under(pred, masks[i])
        outline_panel(ax, imgs[i], [(masks[i], "lime"), (pred, "red")],
                      f"Dice {dice:.3f}, adds {over:.0%}, misses {under:.1%}\n{stems[i][:44]}")
        print(f"{stems[i]}: Dice {dice:.4f}, M-15 keeps {kept:.4f}, adds {over:.3f}, "
              f"misses {under:.3f}")
    save_figure(fig, args.figure)


if __name__ == "__main__":
    main()
