"""A per-lung refine pass for `full` segmenters on covid_dev: after the whole-lung recipe's mask,
each lung is segmented again from its own box by a decoder trained on one lung at a time.

A box around both lungs holds the mediastinum and the heart between them; a box around one lung
holds one object, the prompt SAM-style models are trained for. Run it after
experiments.covid_extent, in its work folder: it uses that run's source-grouped folds, split
files and whole-lung models. Per fold k:
- **training**: a decoder-only LiteMedSAM run (`covid-fold<k>-perlung<suffix>`, covid_extent's
  decoder-only recipe and `--epochs`, `--patience`, `--augment-copies`, `--extent full`) on
  per-lung rows: every film twice, `<stem>__right` with its masks_right/ mask and `<stem>__left`
  with its masks_left/ mask (copied into OUT/per_lung/), in the same part as the film; prompted
  by the lung's ground-truth box only (`--prior-box-fraction 0`: a prior box of one lung would be
  the average of both); with `--encoder-epochs N` (N > 0) that run is fine-tuned further with its
  image encoder trained too, as covid_extent's encoder stage (`--train all`, bf16, at most N
  epochs, Adam at `--encoder-lr`, patience 2, stopped on the validation loss of the lungs'
  ground-truth boxes; run folder `<decoder run>-enc<N>-lr<LR>`) and scored on its own encoder's
  embeddings (cached in <run>/emb);
- **scoring**, at each candidate threshold t: the recipe (`--whole`, the run folder suffix of the
  whole-lung model, prior box + one refine pass, on its own encoder's embeddings); **perlung**:
  the recipe's mask at t split into two lungs (`split_lungs`), each lung's box prompting the
  per-lung decoder (on its encoder's embeddings), the probabilities of the two lungs combined by
  their maximum (a mask that does not split keeps the recipe's probabilities); **mean**: the
  recipe's and perlung's probabilities averaged. Masks at t, holes
  filled, `--keep-largest` pieces kept. Each fold's threshold is chosen on its validation part by
  `--threshold-tolerance` (cxrseg.threshold_rule); the held-out fold plays no part in any choice.

Writes OUT/covid_per_lung<TAG>.csv (covid_extent's summary columns; tests `covid_dev-val`,
`covid_dev` held out, `montgomery-test` with its `field` masks), `_per_image.csv`, `_folds.csv`
and run_covid_per_lung<TAG>.json. Steps whose outputs exist are skipped: the per-lung set and
split files only while covid_dev's files and the fold's split file are those they were made from
(sha256; otherwise it stops, naming the file), a fine-tuning when it finished.

  python -m experiments.covid_per_lung --lungseg ../shared/data/lungseg --out work/covid-extent \\
      --thresholds 0.2 0.3 0.4
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from cxrseg.anatomy import clean_mask
from cxrseg.engine import embeddings_for, segment
from cxrseg.prompts import prediction_box
from cxrseg.threshold_rule import choose_threshold
from cxrseg.records import SPLIT
from cxrstats.foundation.argtypes import float_range, int_range
from cxrstats.foundation.fileio import file_sha256, read_csv, read_done, write_done
from experiments import covid_extent
from experiments.covid_ensemble import member_folder
from experiments.covid_extent import (FULL, RECIPE, add_keep_largest, encoder_recipe,
                                      experiment_parser,
                                      finetune, source_folds, start, summarize, write_parts,
                                      write_tables)
from experiments.seg_bench_common import DEVICE, embed, load_lungs, load_run, load_set, score_masks

APPROACHES = ("recipe", "perlung", "mean")
LUNGS = ("right", "left")
PER_LUNG_DONE = "done_per_lung.json"


def split_lungs(mask: np.ndarray, middle: float = 0.4) -> tuple[np.ndarray, np.ndarray] | None:
    """(image-left part, image-right part) of a two-lung mask (H, W) bool, cut at the column with
    the fewest mask pixels in the middle `middle` of the mask's width (the mediastinum); None when
    the mask is empty, or has no narrowing there (that column holds more than half of the fullest
    column's pixels: one lung, not two)."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    x0, x1 = cols[0], cols[-1] + 1
    lo = x0 + int((x1 - x0) * (1 - middle) / 2)
    hi = max(lo + 1, x0 + int((x1 - x0) * (1 + middle) / 2))
    counts = mask[:, lo:hi].sum(axis=0)
    if counts.min() > 0.5 * mask.sum(axis=0).max():
        return None
    cut = lo + int(np.flatnonzero(counts == counts.min()).mean())
    first, second = mask.copy(), mask.copy()
    first[:, cut:] = False
    second[:, :cut] = False
    return (first, second) if first.any() and second.any() else None


def source_hashes(covid: Path) -> dict[str, str]:
    """sha256 of every film and per-lung mask of covid_dev, by its path under `covid`."""
    files = [f for sub in ("images", *(f"masks_{lung}" for lung in LUNGS))
             for f in sorted((covid / sub).iterdir())]
    return {str(f.relative_to(covid)): file_sha256(f) for f in files}


def per_lung_set(covid: Path, folder: Path) -> None:
    """OUT/per_lung/images/<stem>__<lung>.png and masks/ of the same name (copies of the film and
    of its masks_<lung>/ mask), with done_per_lung.json (the sha256 of every source file). A set
    made already is used only when covid_dev's files are still those it was made from."""
    sources = source_hashes(covid)
    if folder.exists():
        record = read_done(folder, PER_LUNG_DONE, "per-lung set")
        changed = sorted(set(sources.items()) ^ set(record["sources"].items()))
        if changed:
            raise SystemExit(f"{folder}: made from other covid_dev files than {covid} holds now "
                             f"({changed[0][0]}); remove it to make it again")
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("images", "masks"):
        (tmp / sub).mkdir(parents=True)
    for image in sorted((covid / "images").iterdir()):
        for lung in LUNGS:
            name = f"{image.stem}__{lung}{image.suffix}"
            shutil.copyfile(image, tmp / "images" / name)
            shutil.copyfile(covid / f"masks_{lung}" / f"{image.stem}.png", tmp / "masks" / name)
    write_done(tmp, {"covid": str(covid)}, ["images", "masks"], done=PER_LUNG_DONE,
               sources=sources)
    tmp.rename(folder)


def per_lung_splits(whole: Path, out: Path) -> Path:
    """The fold's split file with every film's row as two per-lung rows, same part; one made
    already is used only when the fold's split file is still the one it was made from."""
    digest = file_sha256(whole)
    if (out / SPLIT).is_file():
        if read_done(out, SPLIT, "split")["arguments"].get("per_lung_of_sha256") != digest:
            raise SystemExit(f"{out}: made from another {whole}; remove it to make it again")
        return out / "splits.csv"
    rows = [[f"{r['stem']}__{lung}", r["dataset"], r["part"]]
            for r in read_csv(whole) for lung in LUNGS]
    write_parts(out / "splits.csv", rows, {"per_lung_of": str(whole),
                                           "per_lung_of_sha256": digest})
    return out / "splits.csv"


def per_lung_encoder_recipe(start: Path, args) -> list[str]:
    """covid_extent's encoder-stage recipe from the per-lung decoder run `start`: ground-truth
    boxes only, the same opacity copies, at most `--encoder-epochs` epochs at `--encoder-lr`."""
    stage = argparse.Namespace(seed=0, augment=["opacity"], augment_copies=args.augment_copies,
                               encoder_patience=2, encoder_epochs=args.encoder_epochs,
                               encoder_lr=args.encoder_lr, encoder_val_prompt="gt")
    recipe = encoder_recipe(start, stage)
    recipe[recipe.index("--prior-box-fraction") + 1] = "0"
    return recipe


def per_lung_probabilities(model, emb, images, masks_at) -> list[torch.Tensor | None]:
    """Per image, the maximum of the two lungs' probabilities (H, W), each lung prompted by the
    box around its part of `masks_at` (split_lungs); None where the mask does not split."""
    parts = [split_lungs(m) for m in masks_at]
    ok = [i for i, p in enumerate(parts) if p is not None]
    out: list[torch.Tensor | None] = [None] * len(images)
    if not ok:
        return out
    each = []
    for side in range(2):
        boxes = np.stack([prediction_box(parts[i][side]) for i in ok])
        each.append(segment(model, emb[ok], [images[i] for i in ok], DEVICE, "box", None,
                            boxes_px=boxes)[1])
    for j, i in enumerate(ok):
        out[i] = torch.maximum(each[0][j], each[1][j])
    return out


def main(argv=None) -> None:
    parser = experiment_parser("experiments.covid_per_lung", __doc__,
                               "covid_extent's work folder (its covid/fold<k>/splits.csv, emb/, "
                               "runs/, montgomery/splits.csv)")
    parser.add_argument("--whole", default="-e20-p3-enc6-lr1e-05-vprior",
                        help="run-folder suffix of the whole-lung model of each fold; give it "
                             "as --whole=SUFFIX, as it starts with '-'")
    parser.add_argument("--folds", type=int_range(3), default=5)
    parser.add_argument("--epochs", type=int_range(1), default=20)
    parser.add_argument("--patience", type=int_range(1), default=3)
    parser.add_argument("--augment-copies", type=int_range(0, 16), default=2)
    parser.add_argument("--encoder-epochs", type=int_range(0), default=0,
                        help="then train the image encoder too, for at most N epochs (0: no)")
    parser.add_argument("--encoder-lr", type=float_range(0, lo_open=True), default=1e-5)
    parser.add_argument("--thresholds", type=float_range(0, 1, lo_open=True, hi_open=True),
                        nargs="+", required=True, help="candidate thresholds")
    parser.add_argument("--threshold-tolerance", type=float_range(0, 1), default=0.005)
    add_keep_largest(parser, 2)
    begun = start(parser, argv)
    if begun is None:
        return
    args, started, out, mont, covid = begun

    # training: one per-lung decoder per fold
    per_lung = out / "per_lung"
    per_lung_set(covid, per_lung)
    recipe = [*RECIPE]
    recipe[recipe.index("--prior-box-fraction") + 1] = "0"
    copies = (["--augment", "opacity", "--augment-copies", str(args.augment_copies)]
              if args.augment_copies else [])
    flags = [*copies, "--patience", str(args.patience), "--epochs", str(args.epochs), *FULL]
    suffix = f"-perlung-e{args.epochs}-p{args.patience}-c{args.augment_copies}"
    data = [f"covid={per_lung}/images:{per_lung}/masks"]
    lung_runs = []
    for k in range(args.folds):
        splits = per_lung_splits(out / "covid" / f"fold{k}" / "splits.csv",
                                 out / "covid" / f"fold{k}-perlung")
        lung_runs.append(finetune(out / "runs" / f"covid-fold{k}{suffix}", data, splits, flags,
                                  out / "emb", recipe))
        if args.encoder_epochs:
            decoder_run = lung_runs[-1]
            lung_runs[-1] = finetune(
                out / "runs" / f"{decoder_run.name}-enc{args.encoder_epochs}-lr{args.encoder_lr:g}",
                data, splits, FULL, None, per_lung_encoder_recipe(decoder_run, args))

    # scoring
    c_stems, c_imgs, c_masks = load_set(f"{covid}/images", f"{covid}/masks")
    c_lungs = load_lungs(f"{covid}/images", f"{covid}/masks")
    fold = np.array([source_folds(covid / "meta.csv", c_stems, args.folds)[s] for s in c_stems])
    m_stems, m_imgs, m_masks = load_set(f"{mont}/images", f"{mont}/masks",
                                        str(out / "montgomery" / "splits.csv"))
    base_c, base_m = embed(c_stems, c_imgs, out / "emb"), embed(m_stems, m_imgs, out / "emb")

    def clean(p, t):
        return clean_mask(p.numpy() >= t, True, args.keep_largest).astype(bool)

    def probabilities(whole, lung_model, w_emb, l_emb, images, t) -> dict[str, list]:
        """Per approach, probabilities (H, W) per image at candidate threshold t."""
        model, prior = whole
        recipe_p = segment(model, w_emb, images, DEVICE, "box", prior, refine=1, threshold=t)[1]
        lung_p = per_lung_probabilities(lung_model, l_emb, images,
                                        [clean(p, t) for p in recipe_p])
        lung_p = [r if q is None else q for r, q in zip(recipe_p, lung_p)]
        return {"recipe": recipe_p, "perlung": lung_p,
                "mean": [(r + q) / 2 for r, q in zip(recipe_p, lung_p)]}

    held = {a: [None] * len(c_stems) for a in APPROACHES}
    val_pred = {a: [None] * len(c_stems) for a in APPROACHES}
    m_scores = {a: [] for a in APPROACHES}
    fold_rows, per_image, summary = [], [], []
    for k in range(args.folds):
        v_rows, h_rows = np.flatnonzero(fold == (k + 1) % args.folds), np.flatnonzero(fold == k)
        rows = np.concatenate([v_rows, h_rows])
        folder = member_folder([out / "runs"], k, args.whole)
        whole = load_run(str(folder))
        w_c = embeddings_for(whole[0], [c_imgs[i] for i in rows], [c_stems[i] for i in rows],
                             DEVICE, cache_dir=folder / "emb")
        w_m = embeddings_for(whole[0], m_imgs, m_stems, DEVICE, cache_dir=folder / "emb")
        lung_model, _ = load_run(str(lung_runs[k]))
        l_c, l_m = base_c, base_m      # the per-lung model's encoder's embeddings
        if args.encoder_epochs:
            l_c = torch.zeros_like(base_c)
            l_c[rows] = embeddings_for(lung_model, [c_imgs[i] for i in rows],
                                       [c_stems[i] for i in rows], DEVICE,
                                       cache_dir=lung_runs[k] / "emb")
            l_m = embeddings_for(lung_model, m_imgs, m_stems, DEVICE,
                                 cache_dir=lung_runs[k] / "emb")
        v_imgs, v_masks = [c_imgs[i] for i in v_rows], [c_masks[i] for i in v_rows]
        h_imgs = [c_imgs[i] for i in h_rows]
        v_at = {t: probabilities(whole, lung_model, w_c[:len(v_rows)], l_c[v_rows], v_imgs, t)
                for t in sorted(set(args.thresholds))}
        for a in APPROACHES:
            dice, kept, preds = {}, {}, {}
            for t, probs in v_at.items():
                preds[t] = [clean(p, t) for p in probs[a]]
                s = score_masks(preds[t], v_masks)
                dice[t], kept[t] = s[:, 0].mean(), s[:, 1].mean()
            t = choose_threshold(dice, args.threshold_tolerance)
            print(f"[covid_per_lung] {a} fold {k}: validation Dice "
                  + " ".join(f"{c:g}:{d:.4f}" for c, d in dice.items()) + f" -> {t:g} "
                  f"({time.time() - started:.0f} s)", flush=True)
            fold_rows.append([a, str(k), str(len(h_rows)), str(len(v_rows)),
                              covid_extent.best_epoch(lung_runs[k]) if a != "recipe" else "",
                              f"{t:g}", f"{dice[t]:.4f}", f"{kept[t]:.4f}"])
            for i, p in zip(v_rows, preds[t]):
                val_pred[a][i] = p
            h_probs = probabilities(whole, lung_model, w_c[len(v_rows):], l_c[h_rows],
                                    h_imgs, t)[a]
            for i, p in zip(h_rows, h_probs):
                held[a][i] = clean(p, t)
            m_pred = [clean(p, t) for p in probabilities(whole, lung_model, w_m, l_m, m_imgs,
                                                         t)[a]]
            m_scores[a].append(score_masks(m_pred, m_masks))
            per_image += [[a, "montgomery-test", f"fold{k}", stem, *[f"{v:.4f}" for v in row],
                           *[""] * 6] for stem, row in zip(m_stems, m_scores[a][-1])]
    for a in APPROACHES:
        for test, pred in (("covid_dev-val", val_pred[a]), ("covid_dev", held[a])):
            s = score_masks(pred, c_masks, c_lungs)
            per_image += [[a, test, f"fold{f}", stem, *[f"{v:.4f}" for v in row]]
                          for f, stem, row in zip(fold, c_stems, s)]
            summary.append(summarize(a, test, s))
        summary.append(summarize(a, "montgomery-test", np.vstack(m_scores[a])))
    write_tables(out, "covid_per_lung", args, started, summary, per_image, fold_rows)


if __name__ == "__main__":
    main()
