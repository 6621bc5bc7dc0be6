"""Several image/mask folders as one segmentation set, each pair tagged with its dataset's name.

A source is `NAME=IMAGES:MASKS` (or `NAME=IMAGES:MASKS:SUFFIX` when mask stems carry a suffix such
as `_mask`), given once per dataset with `--data`; or the single `--images/--masks` pair of the
older command lines, named after the images folder's parent (or `--dataset`). Stems must be unique
across datasets, because splits.csv and the embedding cache key images by stem.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .data import Pair, find_pairs

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Source:
    """One dataset: its name, image folder, mask folder and mask-stem suffix."""
    name: str
    images: str
    masks: str
    mask_suffix: str = ""


def parse_source(text: str) -> Source:
    """`NAME=IMAGES:MASKS[:SUFFIX]` -> Source; a clear ValueError otherwise."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValueError(f"--data {text!r}: expected NAME=IMAGES:MASKS or NAME=IMAGES:MASKS:SUFFIX")
    if not NAME_PATTERN.match(name):
        raise ValueError(f"--data {text!r}: dataset name {name!r} may hold only letters, digits "
                         "and . _ -")
    return Source(name, parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def sources_from_args(args) -> list[Source]:
    """The datasets named on a command line: every `--data`, or the one `--images/--masks` pair."""
    specs = getattr(args, "data", None) or []
    if specs:
        if getattr(args, "images", None) or getattr(args, "masks", None):
            raise ValueError("give either --data NAME=IMAGES:MASKS (repeatable) or "
                             "--images/--masks, not both")
        sources = [parse_source(s) for s in specs]
        names = [s.name for s in sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"--data: dataset name(s) {repeated} given more than once")
        return sources
    if not getattr(args, "images", None) or not getattr(args, "masks", None):
        raise ValueError("need --images and --masks, or one --data NAME=IMAGES:MASKS per dataset")
    name = getattr(args, "dataset", None) or Path(args.images).resolve().parent.name
    return [Source(name, args.images, args.masks, getattr(args, "mask_suffix", "") or "")]


def find_all_pairs(sources: list[Source]) -> tuple[list[Pair], dict[str, str]]:
    """Pairs of every source (sorted by stem) and {stem: dataset name}; error on a stem in two."""
    pairs, dataset_of = [], {}
    for source in sources:
        for pair in find_pairs(source.images, source.masks, source.mask_suffix):
            if pair.stem in dataset_of:
                raise ValueError(f"stem {pair.stem!r} is in both {dataset_of[pair.stem]} and "
                                 f"{source.name} ({source.images}); stems must be unique across "
                                 "datasets")
            dataset_of[pair.stem] = source.name
            pairs.append(pair)
    return sorted(pairs, key=lambda p: p.stem), dataset_of


def add_data_arguments(parser, images_help: str = "folder of images") -> None:
    """The dataset flags shared by split/finetune/evaluate: one `--images/--masks[/--mask-suffix]`
    pair, or the repeatable `--data NAME=IMAGES:MASKS[:SUFFIX]` (read by `sources_from_args`)."""
    parser.add_argument("--images", default=None, help=images_help)
    parser.add_argument("--masks", default=None, help="folder of masks with the same stems")
    parser.add_argument("--mask-suffix", default="",
                        help="mask file stem = image stem + this (e.g. _mask)")
    parser.add_argument("--data", action="append", default=None, metavar="NAME=IMAGES:MASKS",
                        help="a dataset (repeat for several; replaces --images/--masks); "
                             "NAME=IMAGES:MASKS:SUFFIX when mask stems carry a suffix")
