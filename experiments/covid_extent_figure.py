"""Figure of experiments.covid_extent: the covid_dev films whose M-15 keeps least of the true
(whole) lung under a `field` segmenter, each drawn with that segmenter's mask ("before") and with
the mask of the `full` segmenter it was held out from ("after", at the threshold its fold chose on
validation; the film encoded by that model's own image encoder: the base LiteMedSAM's for a
decoder-only run, its own for an encoder-trained one). Per film two panels: the image with the
true whole-lung outline (green) and the predicted mask's outline (red), titled with the share of
the lung that M-15 keeps.

`--before` is any finished decoder-only LiteMedSAM fine-tuning folder (best.pt, prior.json) on
`field` masks; `--out` and `--tag` name an experiments.covid_extent run (its per-image and folds
tables, its fold models under runs/, its embedding cache in emb/).

  python -m experiments.covid_extent_figure --lungseg ../shared/data/lungseg \\
      --out work/covid-extent --tag _e20p3_tol005 --after covid-cv@val \\
      --before work/mont_seg --before-threshold 0.5 --figure docs/figures/extent_worst.png
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import atomic_path, read_csv
from cxrseg.engine import embeddings_for
from experiments.seg_bench_common import (DEVICE, embed, load_run, load_set, predict_masks,
                                          score_masks)


def after_models(out: Path, tag: str, approach: str) -> dict[str, tuple[str, float]]:
    """stem -> (fold model folder, the threshold that fold chose on validation) of `approach` in
    the run `tag`, for every covid_dev film scored on its held-out fold."""
    folds = {int(r["fold"]): float(r["threshold"])
             for r in read_csv(out / f"covid_extent{tag}_folds.csv") if r["approach"] == approach}
    models = {}
    for r in read_csv(out / f"covid_extent{tag}_per_image.csv"):
        if r["approach"] == approach and r["test"] == "covid_dev":
            fold = int(re.search(r"fold(\d+)", r["model"]).group(1))
            models[r["stem"]] = (r["model"], folds[fold])
    if not models:
        raise SystemExit(f"error: {out}: no covid_dev rows of {approach!r} in run {tag!r}")
    return models


def run_keep_largest(out: Path, tag: str) -> int:
    """The run's `--keep-largest` (0 for a run that predates the flag)."""
    with open(out / f"run_covid_extent{tag}.json") as handle:
        return int(json.load(handle)["arguments"].get("keep_largest", 0))


def after_mask(out: Path, run: str, threshold: float, image: np.ndarray, mask: np.ndarray,
               stem: str, refine: int, keep_largest: int = 0) -> np.ndarray:
    """(H, W) bool mask of one film by the fold model `run` of an experiments.covid_extent work
    folder, the film encoded by the model's own image encoder (the base LiteMedSAM's unless its
    encoder was trained; cached in the run's emb/), holes filled, the `keep_largest` largest
    pieces kept (0: all)."""
    model, prior = load_run(str(out / "runs" / run))
    own = embeddings_for(model, [image], [stem], DEVICE, cache_dir=out / "runs" / run / "emb")
    return predict_masks(model, prior, own, [image], [mask], refine=refine,
                         threshold=threshold, cleans=[(True, keep_largest)])[0][0]


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.covid_extent_figure", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lungseg", default="../shared/data/lungseg")
    parser.add_argument("--out", required=True, help="experiments.covid_extent's work folder")
    parser.add_argument("--tag", default="", help="the covid_extent run (its --tag)")
    parser.add_argument("--after", default="covid-cv@val", help="the run's `full` approach")
    parser.add_argument("--before", required=True, help="a `field` fine-tuning folder")
    parser.add_argument("--before-threshold", type=float_range(0, 1, lo_open=True, hi_open=True),
                        default=0.5)
    parser.add_argument("--worst", type=int_range(1), default=5)
    parser.add_argument("--refine", type=int_range(0), default=1)
    parser.add_argument("--figure", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out, covid = Path(args.out), Path(args.lungseg) / "covid_dev"
    stems, imgs, masks = load_set(f"{covid}/images", f"{covid}/masks")
    emb = embed(stems, imgs, out / "emb")
    model, prior = load_run(args.before)
    before = predict_masks(model, prior, emb, imgs, masks, refine=args.refine,
                           threshold=args.before_threshold, cleans=[(True, 0)])[0]
    kept_before = score_masks(before, masks)[:, 1]
    after_of = after_models(out, args.tag, args.after)
    worst = np.argsort(kept_before, kind="stable")[:args.worst]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(worst), 2, figsize=(6.4, 3.1 * len(worst)), squeeze=False)
    for row, i in zip(axes, worst):
        run, threshold = after_of[stems[i]]
        after = after_mask(out, run, threshold, imgs[i], masks[i], stems[i], args.refine,
                           run_keep_largest(out, args.tag))
        kept_after = score_masks([after], [masks[i]])[0, 1]
        for ax, pred, title in ((row[0], before[i], f"field: M-15 keeps {kept_before[i]:.2f}"),
                                (row[1], after, f"full: M-15 keeps {kept_after:.2f}")):
            ax.imshow(imgs[i], cmap="gray")
            ax.contour(masks[i], levels=[0.5], colors="lime", linewidths=1)
            ax.contour(pred.astype(np.uint8), levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{title}\n{stems[i][:44]}", fontsize=7)
            ax.axis("off")
        print(f"{stems[i]}: M-15 keeps {kept_before[i]:.3f} (field) -> {kept_after:.3f} (full, "
              f"{run}, threshold {threshold:g})")
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.figure) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
