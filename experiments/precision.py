"""Do bfloat16 masks equal float32 masks? The real-data half of the precision check
(benchmarks/bench_precision.py times the speed).

1. Fine-tune LiteMedSAM's mask decoder on Montgomery once, in float32, with the demo profile's
   recipe (`--train decoder --prior-box-fraction 0.5 --epochs 4 --patience 3 --batch-size 8`, no
   opacity copies; seeded 70/15/15 split), unless OUT/seg already holds a finished run.
2. Segment Montgomery's test part and the Shenzhen images (all 550, or the first --limit) as
   cxrseg.predict does with that recipe: prior box + 1 refine pass, threshold 0.5, holes filled;
   each chunk of images once with `--precision fp32` and once with `bf16` (encoder and decoder
   under bf16 autocast), alternating, in one process.
3. Per image: Dice of the bf16 mask against the fp32 mask, and each mask's Dice against the ground
   truth; OUT/per_image.csv grows chunk by chunk (a re-run continues where it stopped), and
   OUT/summary.csv holds mean and worst bf16-vs-fp32 Dice and the mean change of Dice against the
   ground truth per set.

Usage (one thread, in the background; about 1.5 s per image per precision on a 2-core EPYC):
  python -m experiments.precision --out /tmp/bf16/precision --threads 1 \\
      --montgomery /work/shared/data/lungseg/montgomery \\
      --shenzhen /work/shared/data/lungseg/shenzhen
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from cxrseg import finetune, split
from cxrseg.anatomy import clean_mask
from cxrseg.datasets import Source, find_all_pairs
from cxrseg.engine import encode, load_model, segment
from cxrseg.losses import dice_iou
from cxrseg.pairs import load_pairs
from cxrseg.prompts import Prior
from cxrseg.split import read_splits
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import USER_ERRORS, write_csv
from cxrstats.foundation.device import prepare_device, resolve_precision

DEVICE = torch.device("cpu")
THRESHOLD = 0.5
COLUMNS = ["set", "stem", "dice_bf16_vs_fp32", "dice_gt_fp32", "dice_gt_bf16", "seconds_fp32",
           "seconds_bf16"]
SUMMARY = ["set", "n", "mean_dice_bf16_vs_fp32", "worst_dice_bf16_vs_fp32", "worst_stem",
           "mean_dice_gt_fp32", "mean_dice_gt_bf16", "change_dice_gt", "largest_change_one_image",
           "images_per_s_fp32", "images_per_s_bf16"]


def fine_tune(seg: Path, montgomery: Path) -> None:
    """The float32 fine-tuned decoder in `seg`; a finished one is reused when it is the run these
    arguments make from today's files (`finetune.check_finished`), else this stops, naming the
    file."""
    data = f"montgomery={montgomery}/images:{montgomery}/masks"
    argv = ["--data", data, "--splits", str(seg / "splits.csv"), "--checkpoint", "lite",
            "--train", "decoder", "--prior-box-fraction", "0.5", "--epochs", "4",
            "--patience", "3", "--batch-size", "8", "--out", str(seg), "--seed", "0",
            "--device", "cpu", "--precision", "fp32", "--no-cache"]
    if (seg / "done_finetune.json").is_file():
        try:
            finetune.check_finished(argv)
        except USER_ERRORS as error:
            raise SystemExit(f"error: {seg} cannot be reused: {error}; remove it, or give "
                             "another --out") from None
        return
    if not (seg / "done_split.json").is_file():
        split.main(["--data", data, "--out", str(seg / "splits.csv"), "--seed", "0"])
    finetune.main(argv)


def masks_at(model, prior: Prior, images: list[np.ndarray], precision: str
             ) -> tuple[list[np.ndarray], float]:
    """The pipeline's masks (prior box + 1 refine pass, threshold, holes filled) and seconds."""
    start = time.perf_counter()
    embeddings = encode(model, images, DEVICE, precision=precision, label=f"encode {precision}")
    _, probs, _ = segment(model, embeddings, images, DEVICE, "box", prior, refine=1,
                          threshold=THRESHOLD, precision=precision)
    masks = [clean_mask(p.numpy() >= THRESHOLD, True, 0) for p in probs]
    return masks, time.perf_counter() - start


def done_stems(path: Path) -> set[tuple[str, str]]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["set"], r["stem"]) for r in csv.DictReader(f)}


