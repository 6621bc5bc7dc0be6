"""A grid of images with titles, for the docs: e.g. `make segment`'s boundary overlays.

    python -m tools.overlay_montage OUT/overlay/a.png:"DICOM MONOCHROME1" OUT/overlay/b.png ... \
        --title "..." --out docs/figures/segment_folder.png [--columns 4]

Each image is given as PATH or PATH:TITLE (the title defaults to the file name).
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from cxrstats.foundation.argtypes import Parser, int_range


def montage(items: list[tuple[Path, str]], out: Path, title: str, columns: int) -> None:
    """Write the images of `items` ((path, title) pairs) in a grid of `columns` to `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(items) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (path, name) in zip(axes.flat, items):
        ax.imshow(Image.open(path).convert("RGB"))
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def parse_item(text: str) -> tuple[Path, str]:
    path, _, name = text.partition(":")
    if not Path(path).is_file():
        raise ValueError(f"{path}: image not found")
    return Path(path), name or Path(path).name


def main(argv=None) -> None:
    parser = Parser(prog="python -m tools.overlay_montage", description=__doc__)
    parser.add_argument("images", nargs="+", help="PATH or PATH:TITLE, in grid order")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="", help="the figure's title")
    parser.add_argument("--columns", type=int_range(1), default=4)
    args = parser.parse_args(argv)
    montage([parse_item(t) for t in args.images], Path(args.out), args.title, args.columns)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
