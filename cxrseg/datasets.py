"""Several image/mask folders as one segmentation set, each pair tagged with its dataset's name.

A source is `NAME=IMAGES:MASKS` (or `NAME=IMAGES:MASKS:SUFFIX` when mask stems carry a suffix such
as `_mask`), given once per dataset with `--data`; or one `--images/--masks` pair (what the
pipeline passes), named after the images folder's parent (or `--dataset`). Stems must be unique
across datasets, because splits.csv and the embedding cache key images by stem. NAME `all` is
taken: evaluate's rows pooling several datasets carry it.

A folder path may hold colons: when the text after `NAME=` has more colons than the format needs,
it is split where both IMAGES and MASKS name existing folders (the SUFFIX holds no colon). When no
split or more than one does, the error says so; a link to the folder under a name without a colon
(`ln -s`) is the way around. The parse rule is cxrseg/sources.py's (standard library only), which
Make also runs to check SEG_DATA before any stage.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .pairs import Pair, find_pairs
from .sources import FORMAT, NAME_PATTERN, POOLED, Source, parse_source, split_folders

__all__ = ["FORMAT", "NAME_PATTERN", "POOLED", "Source", "parse_source", "split_folders",
           "source_arg", "sources_from_args", "find_all_pairs", "add_data_arguments"]

def source_arg(text: str) -> str:
    """argparse type of `--data`: the text, once `parse_source` accepts it (its errors become usage
    errors at parse time). The text itself is kept, so run records show it as typed."""
    try:
        parse_source(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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
    parser.add_argument("--data", action="append", default=None, type=source_arg,
                        metavar="NAME=IMAGES:MASKS",
                        help="a dataset (repeat for several; replaces --images/--masks); "
                             "NAME=IMAGES:MASKS:SUFFIX when mask stems carry a suffix. NAME may "
                             f"not be {POOLED!r} (evaluate's pooled rows). A folder path with a "
                             "colon works when the folders exist and only one split names two "
                             "existing folders; else link it under a name without a colon")
