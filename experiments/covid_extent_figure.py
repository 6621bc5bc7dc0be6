"""Figure of experiments.covid_extent: the covid_dev films whose M-15 keeps least of the true lung
under one approach (default the Montgomery-trained recipe), drawn with that approach's mask and
another's (default covid-cv, the model each film was held out from). Per film two panels: the
image with the true whole-lung outline (green) and the predicted mask's outline (red). Reads the
run's covid_extent_per_image.csv and its models; embeddings come from OUT/emb. The figure shows
the shared films: it stays in the work folder, out of the repository.

  python -m experiments.covid_extent_figure --lungseg ../shared/data/lungseg \\
      --out work/covid-extent --figure work/covid-extent/worst.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import read_csv
from experiments.seg_bench_common import embed, load_run, load_set, predict_masks


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.covid_extent_figure", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lungseg", default="../shared/data/lungseg")
    parser.add_argument("--out", required=True, help="experiments.covid_extent's work folder")
    parser.add_argument("--before", default="recipe")
    parser.add_argument("--after", default="covid-cv")
    parser.add_argument("--worst", type=int_range(1), default=5)
    parser.add_argument("--threshold", type=float, default=0.4)
    parser.add_argument("--refine", type=int_range(0), default=1)
    parser.add_argument("--figure", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out, covid = Path(args.out), Path(args.lungseg) / "covid_dev"
    rows = [r for r in read_csv(out / "covid_extent_per_image.csv") if r["test"] == "covid_dev"]
    model_of = {(r["approach"], r["stem"]): r["model"] for r in rows}
    kept = {(r["approach"], r["stem"]): float(r["kept_m15"]) for r in rows}
    worst = sorted((r for r in rows if r["approach"] == args.before),
                   key=lambda r: float(r["kept_m15"]))[:args.worst]
    stems, imgs, masks = load_set(f"{covid}/images", f"{covid}/masks")
    emb = embed(stems, imgs, out / "emb")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(worst), 2, figsize=(7, 3.4 * len(worst)), squeeze=False)
    for row, r in zip(axes, worst):
        i = stems.index(r["stem"])
        for ax, approach in zip(row, (args.before, args.after)):
            model, prior = load_run(str(out / "runs" / model_of[(approach, r["stem"])]))
            pred = predict_masks(model, prior, emb[i:i + 1], [imgs[i]], [masks[i]],
                                 refine=args.refine, threshold=args.threshold,
                                 cleans=[(True, 0)])[0][0]
            ax.imshow(imgs[i], cmap="gray")
            ax.contour(masks[i], levels=[0.5], colors="lime", linewidths=1)
            ax.contour(pred.astype(np.uint8), levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{approach}: M-15 keeps {kept[(approach, r['stem'])]:.2f}\n"
                         f"{r['stem'][:40]}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=80)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
