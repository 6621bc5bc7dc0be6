"""Disease stress test without new data: synthetic opacities (cxrseg.opacity) pasted into held-out
lungs, masks unchanged; Dice and the share of the true lung kept by M-15 against strength.

Each run is a fine-tuning output folder (best.pt, prior.json from cxrseg.finetune --train decoder)
or `lite:FOLDER` (zero-shot LiteMedSAM with FOLDER's prior). Prompting is automatic: the prior box
plus `--refine` passes, threshold 0.5; `--clean fill largest2 fill+largest2` also scores each run
after filling holes and/or keeping the two largest components. Every stressed image is encoded
once (cached in --cache-dir); decoder-only runs share those embeddings. Writes a CSV and a figure:
  python -m experiments.seg_stress --images DIR --masks DIR --splits splits.csv \\
      --run today=work/x/mont_today --run zero-shot=lite:work/x/mont_today --clean fill \\
      --out work/x/stress
"""
from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path

from cxrseg.opacity import KINDS, add_opacity
from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import atomic_path, write_csv
from experiments.seg_bench_common import embed, load_run, load_set, score


def stressed(stems, images, masks, kind, strength):
    """Stems and images with `kind` at `strength` (seeded per stem and kind); masks unchanged."""
    out = []
    for stem, image, mask in zip(stems, images, masks):
        seed = zlib.crc32(f"{stem}:{kind}".encode())
        out.append(add_opacity(image, mask, kind, strength, seed=seed) if strength else image)
    return [f"{s}~{kind}{strength:g}" if strength else s for s in stems], out


def plot(rows, names, kinds, strengths, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(kinds), figsize=(3.6 * len(kinds), 6.4), sharex=True,
                             squeeze=False)
    for col, kind in enumerate(kinds):
        for name in names:
            mine = {r[2]: r for r in rows if r[0] == name and r[1] == kind}
            xs = [s for s in strengths if s in mine]
            for row, (metric, label) in enumerate(((3, "Dice"), (4, "M-15 keeps (share of lung)"))):
                axes[row, col].plot(xs, [mine[s][metric] for s in xs], marker="o", label=name)
                axes[row, col].set_ylabel(label) if col == 0 else None
        axes[0, col].set_title(kind)
        axes[1, col].set_xlabel("opacity strength")
        axes[1, col].axhline(0.98, color="grey", linewidth=0.8, linestyle=":")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.seg_stress", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--splits", default=None, help="splits.csv; held-out = --part")
    parser.add_argument("--part", default="test")
    parser.add_argument("--limit", type=int, default=12, help="first N held-out images (0: all)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN")
    parser.add_argument("--refine", type=int, nargs="+", default=[1],
                        help="refine passes (several: each scored, named r<N>)")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.5],
                        help="thresholds (several: each scored, named t<T>)")
    parser.add_argument("--clean", nargs="*", default=[],
                        choices=["fill", "largest2", "fill+largest2"],
                        help="also score these clean-ups (--fill-holes, --keep-largest 2, both)")
    parser.add_argument("--cache-dir", default="work/emb/stress")
    parser.add_argument("--out", required=True, help="folder for stress.csv and stress.png")
    args = parser.parse_args(argv)
    if not Path(args.images).is_dir():
        print(f"skip: {args.images} not found")
        return
    started = time.time()
    stems, images, masks = load_set(args.images, args.masks, args.splits, (args.part,), args.limit)
    cells = [(k, s) for k in args.kinds for s in args.strengths]
    all_stems, all_images = [], []
    for kind, strength in cells:
        st, im = stressed(stems, images, masks, kind, strength)
        all_stems += st
        all_images += im
    unique = dict(zip(all_stems, all_images))
    order = list(unique)
    emb = embed(order, [unique[s] for s in order], args.cache_dir)
    row_of = {s: i for i, s in enumerate(order)}
    print(f"{len(stems)} held-out images x {len(cells)} cells; embeddings after "
          f"{time.time() - started:.0f} s", flush=True)
    options = {"fill": (True, 0), "largest2": (False, 2), "fill+largest2": (True, 2)}
    cleans = [(False, 0)] + [options[c] for c in args.clean]
    rows, names = [], []
    for spec in args.run:
        name, _, run = spec.partition("=")
        model, prior = load_run(run)
        sweep = [(r, t) for r in args.refine for t in args.threshold]
        for (refine, threshold), (kind, strength) in ((v, c) for v in sweep for c in cells):
            st, im = stressed(stems, images, masks, kind, strength)
            idx = [row_of[s] for s in st]
            scores = score(model, prior, emb[idx], im, masks, refine=refine, threshold=threshold,
                           cleans=cleans)
            for (fill, largest), values in zip(cleans, scores):
                label = (name + (f" r{refine}" if len(args.refine) > 1 else "")
                         + (f" t{threshold:g}" if len(args.threshold) > 1 else "")
                         + (" + fill" if fill else "")
                         + (f" + largest{largest}" if largest else ""))
                rows.append([label, kind, strength, *values.mean(axis=0), values[:, 1].min(),
                             len(values)])
                if label not in names:
                    names.append(label)
        print(f"{name}: done after {time.time() - started:.0f} s", flush=True)
    out = Path(args.out)
    write_csv(out / "stress.csv", ["run", "kind", "strength", "dice", "kept_m15", "kept_m15_min",
                                   "n"], [[r[0], r[1], f"{r[2]:g}", *(f"{v:.4f}" for v in r[3:6]),
                                           r[6]] for r in rows])
    plot(rows, names, args.kinds, args.strengths, out / "stress.png")
    print("\n| run | kind | " + " | ".join(f"Dice s={s:g}" for s in args.strengths)
          + " | " + " | ".join(f"M-15 keeps s={s:g}" for s in args.strengths) + " |")
    for name in names:
        for kind in args.kinds:
            mine = {r[2]: r for r in rows if r[0] == name and r[1] == kind}
            print(f"| {name} | {kind} | " + " | ".join(f"{mine[s][3]:.4f}" for s in args.strengths)
                  + " | " + " | ".join(f"{mine[s][4]:.4f}" for s in args.strengths) + " |")
    print(f"({len(stems)} held-out images, {time.time() - started:.0f} s) -> "
          f"{out}/stress.csv, stress.png")


if __name__ == "__main__":
    main()
