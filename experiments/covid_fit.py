"""How well covid_extent's K-fold `full` segmenters fit the films they trained on, and what the
automatic prompt costs: each fold's model scored on its training part and on its held-out fold,
with the automatic prompt (prior box + refine passes) and with the ground-truth box.

A model that scores on its own training films about what it scores held out cannot be lifted much
by choices made at prediction time; the ground-truth box bounds what a better box would give.
Each fold scores at the threshold covid_extent chose on its validation part (its `_folds.csv`),
holes filled and the two largest pieces kept, as the `full` recipe does. Encoder-trained runs
(`--train all`) score on their own encoder's embeddings (cached in <run>/emb), decoder-only runs
on the base LiteMedSAM's (OUT/emb).

  python -m experiments.covid_fit --lungseg ../shared/data/lungseg --out work/covid-extent \\
      --from-tag _repro --runs=-e20-p3-enc6-lr1e-05-vprior --approach covid-cv-enc@val

Writes OUT/covid_fit<TAG>.csv: per fold, part (train, held-out) and box (prior, gt), the number
of films, Dice (mean, worst) and M-15 kept share (mean, worst); then the rows `all`, every
fold's films pooled.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cxrseg.engine import embeddings_for
from cxrstats.foundation.argtypes import int_range
from cxrstats.foundation.fileio import read_csv, read_done, write_csv, write_run_json
from experiments.covid_extent import (add_keep_largest, experiment_parser, print_table,
                                      source_folds, start)
from experiments.seg_bench_common import (DEVICE, embed, load_run, load_set, predict_masks,
                                          score_masks)

COLUMNS = ["fold", "part", "box", "threshold", "n", "dice", "dice_min", "kept_m15",
           "kept_m15_min"]


def fold_thresholds(path: Path, approach: str, folds: int) -> dict[int, float]:
    """Each fold's threshold that covid_extent chose for `approach` (its `_folds.csv`)."""
    chosen = {int(r["fold"]): float(r["threshold"]) for r in read_csv(path)
              if r["approach"] == approach}
    missing = sorted(set(range(folds)) - set(chosen))
    if missing:
        raise SystemExit(f"error: {path}: no threshold of {approach!r} for folds {missing}")
    return chosen


def parts_of(fold: np.ndarray, k: int, folds: int) -> dict[str, np.ndarray]:
    """Rows of fold k's training part (neither its held-out fold nor its validation fold k+1)
    and of its held-out fold."""
    return {"train": np.flatnonzero((fold != k) & (fold != (k + 1) % folds)),
            "held-out": np.flatnonzero(fold == k)}


def row(k: str, part: str, box: str, threshold: str, scores: np.ndarray) -> list[str]:
    return [k, part, box, threshold, str(len(scores)), f"{scores[:, 0].mean():.4f}",
            f"{scores[:, 0].min():.3f}", f"{scores[:, 1].mean():.4f}", f"{scores[:, 1].min():.3f}"]


def main(argv=None) -> None:
    parser = experiment_parser("experiments.covid_fit", __doc__,
                               "covid_extent's output folder (its runs/, emb/ and tables)")
    parser.add_argument("--from-tag", default="",
                        help="the covid_extent --tag whose _folds.csv gives the thresholds")
    parser.add_argument("--runs", default="-e20-p3-enc6-lr1e-05-vprior",
                        help="run folder suffix: OUT/runs/covid-fold<k><RUNS> (give it as "
                             "--runs=-e20...)")
    parser.add_argument("--approach", default="covid-cv-enc@val",
                        help="the _folds.csv approach whose thresholds are used")
    parser.add_argument("--folds", type=int_range(3), default=5)
    parser.add_argument("--refine", type=int_range(0), default=1)
    add_keep_largest(parser, 2)
    begun = start(parser, argv)
    if begun is None:
        return
    args, started, out, _, covid = begun
    thresholds = fold_thresholds(out / f"covid_extent{args.from_tag}_folds.csv", args.approach,
                                 args.folds)
    stems, images, masks = load_set(f"{covid}/images", f"{covid}/masks")
    fold_of = source_folds(covid / "meta.csv", stems, args.folds)
    fold = np.array([fold_of[s] for s in stems])
    base = None
    rows, pooled = [], {}
    for k in range(args.folds):
        run = out / "runs" / f"covid-fold{k}{args.runs}"
        trained_all = read_done(run, "done_finetune.json")["arguments"]["train"] == "all"
        model, prior = load_run(str(run))
        for part, idx in parts_of(fold, k, args.folds).items():
            imgs, msks = [images[i] for i in idx], [masks[i] for i in idx]
            if trained_all:
                emb = embeddings_for(model, imgs, [stems[i] for i in idx], DEVICE,
                                     cache_dir=run / "emb")
            else:
                base = embed(stems, images, out / "emb") if base is None else base
                emb = base[idx]
            for box in ("prior", "gt"):
                pred = predict_masks(model, prior, emb, imgs, msks, box=box, refine=args.refine,
                                     threshold=thresholds[k],
                                     cleans=[(True, args.keep_largest)])[0]
                scores = score_masks(pred, msks)
                pooled.setdefault((part, box), []).append(scores)
                rows.append(row(str(k), part, box, f"{thresholds[k]:g}", scores))
                print(" | ".join(rows[-1]), f"({time.time() - started:.0f} s)", flush=True)
    rows += [row("all", part, box, "", np.vstack(s)) for (part, box), s in pooled.items()]
    write_csv(out / f"covid_fit{args.tag}.csv", COLUMNS, rows)
    write_run_json(out, args, name=f"run_covid_fit{args.tag}.json",
                   seconds=time.time() - started, thresholds=thresholds)
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
