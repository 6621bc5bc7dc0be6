"""A tiny synthetic work folder (cohort/, cache/, masks/) with a learnable task, for the tests of
the classification stages; no real images needed.

Finding j is present with probability `prevalence`; an image carrying it shows a bright horizontal
band in band j of 5 (flip- and small-rotation-invariant), on a noisy background. Lung masks are two
rectangles; m<r> are the same rectangles grown by max(1, r/200 of a band) pixels (m0: not grown).
Every stage folder gets its completion record, as the real stages write it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrcls.labels import FINDINGS, LABELS
from cxrseg.study_masks import DILATE_RADII, ERODE_RADIUS
import json

from cxrstats.foundation.fileio import (content_facts, file_sha256, save_npy, write_csv, write_done,
                                        write_json)


def synthetic_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, size, size) uint8 images showing band j for each finding j in `labels` (N, 5)."""
    n = len(labels)
    images = 0.3 + 0.08 * rng.standard_normal((n, size, size))
    band = size / len(FINDINGS)
    for j in range(len(FINDINGS)):
        top, bottom = int(j * band + band / 4), int(j * band + 3 * band / 4) + 1
        images[labels[:, j] == 1, top:bottom, :] += 0.45
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def lung_masks(n: int, size: int, grow: int = 0) -> np.ndarray:
    """(N, size, size) uint8 0/1: two rectangular 'lungs', grown by `grow` pixels."""
    mask = np.zeros((size, size), np.uint8)
    a, b = size // 8, size // 2
    mask[max(a - grow, 0):size - a + grow, max(a - grow, 0):b - size // 16 + grow] = 1
    mask[max(a - grow, 0):size - a + grow, b + size // 16 - grow:size - a + grow] = 1
    return np.broadcast_to(mask, (n, size, size)).copy()


def made_again(folder: Path, done: str = "done.json") -> None:
    """Record `folder`'s files, edited by a test, as its stage's own: the content identity of its
    completion record is taken again, as when the stage is made again into these files."""
    record = json.loads((folder / done).read_text())
    write_json(folder / done, {**record, **content_facts(folder, record["content_files"])})


def make_work(work: str | Path, n: int = 40, size: int = 32, prevalence: float = 0.35,
              fractions=(0.6, 0.2, 0.2), splits: int = 1, seed: int = 0,
              radii: tuple[int, ...] = DILATE_RADII) -> Path:
    """Write WORK/cohort/{cohort,splits}.csv, WORK/cache/{images.npy,index.csv} and
    WORK/masks/{raw,m<r>...}.npy + index.csv for `n` synthetic images of side `size`, each folder
    with its completion record (cohort/done.json, cache/done.json, masks/done_predict.json,
    masks/done_postprocess.json; the cohort's, cache's and post-processed masks' with their content
    identity; the masks' with the settings cxrseg.predict and postprocess record: erode
    ERODE_RADIUS, no clean-up)."""
    work = Path(work)
    arguments = {"synthetic": True, "n": n, "size": size, "seed": seed}
    rng = np.random.default_rng(seed)
    findings = (rng.random((n, len(FINDINGS))) < prevalence).astype(np.uint8)
    labels = np.concatenate([findings, (findings.sum(1, keepdims=True) == 0).astype(np.uint8)], 1)
    names = [f"img{i:05d}.png" for i in range(n)]
    write_csv(work / "cohort" / "cohort.csv", ["image", *LABELS, "patient_id"],
              [[name, *labels[i].tolist(), str(i)] for i, name in enumerate(names)])
    n_train, n_val = int(round(n * fractions[0])), int(round(n * fractions[1]))
    rows = []
    for k in range(splits):
        order = np.random.default_rng(seed + 100 + k).permutation(n)
        part = np.empty(n, dtype=object)
        part[order[:n_train]], part[order[n_train:n_train + n_val]] = "train", "val"
        part[order[n_train + n_val:]] = "test"
        rows += [[name, k, part[i]] for i, name in enumerate(names)]
    write_csv(work / "cohort" / "splits.csv", ["image", "split", "part"], rows)
    write_done(work / "cohort", arguments, ["cohort.csv", "splits.csv"],
               **content_facts(work / "cohort", ("cohort.csv", "splits.csv")))
    save_npy(work / "cache" / "images.npy", synthetic_images(findings, size, rng))
    write_csv(work / "cache" / "index.csv", ["row", "image"], list(enumerate(names)))
    write_done(work / "cache", arguments, ["images.npy", "index.csv"],
               **content_facts(work / "cache", ("index.csv", "images.npy")))
    band = max(1, size // len(FINDINGS))
    save_npy(work / "masks" / "raw.npy", lung_masks(n, size))
    write_csv(work / "masks" / "index.csv", ["row", "image"], list(enumerate(names)))
    raw_sha256 = file_sha256(work / "masks" / "raw.npy")
    no_cleanup = {"fill_holes": False, "keep_largest": 0}
    write_done(work / "masks", arguments | no_cleanup, ["raw.npy", "index.csv"],
               done="done_predict.json", extent="field", raw_sha256=raw_sha256)
    for r in radii:
        grow = max(1, band * r // 200) if r else 0
        save_npy(work / "masks" / f"m{r}.npy", lung_masks(n, size, grow))
    write_done(work / "masks", arguments | no_cleanup | {"erode": ERODE_RADIUS,
                                                         "dilate": list(radii)},
               [f"m{r}.npy" for r in radii], done="done_postprocess.json", extent="field",
               raw_sha256=raw_sha256,
               **content_facts(work / "masks", [f"m{r}.npy" for r in radii]))
    return work
