"""Cross-dataset table: train on one lung set, test on the other (and on its own held-out part).

Each row is a run trained on one set, or on several joined by `+` (e.g. montgomery+shenzhen): a
fine-tuning output folder (best.pt, prior.json) or `lite:FOLDER` (zero-shot LiteMedSAM, FOLDER's
prior). Each set is `NAME=IMAGES:MASKS:SPLITS:CACHE`; a run is tested on the test part of each
set it was trained on (SPLITS) and on every image of the other sets.
Columns per test set: Dice with the ground-truth box, Dice with automatic prompting (prior box +
`--refine` passes), and the share of the true lung kept by M-15 (mean and worst image), at the
row's threshold (`LABEL|TRAIN|RUN|THRESHOLD`, default 0.5); the `_fill` columns fill holes in the
automatic masks (--fill-holes), as the pipeline does. When a set has per-lung masks
(cxrseg.per_lung: `<masks>_right/`, `<masks>_left/` beside its masks folder) the last columns give,
for the filled automatic masks, Dice per lung and the share of each lung kept by M-15 (mean and
worst image) and M-50 (mean); empty for sets without them. Usage:
  python -m experiments.seg_cross_dataset \\
      --set montgomery=IMG:MSK:work/x/mont/splits.csv:work/emb/montgomery \\
      --set shenzhen=IMG:MSK:work/x/shen/splits.csv:work/emb/shenzhen \\
      --row "zero-shot|montgomery|lite:work/x/mont_today" --row "today|montgomery|work/x/mont_today"
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import write_csv
from experiments.seg_bench_common import embed, load_lungs, load_run, load_set, score

COLUMNS = ["run", "train", "test", "part", "n", "threshold", "dice_gt", "dice_auto", "kept_m15",
           "kept_m15_min", "dice_auto_fill", "kept_m15_fill", "kept_m15_min_fill",
           "dice_fill_right", "dice_fill_left", "kept_m15_fill_right", "kept_m15_fill_left",
           "kept_m15_min_fill_right", "kept_m15_min_fill_left", "kept_m50_fill_right",
           "kept_m50_fill_left"]
# cxrseg.per_lung.LUNG_METRICS order: dice right, left; M-15 right, left; M-50 right, left
LUNG_SUMMARY = [(2, "mean"), (3, "mean"), (4, "mean"), (5, "mean"), (4, "min"), (5, "min"),
                (6, "mean"), (7, "mean")]


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.seg_cross_dataset", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", required=True,
                        metavar="NAME=IMG:MSK:SPLITS:CACHE")
    parser.add_argument("--row", action="append", required=True,
                        metavar="LABEL|TRAIN|RUN[|THRESHOLD]")
    parser.add_argument("--refine", type=int, default=1)
    parser.add_argument("--out", required=True, help="CSV to write")
    args = parser.parse_args(argv)
    started = time.time()
    sets = {}
    for spec in args.set:
        name, _, rest = spec.partition("=")
        images, masks, splits, cache = rest.split(":")
        if not Path(images).is_dir():
            print(f"skip: {images} not found")
            return
        sets[name] = (images, masks, splits, cache)
    loaded = {}

    def test_data(name, own):
        key = (name, own)
        if key not in loaded:
            images, masks, splits, cache = sets[name]
            stems, imgs, msks = load_set(images, masks, splits if own else None, ("test",))
            lungs = load_lungs(images, masks, splits if own else None, ("test",))
            loaded[key] = (imgs, msks, embed(stems, imgs, cache), lungs)
        return loaded[key]

    cleans = [(False, 0), (True, 0)]
    rows = []
    for spec in args.row:
        label, train, run, *rest = spec.split("|")
        threshold = float(rest[0]) if rest else 0.5
        model, prior = load_run(run)
        for name in sets:
            own = name in train.split("+")
            imgs, msks, emb, lungs = test_data(name, own)
            gt = score(model, prior, emb, imgs, msks, box="gt", threshold=threshold)[0]
            auto, clean = score(model, prior, emb, imgs, msks, refine=args.refine,
                                threshold=threshold, cleans=cleans, lungs=lungs)
            rows.append([label, train, name, "test" if own else "all", len(imgs), threshold,
                         f"{gt[:, 0].mean():.4f}"]
                        + [f"{v:.4f}" for a in (auto, clean)
                           for v in (a[:, 0].mean(), a[:, 1].mean(), a[:, 1].min())]
                        + ([f"{getattr(clean[:, c], how)():.4f}" for c, how in LUNG_SUMMARY]
                           if lungs else [""] * len(LUNG_SUMMARY)))
            print(" | ".join(map(str, rows[-1])), f"({time.time() - started:.0f} s)", flush=True)
    write_csv(args.out, COLUMNS, rows)
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
