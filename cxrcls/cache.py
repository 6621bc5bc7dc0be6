"""Decode the cohort's images once into one (N, S, S) uint8 grayscale array for fast training.

Each image (PNG or JPEG; grayscale, RGB, RGBA, 8- or 16-bit) is converted to 8-bit grayscale and
resized to S x S (bilinear with antialiasing; NIH images are square). Workers decode in parallel and
rows stream in order into a memory-mapped `.npy`, so memory does not grow with N. The array is
written under a temporary name and renamed; `cache.json` stores a fingerprint of the inputs (names,
sizes, modification times, S) and a re-run with the same fingerprint does nothing.

Outputs (cache/): images.npy (N, S, S) uint8, row i = index.csv row i = cohort.csv row i;
index.csv (row, image); cache.json; run.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from cxrcls.files import check_plain_name, locate_images
from cxrstats.fileio import atomic_path, read_csv, write_csv, write_json, write_run_json

CACHE_VERSION = 1  # bump when the decoding or resizing changes, so old caches are rebuilt


def to_gray8(image: Image.Image, source: str | os.PathLike = "image") -> np.ndarray:
    """(H, W) uint8 grayscale from any PIL image; 16-bit values map to 8 bits by v / 257, rounded.

    Colour uses ITU-R 601 luma (PIL's 'L'); an alpha channel is ignored (NIH's few RGBA files carry
    the gray value in R, G and B with an opaque alpha).
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"{source}: integer image values outside 0..65535")
        return np.round(values / 257.0).astype(np.uint8)
    if mode == "F":
        raise ValueError(f"{source}: floating-point images are not supported")
    if mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("LA", "PA"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if mode == "RGBA" or mode == "P":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8: bilinear resize with antialiasing (PIL)."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one file to (size, size) uint8 gray; ValueError naming the file when it cannot."""
    try:
        with Image.open(path) as image:
            image.load()
            gray = to_gray8(image, path)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot decode image ({error})") from None
    return resize_gray(gray, size)


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
    """True when out/ holds a finished cache with this fingerprint and shape."""
    try:
        meta = json.loads((out / "cache.json").read_text())
        array = np.load(out / "images.npy", mmap_mode="r")
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == stamp and array.shape == (n, size, size) \
        and (out / "index.csv").is_file()


def build_cache(names: list[str], image_dir: str | os.PathLike, out: str | os.PathLike,
                size: int = 512, workers: int = 1, progress_every: float = 5.0) -> bool:
    """Write out/images.npy, out/index.csv and out/cache.json; False when already up to date."""
    out = Path(out)
    paths = locate_images(names, image_dir)
    stamp = fingerprint(paths, size)
    if is_up_to_date(out, stamp, len(names), size):
        print(f"cache: {out / 'images.npy'} is up to date ({len(names)} images, {size} px)")
        return False
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache.json").unlink(missing_ok=True)  # the stamp goes last: no stamp, no valid cache
    start = last = time.time()
    with atomic_path(out / "images.npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(len(paths), size, size))
        jobs = [(str(p), size) for p in paths]
        pool = Pool(workers) if workers > 1 else None
        try:
            rows = pool.imap(_load_job, jobs, chunksize=4) if pool else map(_load_job, jobs)
            for i, row in enumerate(rows):
                array[i] = row
                now = time.time()
                if now - last >= progress_every or i + 1 == len(jobs):
                    rate = (i + 1) / max(now - start, 1e-9)
                    eta = (len(jobs) - i - 1) / rate
                    print(f"cache: {i + 1}/{len(jobs)} images, {rate:.1f} images/s, ETA {eta:.0f} s",
                          file=sys.stderr, flush=True)
                    last = now
        finally:
            if pool:
                pool.terminate()
                pool.join()
        array.flush()
        del array
    write_csv(out / "index.csv", ["row", "image"], list(enumerate(names)))
    write_json(out / "cache.json", {"fingerprint": stamp, "images": len(names), "size": size,
                                    "version": CACHE_VERSION})
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrcls.cache", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m cxrcls.cache --cohort work/cohort/cohort.csv "
               "--images data/nih/images --size 512 --out work/cache")
    parser.add_argument("--cohort", required=True, help="cohort.csv (column 'image')")
    parser.add_argument("--images", required=True, help="folder searched (recursively) for the images")
    parser.add_argument("--out", required=True, help="output folder (cache/)")
    parser.add_argument("--size", type=int, default=512, help="side S of the cached images (study: 512)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decoding processes")
    parser.add_argument("--seed", type=int, default=0, help="unused (no randomness); kept for uniformity")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.size < 1:
        raise SystemExit(f"error: --size must be positive, got {args.size}")
    start = time.time()
    try:
        names = [check_plain_name(row["image"], args.cohort)
                 for row in read_csv(args.cohort, required=["image"])]
        built = build_cache(names, args.images, args.out, args.size, max(1, args.workers))
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    if built:
        seconds = time.time() - start
        write_run_json(args.out, args, seconds, images=len(names))
        print(f"cache: {len(names)} images -> {Path(args.out) / 'images.npy'} "
              f"({len(names) / max(seconds, 1e-9):.1f} images/s)")


if __name__ == "__main__":
    main()
