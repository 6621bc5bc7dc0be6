"""Segmentation figures -> results/figures/seg_loss_curves.png and mask_panels.png.

seg_loss_curves.png: mean loss, Dice loss and BCE per epoch for train/val (seg/curves.csv), with
the best epoch (lowest validation loss) marked; test rows, where a curves.csv has any, are not
drawn (fine-tuning chooses on validation; the test part is scored by cxrseg.evaluate).
mask_panels.png: the six-panel figure for one image of the cache: image with its prompt box, raw
mask overlay, eroded mask, M-15, M-50, and the M-50 masked image (cutout).
worst_masks.png (`--worst N`): the N least plausible raw masks for review, ranked by qc.csv's
`shape_score` (cxrseg.shape_qc; flagged masks first when qc.csv has no shape columns).

The output folder is shared with the report's figures; this stage replaces only the files it
made (cxrstats.foundation.fileio.begin_run: a folder holding files the toolkit did not write is
refused) and writes run_segfigures.json and, last, done_segfigures.json. It reads seg/curves.csv,
the masks and qc.csv only with the bytes their stages' records vouch for (cxrseg.records).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, atomic_path, begin_run, load_npy, read_csv,
                                        write_done, write_run_json)

from .morphology import boundary, cutout
from .records import (FINETUNE, FINETUNE_STAGE, PREDICT, SEGFIGURES, check_raw_sha256,
                      require_finished, require_postprocessed)

PART_STYLE = {"train": "-", "val": "--"}
# Every file this stage may write; a run removes all of them first (so a worst_masks.png of an
# earlier run with --worst does not stay beside a run without it).
OUTPUTS = ["seg_loss_curves.png", "mask_panels.png", "worst_masks.png", "run_segfigures.json"]


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_loss_curves(curves_csv: str | Path, out: str | Path) -> int:
    """Plot curves.csv; returns the best epoch (lowest validation loss)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_csv(curves_csv, required=["epoch", "part", "loss", "dice_loss", "bce_loss"])
    val = [(float(r["loss"]), int(r["epoch"])) for r in rows if r["part"] == "val"]
    if not val:
        raise ValueError(f"{curves_csv}: no validation rows")
    best = min(val)[1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    for ax, column, title in zip(axes, ("loss", "dice_loss", "bce_loss"),
                                 ("mean loss", "Dice loss", "BCE")):
        for part, style in PART_STYLE.items():
            pts = [(int(r["epoch"]), float(r[column])) for r in rows
                   if r["part"] == part and r[column] != "nan"]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", markersize=3, label=part)
        ax.axvline(best, color="tab:red", alpha=0.6, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch (0 = before fine-tuning)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(title=f"best epoch {best}", fontsize=8)
    fig.tight_layout()
    _save(fig, Path(out))
    plt.close(fig)
    return best


def plot_mask_panels(image: np.ndarray, box, raw, eroded, m15, m50, out: str | Path,
                     title: str = "") -> None:
    """The six panels for one (H, W) image; box (x0, y0, x1, y1) in image pixels or None."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    panels = [("image + prompt box", image, None), ("raw mask", image, raw),
              ("eroded", image, eroded), ("M-15", image, m15), ("M-50", image, m50),
              ("M-50 masked image", cutout(image, m50), None)]
    for ax, (name, img, mask) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        if mask is not None:
            tint = np.zeros((*mask.shape, 4))
            tint[mask.astype(bool)] = (0.1, 0.8, 0.2, 0.30)
            tint[boundary(mask, 2)] = (0.1, 0.9, 0.2, 1.0)
            ax.imshow(tint)
        if name.startswith("image") and box is not None and np.all(np.isfinite(box)):
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="tab:orange",
                                   linewidth=2))
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, Path(out))
    plt.close(fig)


def worst_rows(qc_rows: list[dict], n: int) -> list[int]:
    """Cache rows of the `n` least plausible masks: highest shape_score, else flagged first."""
    def badness(row):
        score = row.get("shape_score", "")
        return (row["flag"] != "ok", float(score) if score not in ("", "nan") else 0.0)
    return [int(r["row"]) for r in sorted(qc_rows, key=badness, reverse=True)[:n]]


def plot_worst(images, raw, rows: list[int], labels: list[str], out: str | Path) -> None:
    """A grid of raw-mask overlays, one per cache row in `rows`, titled with `labels`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(rows), 5)
    lines = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(3 * cols, 3.2 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, label in zip(axes.ravel(), rows, labels):
        ax.imshow(np.asarray(images[row]), cmap="gray", vmin=0, vmax=255)
        tint = np.zeros((*raw[row].shape, 4))
        tint[boundary(np.asarray(raw[row]), 2)] = (0.9, 0.2, 0.1, 1.0)
        ax.imshow(tint)
        ax.set_title(label, fontsize=7)
    fig.tight_layout()
    _save(fig, Path(out))
    plt.close(fig)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.figures", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.figures --seg work/demo/seg --cache work/demo/cache "
               "--masks work/demo/masks --out work/by-hand/figures/")
    parser.add_argument("--seg", required=True, help="seg/ folder (curves.csv)")
    parser.add_argument("--cache", required=True, help="cache/ folder (images.npy, index.csv)")
    parser.add_argument("--masks", required=True,
                        help="masks/ folder (raw, eroded, m15, m50 .npy; prompts.csv)")
    parser.add_argument("--row", type=int_range(0), default=None,
                        help="cache row for the panels "
                             "(default: the first image whose QC flag is ok)")
    parser.add_argument("--worst", type=int_range(0, 100), default=0,
                        help="also draw the N least plausible masks (worst_masks.png)")
    parser.add_argument("--out", required=True, help="output folder (results/figures/)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="unused (deterministic); kept for uniformity")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.time()
    out, masks_dir = Path(args.out), Path(args.masks)
    try:
        require_finished(Path(args.seg) / "curves.csv", FINETUNE, FINETUNE_STAGE)
        check_raw_sha256(masks_dir / "raw.npy",
                         require_finished(masks_dir / "raw.npy", PREDICT, "cxrseg.predict"))
        for name in ("eroded.npy", "m15.npy", "m50.npy"):
            require_postprocessed(masks_dir / name)
        if (masks_dir / "qc.csv").is_file():
            require_postprocessed(masks_dir / "qc.csv")
        images = load_npy(Path(args.cache) / "images.npy", mmap=True)
        index = read_csv(Path(args.cache) / "index.csv", required=["row", "image"])
        stacks = {}
        for name in ("raw", "eroded", "m15", "m50"):
            path = masks_dir / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: file not found "
                                        "(run cxrseg.predict and cxrseg.postprocess)")
            stacks[name] = load_npy(path, mmap=True)
            if stacks[name].shape != images.shape:
                raise ValueError(f"{path} has shape {stacks[name].shape} but "
                                 f"{args.cache}/images.npy has {images.shape}")
        qc = masks_dir / "qc.csv"
        qc_rows = read_csv(qc, required=["row", "image", "flag"]) if qc.is_file() else []
        if args.worst and not qc.is_file():
            raise FileNotFoundError(f"{qc}: file not found (run cxrseg.postprocess)")
        row = args.row
        if row is None:
            row = next((int(r["row"]) for r in qc_rows if r["flag"] == "ok"), 0)
        if not 0 <= row < len(images):
            raise ValueError(f"--row {row} outside 0..{len(images) - 1}")
        box = None
        prompts = masks_dir / "prompts.csv"
        if prompts.is_file():
            rows = {int(r["row"]): r for r in read_csv(prompts, required=["row", "prior_x0"])}
            if row in rows:
                box = [float(rows[row][k])
                       for k in ("prior_x0", "prior_y0", "prior_x1", "prior_y1")]
        begin_run(out, OUTPUTS, done=SEGFIGURES)
        best = plot_loss_curves(Path(args.seg) / "curves.csv", out / "seg_loss_curves.png")
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    plot_mask_panels(np.asarray(images[row]), box,
                     *(np.asarray(stacks[n][row]) for n in ("raw", "eroded", "m15", "m50")),
                     out / "mask_panels.png", title=f"{index[row]['image']} (row {row})")
    written = ["seg_loss_curves.png", "mask_panels.png"]
    if args.worst:
        worst = worst_rows(qc_rows, args.worst)
        by_row = {int(r["row"]): r for r in qc_rows}
        labels = [f"{by_row[r]['image']}: {by_row[r]['flag']}" for r in worst]
        plot_worst(images, stacks["raw"], worst, labels, out / "worst_masks.png")
        written.append("worst_masks.png")
    print(f"figures: best epoch {best}; panels for row {row} -> {out}/"
          + ", ".join(written))
    write_run_json(out, args, name="run_segfigures.json", seconds=time.time() - started, row=row)
    write_done(out, args, [*written, "run_segfigures.json"], done=SEGFIGURES, best_epoch=best,
               row=row)


if __name__ == "__main__":
    main()
