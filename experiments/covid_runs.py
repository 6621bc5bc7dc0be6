"""Reading a finished experiments.covid_extent run, for the scripts that draw and analyse it
(covid_extent_figure, covid_convention): their shared flags, the covid_dev films with a `field`
segmenter's masks, and each film's mask by the `full` fold model it was held out from.

A run is `--out` (the work folder: per-image and folds tables, fold models under runs/, base
LiteMedSAM embeddings in emb/) and `--tag`; `--full` names its approach. `--field` is any finished
decoder-only LiteMedSAM fine-tuning folder (best.pt, prior.json) on `field` masks.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from cxrseg.engine import embeddings_for
from cxrstats.foundation.argtypes import float_range, int_range
from cxrstats.foundation.fileio import atomic_path, read_csv
from experiments.seg_bench_common import DEVICE, embed, load_run, load_set, predict_masks


def add_run_arguments(parser) -> None:
    """The flags naming the covid_extent run, its `full` approach and the `field` segmenter."""
    parser.add_argument("--lungseg", default="../shared/data/lungseg")
    parser.add_argument("--out", required=True, help="experiments.covid_extent's work folder")
    parser.add_argument("--tag", default="", help="the covid_extent run (its --tag)")
    parser.add_argument("--full", default="covid-cv@val", help="the run's `full` approach")
    parser.add_argument("--field", required=True, help="a `field` fine-tuning folder")
    parser.add_argument("--field-threshold", type=float_range(0, 1, lo_open=True, hi_open=True),
                        default=0.5)
    parser.add_argument("--refine", type=int_range(0), default=1,
                        help="refine passes after the prior box, both segmenters")


def field_masks(args) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(stems, images, true masks, the `field` segmenter's masks) of every covid_dev film: prior
    box + `--refine` passes at `--field-threshold`, holes filled, on the run's cached base
    embeddings. Sets one torch thread (the masks do not depend on it)."""
    torch.set_num_threads(1)
    covid = Path(args.lungseg) / "covid_dev"
    stems, imgs, masks = load_set(f"{covid}/images", f"{covid}/masks")
    model, prior = load_run(args.field)
    field = predict_masks(model, prior, embed(stems, imgs, Path(args.out) / "emb"), imgs, masks,
                          refine=args.refine, threshold=args.field_threshold,
                          cleans=[(True, 0)])[0]
    return stems, imgs, masks, field


def full_models(out: Path, tag: str, approach: str) -> dict[str, tuple[str, float]]:
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


SCORING_DEFAULTS = {"keep_largest": 0, "refine_margin": 0.0, "refine_margin_side": "all"}


def run_scoring(out: Path, tag: str) -> dict:
    """The run's mask settings beside the threshold: `keep_largest`, `refine_margin`,
    `refine_margin_side` (SCORING_DEFAULTS for a run that predates a flag)."""
    with open(out / f"run_covid_extent{tag}.json") as handle:
        arguments = json.load(handle)["arguments"]
    return {key: arguments.get(key, default) for key, default in SCORING_DEFAULTS.items()}


def full_mask(args, stem: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of one film by the `--full` fold model it was held out from, at that
    fold's threshold, the film encoded by the model's own image encoder (the base LiteMedSAM's
    unless its encoder was trained; cached in the run's emb/), refined and cleaned as the run
    did it (run_scoring)."""
    out = Path(args.out)
    run, threshold = full_models(out, args.tag, args.full)[stem]
    model, prior = load_run(str(out / "runs" / run))
    own = embeddings_for(model, [image], [stem], DEVICE, cache_dir=out / "runs" / run / "emb")
    scoring = run_scoring(out, args.tag)
    return predict_masks(model, prior, own, [image], [mask], refine=args.refine,
                         threshold=threshold, cleans=[(True, scoring["keep_largest"])],
                         margin=scoring["refine_margin"],
                         side=scoring["refine_margin_side"])[0][0]


def outline_panel(ax, image: np.ndarray, outlines: list[tuple[np.ndarray, str]],
                  title: str) -> None:
    """One film on `ax`: the image in gray and each (mask, colour) as its outline."""
    ax.imshow(image, cmap="gray")
    for mask, colour in outlines:
        ax.contour(np.asarray(mask, np.uint8), levels=[0.5], colors=colour, linewidths=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def save_figure(fig, path: str) -> None:
    """The figure as a PNG at `path` (80 dpi; written under a temporary name, then renamed)."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"figure: {path}")
