"""Seeded train/val/test split (70/15/15) or K folds of the segmentation pairs -> seg/splits.csv.

`splits.csv` has columns `stem, dataset, part` (part in train/val/test) or, with `--folds K`,
`stem, dataset, fold` (fold 0..K-1). With several datasets (`--data NAME=IMAGES:MASKS`, repeated)
each dataset is split on its own, so every part holds the same share of every dataset. For fold
k, `parts_for_fold` makes fold k the test part and carves a seeded validation part out of the
remaining folds. `done_split.json` beside the CSV is written last;
cxrseg.finetune and cxrseg.evaluate read a split file only when it lists that file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, read_csv, write_csv, write_done,
                                        write_run_json)

from .datasets import add_data_arguments, find_all_pairs, sources_from_args
from .records import SPLIT, require_finished

PARTS = ("train", "val", "test")


def split_counts(n: int, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
                 ) -> tuple[int, int, int]:
    """Sizes of train/val/test for n items: val and test rounded, train gets the rest
    (292 -> 204/44/44)."""
    if n < 3:
        raise ValueError(f"need at least 3 pairs to split into train/val/test, got {n}")
    total = sum(fractions)
    n_val = max(1, int(round(n * fractions[1] / total)))
    n_test = max(1, int(round(n * fractions[2] / total)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} pairs leave no training images with fractions {fractions}")
    return n_train, n_val, n_test


def split_parts(stems: list[str], seed: int,
                fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)) -> dict[str, str]:
    """Assign each stem to train/val/test with a seeded shuffle; independent of the input order."""
    stems = sorted(stems)
    n_train, n_val, _ = split_counts(len(stems), fractions)
    order = np.random.default_rng(seed).permutation(len(stems))
    parts = {}
    for rank, i in enumerate(order):
        parts[stems[i]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return parts


def split_folds(stems: list[str], folds: int, seed: int) -> dict[str, int]:
    """Assign each stem to one of `folds` folds of (nearly) equal size with a seeded shuffle."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    if len(stems) < folds:
        raise ValueError(f"{len(stems)} pairs cannot fill {folds} folds")
    stems = sorted(stems)
    order = np.random.default_rng(seed).permutation(len(stems))
    return {stems[i]: rank % folds for rank, i in enumerate(order)}


def parts_for_fold(folds: dict[str, int], fold: int, seed: int,
                   val_fraction: float = 0.15) -> dict[str, str]:
    """Fold `fold` is test; a seeded `val_fraction` of all stems (taken from the other folds) is
    val."""
    k = max(folds.values()) + 1
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} out of range: splits have folds 0..{k - 1}")
    if fold not in folds.values():
        raise ValueError(f"fold {fold} has no stems (folds present: {sorted(set(folds.values()))})")
    rest = sorted(s for s, f in folds.items() if f != fold)
    n_val = max(1, int(round(val_fraction * len(folds))))
    if n_val >= len(rest):
        raise ValueError(f"fold {fold}: {len(rest)} training stems cannot give {n_val} "
                         "for validation")
    order = np.random.default_rng([seed, fold]).permutation(len(rest))
    val = {rest[i] for i in order[:n_val]}
    return {s: "test" if f == fold else "val" if s in val else "train" for s, f in folds.items()}


def read_splits(path: str | os.PathLike, fold: int | None = None, seed: int = 0) -> dict[str, str]:
    """Read splits.csv -> {stem: part}. A fold file needs `fold`; a part file refuses one.

    A stem listed twice is refused (a second row would silently move an image between parts)."""
    rows = read_csv(path, required=["stem"])
    repeated = sorted(s for s, n in Counter(r["stem"] for r in rows).items() if n > 1)
    if repeated:
        raise ValueError(f"{path}: stem(s) listed more than once: {repeated[:5]}; each stem needs "
                         f"exactly one row")
    if rows and "fold" in rows[0]:
        if fold is None:
            raise ValueError(f"{path}: a k-fold split file; pass --fold to choose the test fold")
        return parts_for_fold({r["stem"]: _fold_number(r, path) for r in rows}, fold, seed)
    if rows and "part" not in rows[0]:
        raise ValueError(f"{path}: needs a 'part' or a 'fold' column")
    if fold is not None:
        raise ValueError(f"{path}: --fold given but the file has no 'fold' column")
    parts = {r["stem"]: r["part"] for r in rows}
    bad = sorted({p for p in parts.values() if p not in PARTS})
    if bad:
        raise ValueError(f"{path}: unknown part(s) {bad}; expected {PARTS}")
    return parts


