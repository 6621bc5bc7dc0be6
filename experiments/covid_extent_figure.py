"""Figure of experiments.covid_extent: the covid_dev films whose M-15 keeps least of the true
(whole) lung under a `field` segmenter, each drawn with that segmenter's mask and with the mask of
the `full` fold model it was held out from (at the threshold its fold chose on validation; the
film encoded by that model's own image encoder: the base LiteMedSAM's for a decoder-only run, its
own for an encoder-trained one). Per film two panels: the image with the true whole-lung outline
(green) and the predicted mask's outline (red), titled with the share of the lung that M-15
keeps. The run and segmenter flags are experiments.covid_runs'.

  python -m experiments.covid_extent_figure --lungseg ../shared/data/lungseg \\
      --out work/covid-extent --tag _e20p3_tol005 --full covid-cv@val \\
      --field work/mont_seg --field-threshold 0.5 --figure docs/figures/extent_worst.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, int_range
from experiments.covid_runs import (add_run_arguments, field_masks, full_mask, full_models,
                                   outline_panel, save_figure)
from experiments.seg_bench_common import score_masks


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.covid_extent_figure", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--worst", type=int_range(1), default=5)
    parser.add_argument("--figure", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    stems, imgs, masks, field = field_masks(args)
    kept_field = score_masks(field, masks)[:, 1]
    models = full_models(Path(args.out), args.tag, args.full)
    worst = np.argsort(kept_field, kind="stable")[:args.worst]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(worst), 2, figsize=(6.4, 3.1 * len(worst)), squeeze=False)
    for row, i in zip(axes, worst):
        full = full_mask(args, stems[i], imgs[i], masks[i])
        kept_full = score_masks([full], [masks[i]])[0, 1]
        for ax, pred, title in ((row[0], field[i], f"field: M-15 keeps {kept_field[i]:.2f}"),
                                (row[1], full, f"full: M-15 keeps {kept_full:.2f}")):
            outline_panel(ax, imgs[i], [(masks[i], "lime"), (pred, "red")],
                          f"{title}\n{stems[i][:44]}")
        run, threshold = models[stems[i]]
        print(f"{stems[i]}: M-15 keeps {kept_field[i]:.3f} (field) -> {kept_full:.3f} (full, "
              f"{run}, threshold {threshold:g})")
    save_figure(fig, args.figure)


if __name__ == "__main__":
    main()
