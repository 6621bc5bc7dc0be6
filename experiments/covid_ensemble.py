"""Per-fold ensembles of `full` segmenters on covid_dev: the probabilities of several models
trained on the same fold's training part averaged before the threshold.

An ensemble is named with the run folders' suffixes of experiments.covid_extent
(`covid-fold<k><suffix>`), looked up in the `--runs` folders, e.g.
`--ensemble stage2=-e20-p3-enc6-lr1e-05-vprior,-e20-p3` (an encoder-trained run and the
decoder-only run it started from).
Every member of fold k trained on the films of that fold's training part only (its splits.csv is
checked to be the same file for every member), so a held-out film is never seen by any member.
Each member runs on its own encoder's embeddings: a decoder-only run on the base LiteMedSAM's
(cached in OUT/emb), an encoder-trained run (`--train all`) on its own (cached in <run>/emb).
Every pass (prior box, then `--refine` passes) prompts all members with the same box, the box
around the previous pass's averaged mask (seg_bench_common.ensemble_probabilities); one member
is the chosen recipe's own prediction. Masks: holes filled, `--keep-largest` pieces kept. Each
fold's threshold is chosen on its validation part (fold k+1) by `--threshold-tolerance`
(cxrseg.threshold_rule), as in covid_extent; the held-out fold plays no part in any choice.
`--open F ...` adds, per ensemble, approaches `ens:<name>+open<F>`: the same probabilities, each
mask opened with a disk of radius F x the film's longest side (seg_bench_common.open_mask: thin
protrusions go, such as a mask running out below the diaphragm) before the pieces are kept and
the holes filled, with their own thresholds chosen the same way.

Writes OUT/covid_ensemble<TAG>.csv (covid_extent's summary columns; tests `covid_dev-val`,
`covid_dev` held out, `montgomery-test` with the `field` masks), `_per_image.csv` and
`_folds.csv`, and run_covid_ensemble<TAG>.json.

  python -m experiments.covid_ensemble --lungseg ../shared/data/lungseg --out work/covid-extent \\
      --ensemble single=-e20-p3-enc6-lr1e-05-vprior --thresholds 0.2 0.3 0.4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cxrseg.anatomy import clean_mask
from cxrseg.engine import embeddings_for
from cxrseg.threshold_rule import choose_threshold
from cxrstats.foundation.argtypes import float_range, int_range
from cxrstats.foundation.fileio import file_sha256
from experiments.covid_extent import (add_keep_largest, experiment_parser, source_folds, start,
                                      summarize,
                                      write_tables)
from experiments.seg_bench_common import (DEVICE, embed, ensemble_probabilities, load_lungs,
                                          load_run, load_set, open_mask, score_masks)


def parse_ensemble(text: str) -> tuple[str, list[str]]:
    """`name=suffix,suffix,...` -> (name, [suffix, ...])."""
    name, sep, members = text.partition("=")
    suffixes = [m for m in members.split(",") if m]
    if not sep or not name or not suffixes:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SUFFIX[,SUFFIX...]")
    return name, suffixes


def member_folder(runs: list[Path], fold: int, suffix: str) -> Path:
    """The one finished run folder `covid-fold<fold><suffix>` among `runs`."""
    found = [r / f"covid-fold{fold}{suffix}" for r in runs
             if (r / f"covid-fold{fold}{suffix}" / "done_finetune.json").is_file()]
    if len(found) != 1:
        raise SystemExit(f"covid-fold{fold}{suffix}: {len(found)} finished runs in "
                         f"{', '.join(map(str, runs))}; expected one")
    return found[0]


def run_arguments(folder: Path) -> dict:
    with open(folder / "run_finetune.json") as handle:
        return json.load(handle)["arguments"]


def check_same_training(folders: list[Path]) -> None:
    """Refuse members of one fold that did not train on the same split file (by content)."""
    digests = {file_sha256(Path(run_arguments(f)["splits"])) for f in folders}
    if len(digests) != 1:
        raise SystemExit(f"{', '.join(f.name for f in folders)}: the members' splits differ")


def main(argv=None) -> None:
    parser = experiment_parser("experiments.covid_ensemble", __doc__,
                               "covid_extent's work folder (its emb/, montgomery/splits.csv; "
                               "the tables are written here)")
    parser.add_argument("--runs", nargs="+", default=None,
                        help="folders holding the member runs (default: OUT/runs)")
    parser.add_argument("--ensemble", type=parse_ensemble, action="append", required=True,
                        help="NAME=SUFFIX[,SUFFIX...]: the run-folder suffixes of the members")
    parser.add_argument("--folds", type=int_range(3), default=5)
    parser.add_argument("--thresholds", type=float_range(0, 1, lo_open=True, hi_open=True),
                        nargs="+", required=True, help="candidate thresholds")
    parser.add_argument("--threshold-tolerance", type=float_range(0, 1), default=0.005,
                        help="the lowest candidate whose mean validation Dice is within this of "
                             "the best candidate's (0: the best)")
    parser.add_argument("--refine", type=int_range(0), default=1)
    add_keep_largest(parser, 2)
    parser.add_argument("--open", type=float_range(0, 0.2, lo_open=True), nargs="+", default=[],
                        help="also score each ensemble's masks opened with a disk of radius F x "
                             "the film's longest side")
    begun = start(parser, argv)
    if begun is None:
        return
    args, started, out, mont, covid = begun
    runs = [Path(r) for r in args.runs] if args.runs else [out / "runs"]

    c_stems, c_imgs, c_masks = load_set(f"{covid}/images", f"{covid}/masks")
    c_lungs = load_lungs(f"{covid}/images", f"{covid}/masks")
    fold = np.array([source_folds(covid / "meta.csv", c_stems, args.folds)[s] for s in c_stems])
    m_stems, m_imgs, m_masks = load_set(f"{mont}/images", f"{mont}/masks",
                                        str(out / "montgomery" / "splits.csv"))
    base = {"covid": embed(c_stems, c_imgs, out / "emb"), "mont": embed(m_stems, m_imgs,
                                                                        out / "emb")}

    def members_of(k, suffixes, rows):
        """(model, covid_dev embeddings of `rows`, Montgomery embeddings) per member of fold k,
        and the fold's prior box."""
        folders = [member_folder(runs, k, s) for s in suffixes]
        check_same_training(folders)
        loaded = []
        for folder in folders:
            model, prior = load_run(str(folder))
            if run_arguments(folder)["train"] == "decoder":
                c_emb, m_emb = base["covid"][rows], base["mont"]
            else:
                c_emb = embeddings_for(model, [c_imgs[i] for i in rows],
                                       [c_stems[i] for i in rows], DEVICE,
                                       cache_dir=folder / "emb")
                m_emb = embeddings_for(model, m_imgs, m_stems, DEVICE, cache_dir=folder / "emb")
            loaded.append((model, c_emb, m_emb, prior))
        priors = {(tuple(p.box), p.frame) for *_, p in loaded}
        if len(priors) != 1:
            raise SystemExit(f"fold {k}: the members' prior boxes differ")
        return loaded, loaded[0][3]

    def masks(probs, threshold, opening=0.0):
        return [clean_mask(open_mask(p.numpy() >= threshold, opening), True,
                           args.keep_largest).astype(bool) for p in probs]

    summary, per_image, fold_rows = [], [], []
    openings = [0.0, *args.open]
    for name, suffixes in args.ensemble:
        named = {o: f"ens:{name}" + (f"+open{o:g}" if o else "") for o in openings}
        held_pred = {o: [None] * len(c_stems) for o in openings}
        val_pred = {o: [None] * len(c_stems) for o in openings}
        m_scores = {o: [] for o in openings}
        for k in range(args.folds):
            val = np.flatnonzero(fold == (k + 1) % args.folds)
            held = np.flatnonzero(fold == k)
            rows = np.concatenate([val, held])
            loaded, prior = members_of(k, suffixes, rows)
            on = {"val": [(m, c[:len(val)]) for m, c, _, _ in loaded],
                  "held": [(m, c[len(val):]) for m, c, _, _ in loaded],
                  "mont": [(m, e) for m, _, e, _ in loaded]}
            images = {"val": [c_imgs[i] for i in val], "held": [c_imgs[i] for i in held],
                      "mont": m_imgs}
            v_masks = [c_masks[i] for i in val]
            dice = {o: {} for o in openings}
            kept = {o: {} for o in openings}
            for t in sorted(set(args.thresholds)):
                probs = ensemble_probabilities(on["val"], images["val"], prior, args.refine, t)
                for o in openings:
                    s = score_masks(masks(probs, t, o), v_masks)
                    dice[o][t], kept[o][t] = s[:, 0].mean(), s[:, 1].mean()
            chosen = {o: choose_threshold(dice[o], args.threshold_tolerance) for o in openings}
            for o in openings:
                print(f"[covid_ensemble] {named[o]} fold {k}: validation Dice "
                      + " ".join(f"{t:g}:{d:.4f}" for t, d in dice[o].items())
                      + f" -> {chosen[o]:g} ({time.time() - started:.0f} s)", flush=True)
                fold_rows.append([named[o], str(k), str(len(held)), str(len(val)), "",
                                  f"{chosen[o]:g}", f"{dice[o][chosen[o]]:.4f}",
                                  f"{kept[o][chosen[o]]:.4f}"])
            for t in sorted(set(chosen.values())):  # each chosen threshold's probabilities once
                at = {part: ensemble_probabilities(on[part], images[part], prior, args.refine, t)
                      for part in on}
                for o in (o for o in openings if chosen[o] == t):
                    for i, p in zip(val, masks(at["val"], t, o)):
                        val_pred[o][i] = p
                    for i, p in zip(held, masks(at["held"], t, o)):
                        held_pred[o][i] = p
                    m_scores[o].append(score_masks(masks(at["mont"], t, o), m_masks))
                    per_image += [[named[o], "montgomery-test", f"fold{k}", stem,
                                   *[f"{v:.4f}" for v in row], *[""] * 6]
                                  for stem, row in zip(m_stems, m_scores[o][-1])]
                del at
        for o in openings:
            for test, pred in (("covid_dev-val", val_pred[o]), ("covid_dev", held_pred[o])):
                s = score_masks(pred, c_masks, c_lungs)
                per_image += [[named[o], test, f"fold{f}", stem, *[f"{v:.4f}" for v in row]]
                              for f, stem, row in zip(fold, c_stems, s)]
                summary.append(summarize(named[o], test, s))
                print(" | ".join(summary[-1]), flush=True)
            summary.append(summarize(named[o], "montgomery-test", np.vstack(m_scores[o])))
            print(" | ".join(summary[-1]), flush=True)
    write_tables(out, "covid_ensemble", args, started, summary, per_image, fold_rows)


if __name__ == "__main__":
    main()