def _fold_number(row: dict[str, str], path) -> int:
    text = row["fold"]
    if not text.strip().isdigit():
        raise ValueError(f"{path}: stem {row['stem']!r} has fold {text!r}; folds are integers "
                         "0..K-1")
    return int(text)


def read_finished_splits(path: str | os.PathLike, fold: int | None = None,
                         seed: int = 0) -> dict[str, str]:
    """`read_splits` of a file cxrseg.split finished (done_split.json beside it lists it)."""
    require_finished(path, SPLIT, "cxrseg.split")
    return read_splits(path, fold, seed)


def parts_sha256(parts: dict[str, str]) -> str:
    """16 hex digits of the sha256 of which stem is in which part: a fine-tuned checkpoint stores
    it (`settings["data"]`), and cxrseg.evaluate compares it with the parts it reads."""
    return hashlib.sha256(json.dumps(sorted(parts.items())).encode()).hexdigest()[:16]


def check_splits_match(parts: dict[str, str], pairs: list, dataset_of: dict[str, str],
                       path: str | os.PathLike) -> None:
    """ValueError naming the split file unless it and the pairs given agree stem for stem: every
    stem of the file has an image/mask pair, and every pair of every dataset has a row (a
    dataset the file does not know would otherwise be left out of training and evaluation)."""
    stems = {p.stem for p in pairs}
    unknown = sorted(set(parts) - stems)
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} stem(s) have no image/mask pair in the data "
                         f"given: {unknown[:5]}")
    for dataset in dict.fromkeys(dataset_of.values()):
        mine = sorted(s for s in stems if dataset_of[s] == dataset)
        left_out = [s for s in mine if s not in parts]
        if len(left_out) == len(mine):
            raise ValueError(f"{path} does not know dataset {dataset!r}: none of its "
                             f"{len(mine)} pairs has a row; re-run cxrseg.split with this "
                             "dataset, or leave it out")
        if left_out:
            raise ValueError(f"{path}: {len(left_out)} of the {len(mine)} pairs of dataset "
                             f"{dataset!r} have no row (e.g. {left_out[:5]}); re-run "
                             "cxrseg.split on the current data")


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.split", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.split --images work/demo/data/seg/images "
               "--masks work/demo/data/seg/masks --out work/by-hand/seg/splits.csv --seed 0")
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, help="output CSV (seg/splits.csv)")
    parser.add_argument("--fractions", type=float_range(0, lo_open=True), nargs=3,
                        default=[0.70, 0.15, 0.15],
                        metavar=("TRAIN", "VAL", "TEST"),
                        help="part fractions (default 0.70 0.15 0.15)")
    parser.add_argument("--folds", type=int_range(2), default=None,
                        help="write K >= 2 folds instead of parts")
    parser.add_argument("--seed", type=int_range(0), default=0, help="shuffle seed")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    out = Path(args.out)
    outputs = [out.name, "run_split.json"]
    try:
        pairs, dataset_of = find_all_pairs(sources_from_args(args))
        stems = [p.stem for p in pairs]
        by_dataset = {d: [s for s in stems if dataset_of[s] == d]
                      for d in dict.fromkeys(dataset_of.values())}
        if args.folds:
            folds = {}
            for group in by_dataset.values():
                folds.update(split_folds(group, args.folds, args.seed))
            header = ["stem", "dataset", "fold"]
            rows = [(s, dataset_of[s], folds[s]) for s in sorted(folds)]
            counts = np.bincount(list(folds.values()), minlength=args.folds).tolist()
            summary = f"{len(stems)} pairs into {args.folds} folds of {counts}"
        else:
            parts = {}
            for group in by_dataset.values():
                parts.update(split_parts(group, args.seed, tuple(args.fractions)))
            header = ["stem", "dataset", "part"]
            rows = [(s, dataset_of[s], parts[s]) for s in sorted(parts)]
            counts = {p: sum(v == p for v in parts.values()) for p in PARTS}
            summary = f"{len(stems)} pairs -> {counts}"
        begin_run(out.parent, outputs, done=SPLIT)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    write_csv(out, header, rows)
    print(f"split: {summary} -> {out}")
    write_run_json(out.parent, args, name="run_split.json", seconds=time.time() - start)
    write_done(out.parent, args, outputs, done=SPLIT, pairs=len(stems))


if __name__ == "__main__":
    main()
