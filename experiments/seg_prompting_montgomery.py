"""How close does automatic prompting (no ground truth) get to the ground-truth box? LiteMedSAM,
k-fold on the Montgomery lung masks (../shared/data/lungseg/montgomery; skipped when absent).

Per held-out fold, mean Dice (threshold 0.5) of:
  zero-shot, GT box           the upper reference: a box from the true mask
  zero-shot, prior box        the average training mask's box placed in the image's content frame
  zero-shot, prior + refine   a second pass prompted with the box of the first prediction
  fine-tuned, prior + refine  after decoder-only fine-tuning with mixed prompts (shifted GT boxes
                              and prior boxes), early-stopped on a validation part of the
                              training folds
  fine-tuned, GT box          for reference
Each image is encoded once (embeddings cached in --cache-dir). Usage:
  python -m experiments.seg_prompting_montgomery [--folds 3] [--epochs 8]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from cxrseg.engine import embeddings_for, gt_boxes, load_model, segment
from cxrseg.finetune import SegData, _set_trainable, evaluate_losses, train_epoch
from cxrseg.losses import dice_iou
from cxrseg.pairs import find_pairs, load_pairs
from cxrseg.prompts import build_prior
from cxrseg.split import parts_for_fold, split_folds
from cxrstats.foundation.argtypes import Parser

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lungseg" / "montgomery"


def mean_dice(probs, masks, threshold=0.5) -> np.ndarray:
    return np.array([dice_iou(p.numpy() >= threshold, m)[0] for p, m in zip(probs, masks)])


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.seg_prompting_montgomery", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--prior-box-fraction", type=float, default=0.5)
    parser.add_argument("--box-shift", type=float, default=10.0,
                        help="model-input pixels (256 side)")
    parser.add_argument("--frame", default="content", choices=["content", "image"])
    parser.add_argument("--refine", type=int, default=1)
    parser.add_argument("--cache-dir", default=str(ROOT / "work" / "bench_cache"))
    parser.add_argument("--only-fold", type=int, default=None,
                        help="run just this held-out fold")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "images").is_dir():
        print(f"skip: {data} not found")
        return
    torch.manual_seed(args.seed)
    started = time.time()
    device = torch.device("cpu")
    pairs = find_pairs(data / "images", data / "masks")
    images, masks = load_pairs(pairs)
    stems = [p.stem for p in pairs]
    model = load_model("lite")
    original = copy.deepcopy(model.state_dict())
    # in chunks, so that an interrupted run keeps what it has encoded (the cache grows per chunk)
    embeddings = torch.cat([embeddings_for(model, images[i:i + 16], stems[i:i + 16], device,
                                           cache_dir=args.cache_dir)
                            for i in range(0, len(images), 16)])
    print(f"{len(stems)} images; embeddings ready after {time.time() - started:.0f} s", flush=True)

    folds = split_folds(stems, args.folds, args.seed)
    results: dict[str, list[np.ndarray]] = {}
    for k in range(args.folds) if args.only_fold is None else [args.only_fold]:
        parts = parts_for_fold(folds, k, args.seed)
        idx = {p: [i for i, s in enumerate(stems) if parts[s] == p]
               for p in ("train", "val", "test")}

        def pick(seq, part):
            return [seq[i] for i in idx[part]]

        prior = build_prior(pick(images, "train"), pick(masks, "train"), frame=args.frame)
        test_imgs, test_masks = pick(images, "test"), pick(masks, "test")
        test_emb = embeddings[idx["test"]]

        def run(name, **kw):
            _, probs, _ = segment(model, test_emb, test_imgs, device, "box", prior, **kw)
            results.setdefault(name, []).append(mean_dice(probs, test_masks))

        model.load_state_dict(original)
        run("zero-shot, GT box", boxes_px=gt_boxes(test_masks))
        run("zero-shot, prior box")
        run(f"zero-shot, prior box + refine x{args.refine}", refine=args.refine)

        # decoder-only fine-tuning with prompts like those at inference
        train_args = argparse.Namespace(train="decoder", batch_size=8, box_shift=args.box_shift,
                                        prior_box_fraction=args.prior_box_fraction, loss="dicebce")
        sets = {}
        for part in ("train", "val"):
            sets[part] = SegData(model, pick(stems, part), pick(images, part), pick(masks, part),
                                 prior, "box")
            sets[part].embeddings = embeddings[idx[part]]
        params = _set_trainable(model, "decoder")
        optimizer = torch.optim.Adam(params, lr=args.lr)
        generator = torch.Generator().manual_seed(args.seed)
        best = evaluate_losses(model, sets["val"], device, False, "prior", "dicebce", 32)[0]
        best_state, bad, t0 = copy.deepcopy(model.state_dict()), 0, time.time()
        for epoch in range(1, args.epochs + 1):
            train_loss = train_epoch(model, sets["train"], optimizer, device, train_args,
                                     generator)[0]
            val_loss = evaluate_losses(model, sets["val"], device, False, "prior", "dicebce", 32)[0]
            if val_loss < best:
                best, best_state, bad = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                bad += 1
            print(f"  fold {k} epoch {epoch}: train {train_loss:.4f} "
                  f"val(prior box) {val_loss:.4f}", flush=True)
            if bad >= args.patience:
                break
        print(f"  fold {k}: fine-tuning {time.time() - t0:.0f} s", flush=True)
        model.load_state_dict(best_state)
        run(f"fine-tuned, prior box + refine x{args.refine}", refine=args.refine)
        run("fine-tuned, prior box")
        run("fine-tuned, GT box", boxes_px=gt_boxes(test_masks))
        summary = "; ".join(f"{n} {v[-1].mean():.4f}" for n, v in results.items())
        print(f"fold {k}: " + summary, flush=True)

    print(f"\nMontgomery, {len(stems)} images, {args.folds}-fold, LiteMedSAM, Dice at 0.5 "
          f"(mean ± sd over images, all held-out folds pooled); "
          f"{time.time() - started:.0f} s total")
    reference = np.concatenate(results["zero-shot, GT box"]).mean()
    for name, values in results.items():
        v = np.concatenate(values)
        print(f"  {name:40s} {v.mean():.4f} ± {v.std(ddof=1):.4f}   "
              f"gap to zero-shot GT box {v.mean() - reference:+.4f}")


if __name__ == "__main__":
    main()