def compare_set(name: str, pairs, model, prior: Prior, per_image: Path, chunk: int) -> None:
    """Append per-image rows for the pairs not yet in `per_image`, `chunk` images at a time, fp32
    and bf16 alternating."""
    seen = done_stems(per_image)
    todo = [p for p in pairs if (name, p.stem) not in seen]
    started = time.time()
    for lo in range(0, len(todo), chunk):
        part = todo[lo:lo + chunk]
        images, truth = load_pairs(part)
        fp32, s32 = masks_at(model, prior, images, "fp32")
        bf16, s16 = masks_at(model, prior, images, "bf16")
        new = not per_image.is_file()
        with per_image.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            for p, a, b, t in zip(part, fp32, bf16, truth):
                writer.writerow([name, p.stem, f"{dice_iou(b, a)[0]:.6f}",
                                 f"{dice_iou(a, t)[0]:.6f}", f"{dice_iou(b, t)[0]:.6f}",
                                 f"{s32 / len(part):.3f}", f"{s16 / len(part):.3f}"])
        print(f"precision: {name} {lo + len(part)}/{len(todo)} images "
              f"(fp32 {len(part) / s32:.2f}/s, bf16 {len(part) / s16:.2f}/s; "
              f"{time.time() - started:.0f} s)", flush=True)


def summarise(per_image: Path, out: Path) -> list[list]:
    with per_image.open() as f:
        rows = list(csv.DictReader(f))
    table = []
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == name]
        vs = np.array([float(r["dice_bf16_vs_fp32"]) for r in mine])
        gt32 = np.array([float(r["dice_gt_fp32"]) for r in mine])
        gt16 = np.array([float(r["dice_gt_bf16"]) for r in mine])
        worst = int(np.argmin(vs))
        rate32 = len(mine) / sum(float(r["seconds_fp32"]) for r in mine)
        rate16 = len(mine) / sum(float(r["seconds_bf16"]) for r in mine)
        table.append([name, len(mine), f"{vs.mean():.5f}", f"{vs.min():.5f}",
                      mine[worst]["stem"], f"{gt32.mean():.5f}", f"{gt16.mean():.5f}",
                      f"{gt16.mean() - gt32.mean():+.5f}",
                      f"{np.abs(gt16 - gt32).max():.5f}", f"{rate32:.3f}", f"{rate16:.3f}"])
    write_csv(out, SUMMARY, table)
    print("| " + " | ".join(SUMMARY) + " |\n|" + "---|" * len(SUMMARY))
    for r in table:
        print("| " + " | ".join(map(str, r)) + " |")
    return table


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.precision", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for seg/, per_image.csv, summary.csv")
    parser.add_argument("--montgomery", required=True, help="folder with images/ and masks/")
    parser.add_argument("--shenzhen", default=None, help="folder with images/ and masks/")
    parser.add_argument("--limit", type=int_range(0), default=0,
                        help="first N Shenzhen images (0: all)")
    parser.add_argument("--chunk", type=int_range(1), default=25, help="images per fp32/bf16 turn")
    parser.add_argument("--threads", type=int_range(0), default=1,
                        help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prepare_device("cpu")
    resolve_precision("bf16", DEVICE)   # refuses a CPU without native bf16
    out = Path(args.out)
    seg = out / "seg"
    fine_tune(seg, Path(args.montgomery))
    model = load_model(str(seg / "best.pt"), "lite")
    prior = Prior.load(seg / "prior.json")
    per_image = out / "per_image.csv"
    mont, _ = find_all_pairs([Source("montgomery", f"{args.montgomery}/images",
                                     f"{args.montgomery}/masks")])
    part_of = read_splits(seg / "splits.csv")
    compare_set("montgomery (test)", [p for p in mont if part_of.get(p.stem) == "test"], model,
                prior, per_image, args.chunk)
    if args.shenzhen:
        shen, _ = find_all_pairs([Source("shenzhen", f"{args.shenzhen}/images",
                                         f"{args.shenzhen}/masks")])
        shen = shen[:args.limit] if args.limit else shen
        compare_set("shenzhen (all)" if not args.limit else f"shenzhen (first {args.limit})",
                    shen, model, prior, per_image, args.chunk)
    summarise(per_image, out / "summary.csv")


if __name__ == "__main__":
    main()
