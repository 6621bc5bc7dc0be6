"""Decode the cohort's images once into one (N, S, S) uint8 grayscale array for fast training.

Each image (PNG or JPEG; grayscale, RGB, RGBA, 8- or 16-bit) is read by the project's one image
reader, `cxrstats.foundation.imageio.read_gray` (its docstring gives the rule for colour and 16-bit
files), and resized to S x S (bilinear with antialiasing; NIH images are square). Workers decode in
parallel and rows stream in order into a memory-mapped `.npy`, so memory does not grow with N. The
array is written under a temporary name and renamed. The completion record `done.json`, written
last, holds a fingerprint of the inputs (names, sizes, modification times, S, reader version) and
the cache's content identity, `content_sha256` of index.csv and images.npy (CONTENT_FILES;
`cxrstats.foundation.fileio.content_facts`, hashed once, when the cache is written), which runs
trained on the cache record and their readers compare. A re-run with the same fingerprint over a
finished cache whose record holds a content identity does nothing; a cache made again from changed
image files has another content identity only when the decoded pixels (or the names) differ.

Outputs (cache/): images.npy (N, S, S) uint8, row i = index.csv row i = cohort.csv row i;
index.csv (row, image); run.json; done.json.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from cxrcls.files import check_unique, locate_images
from cxrstats.foundation.imageio import read_gray
from cxrseg.study_masks import PIPELINE_SIZE
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (CONTENT, USER_ERRORS, IncompleteRunError, atomic_path,
                                        begin_run, content_facts, load_npy, read_csv, read_done,
                                        write_csv, write_done, write_run_json)
from cxrstats.foundation.progress import Progress
from cxrstats.foundation.names import plain_name

CACHE_VERSION = 3  # bump when the decoding or resizing changes, so old caches are rebuilt
OUTPUTS = ("images.npy", "index.csv", "run.json")
CONTENT_FILES = ("index.csv", "images.npy")  # what training reads: the content identity's files
DONE = "done.json"


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8: bilinear resize with antialiasing (PIL)."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one file to (size, size) uint8 gray; ValueError naming the file when it cannot."""
    return resize_gray(read_gray(path), size)


def _load_job(job: tuple[str, int]) -> np.ndarray:
    return load_image(*job)


def fingerprint(paths: list[Path], size: int) -> str:
    """sha256 over each input's name, byte size and mtime, the size S and the cache version."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def is_up_to_date(out: Path, stamp: str, n: int, size: int) -> bool:
    """True when out/ holds a finished cache (done.json) with this fingerprint and shape, and a
    content identity."""
    try:
        record = read_done(out, DONE, what="image cache")
        array = load_npy(out / "images.npy", mmap=True)
    except (IncompleteRunError, OSError, ValueError):
        return False
    return (record.get("fingerprint") == stamp and array.shape == (n, size, size)
            and bool(record.get(CONTENT)))


def build_cache(names: list[str], image_dir: str | os.PathLike, out: str | os.PathLike,
                size: int = PIPELINE_SIZE, workers: int = 1, progress_every: float = 5.0,
                arguments=None) -> bool:
    """Write out/images.npy, index.csv, run.json and, last, done.json; False when up to date.

    `arguments` (argparse.Namespace or dict) go into run.json and done.json. A name listed twice
    is refused (it would be cached twice). The old completion record and outputs are removed
    before anything is written, so a killed build never passes for a finished one.
    """
    out = Path(out)
    check_unique(names, "image list given to build_cache")
    paths = locate_images(names, image_dir)
    stamp = fingerprint(paths, size)
    if is_up_to_date(out, stamp, len(names), size):
        print(f"cache: {out / 'images.npy'} is up to date ({len(names)} images, {size} px)")
        return False
    begin_run(out, OUTPUTS, done=DONE)  # creates `out`; refuses one that is not the toolkit's
    start = time.time()
    with atomic_path(out / "images.npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(len(paths), size, size))
        jobs = [(str(p), size) for p in paths]
        progress = Progress(len(jobs), "cache", "images", progress_every,
                            log=partial(print, file=sys.stderr))
        pool = Pool(workers) if workers > 1 else None
        try:
            rows = pool.imap(_load_job, jobs, chunksize=4) if pool else map(_load_job, jobs)
            for i, row in enumerate(rows):
                array[i] = row
                progress.update(i + 1)
        finally:
            if pool:
                pool.terminate()
                pool.join()
        array.flush()
        del array
    write_csv(out / "index.csv", ["row", "image"], list(enumerate(names)))
    if arguments is None:
        arguments = {"images": str(image_dir), "out": str(out), "size": size, "workers": workers}
    write_run_json(out, arguments, time.time() - start, images=len(names))
    write_done(out, arguments, OUTPUTS, done=DONE, fingerprint=stamp, images=len(names), size=size,
               version=CACHE_VERSION, **content_facts(out, CONTENT_FILES))
    return True


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.cache", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m cxrcls.cache --cohort work/demo/cohort/cohort.csv "
               "--images work/demo/data/nih/images --size 512 --out work/by-hand/cache")
    parser.add_argument("--cohort", required=True,
                        help="cohort.csv (column 'image'); its folder must hold cohort's done.json")
    parser.add_argument("--images", required=True,
                        help="folder searched (recursively, following links) for the images")
    parser.add_argument("--out", required=True, help="output folder (cache/)")
    parser.add_argument("--size", type=int_range(1), default=PIPELINE_SIZE,
                        help="side S of the cached images (default: the study's %(default)s)")
    parser.add_argument("--workers", type=int_range(1), default=min(8, os.cpu_count() or 1),
                        help="decoding processes")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="unused (no randomness); kept for uniformity")
    return parser


def read_cohort_names(cohort: str | os.PathLike) -> list[str]:
    """Image names of a finished cohort (cohort/done.json present), plain and unique."""
    cohort = Path(cohort)
    read_done(cohort.parent, "done.json", what="cohort (python -m cxrcls.cohort)")
    names = [plain_name(row["image"], f"{cohort}: row {i} after the header")
             for i, row in enumerate(read_csv(cohort, required=["image"]), start=1)]
    check_unique(names, cohort)
    return names


def image_list_sha256(cohort: str | os.PathLike) -> str:
    """sha256 of cohort.csv's `image` column, one name a line in order: all the cache reads from a
    cohort. Make keeps it in cohort/.sum-images, rewritten only when it changes, so that a cohort
    made again with the same images (new splits) keeps the cache and the masks."""
    digest = hashlib.sha256()
    for row in read_csv(cohort, required=["image"]):
        digest.update(row["image"].encode() + b"\n")
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    try:
        names = read_cohort_names(args.cohort)
        built = build_cache(names, args.images, args.out, args.size, args.workers, arguments=args)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    if built:
        seconds = time.time() - start
        print(f"cache: {len(names)} images -> {Path(args.out) / 'images.npy'} "
              f"({len(names) / max(seconds, 1e-9):.1f} images/s)")


if __name__ == "__main__":
    main()
