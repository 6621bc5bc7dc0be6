"""Generate the demo data: a RSUA-like lung-segmentation set and an NIH-like classification set.

Both are synthetic chest X-ray phantoms (`cxrcls.phantom`), drawn deterministically from `--seed`:
every image has its own generator seeded by (seed, set, index), so the same seed gives the same
bytes.

    DATA/seg/images/<stem>.png, DATA/seg/masks/<stem>.png   (lung mask 0/255, same stems)
    DATA/nih/images/<Image Index>.png, DATA/nih/Data_Entry_2017.csv, DATA/nih/phantoms.csv
    DATA/run.json, then DATA/done.json last (cxrstats.foundation.fileio completion record)

DATA must be new, empty, or made by this toolkit: a folder holding anything else (e.g. real images)
is refused before anything in it is touched. A re-run removes the previous run's PNGs first, so
images of an older, larger draw never mix with the new ones.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from cxrcls.labels import FINDINGS, NO_FINDING
from cxrcls.phantom import cue_box, cue_corner, render, sample_labels, sample_patient
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, claim_folder, write_csv, write_done,
                                        write_run_json)

# phantoms.csv: the truth behind each image; cue_x0..cue_y1 is the box holding the spurious cue
# (fractions of the image side, empty without a cue), for `cxrcls.attribution --region-csv`.
PHANTOM_COLUMNS = ("Image Index", "spurious_cue", "marker", "lung_area_fraction",
                   "cue_x0", "cue_y0", "cue_x1", "cue_y1")
NIH_COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
               "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
               "OriginalImagePixelSpacing[x", "y]")
"""Columns of NIH's Data_Entry_2017.csv as a CSV reader splits them (the header has commas in
brackets)."""

SEG_SET, CLS_SET = 1, 2  # generator streams of the two sets
DONE = "done.json"
OUTPUTS = ("nih/Data_Entry_2017.csv", "nih/phantoms.csv", "run.json")
IMAGE_FOLDERS = ("seg/images", "seg/masks", "nih/images")  # every file written there is a PNG


def start_clean(out: Path) -> None:
    """Claim DATA and its image folders, refusing any that holds files this toolkit did not write
    before anything is removed; then remove the previous run's record, tables and PNGs."""
    claim_folder(out, record=DONE)
    folders = [claim_folder(out / name) for name in IMAGE_FOLDERS]
    begin_run(out, OUTPUTS, done=DONE)
    for folder in folders:
        for path in [*folder.glob("*.png"), *folder.glob("*.png.tmp")]:
            path.unlink()


def _save_png(path: Path, array: np.ndarray) -> None:
    """Write an (H, W) uint8 array as a grayscale PNG, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG")
    os.replace(tmp, path)


def make_segmentation_set(out: Path, n: int, size: int, seed: int) -> dict:
    """Write n image/mask pairs (one patient each) under out/images and out/masks; return counts."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    areas = []
    for i in range(n):
        rng = np.random.default_rng([seed, SEG_SET, i])
        anatomy = sample_patient(rng)
        findings = sample_labels(rng, p_normal=0.6)
        phantom = render(rng, anatomy, size, findings)
        stem = f"seg_{i:04d}"
        _save_png(out / "images" / f"{stem}.png", phantom.image)
        _save_png(out / "masks" / f"{stem}.png", phantom.lungs * np.uint8(255))
        areas.append(float(phantom.lungs.mean()))
    mean_area = round(float(np.mean(areas)), 4) if areas else None
    return {"images": n, "lung_area_fraction_mean": mean_area}


def plan_patients(rng: np.random.Generator, n: int, max_per_patient: int = 4) -> list[int]:
    """Split n images into patients of 1..max_per_patient images; return each image's patient
    number."""
    patients: list[int] = []
    pid = 0
    while len(patients) < n:
        pid += 1
        patients += [pid] * int(rng.integers(1, max_per_patient + 1))
    return patients[:n]


def make_classification_set(out: Path, n: int, size: int, seed: int, spurious_cue: bool,
                            cue_label: str = "Pneumonia", cue_rate: tuple[float, float] = (0.8, 0.1)
                            ) -> dict:
    """Write n NIH-like images and their label table under `out`; return label counts.

    Images of one patient share the anatomy; a follow-up keeps the previous findings with
    probability 0.6. With `spurious_cue`, a ring outside the lungs appears on cue_rate[0] of the
    images that carry `cue_label` and on cue_rate[1] of the others.
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    plan_rng = np.random.default_rng([seed, CLS_SET])
    patient_of = plan_patients(plan_rng, n)
    rows, truth = [], []
    anatomy, findings, follow_up, previous = None, (), 0, None
    for i, pid in enumerate(patient_of):
        rng = np.random.default_rng([seed, CLS_SET, i])
        if pid != previous:
            anatomy = sample_patient(np.random.default_rng([seed, CLS_SET, 10 ** 6 + pid]))
            age = int(rng.integers(18, 90))
            sex = str(rng.choice(["M", "F"]))
            follow_up, previous = 0, pid
            findings = sample_labels(rng)
        else:
            follow_up += 1
            if rng.random() >= 0.6:
                findings = sample_labels(rng)
        cue = bool(spurious_cue and rng.random() < cue_rate[0 if cue_label in findings else 1])
        phantom = render(rng, anatomy, size, findings, cue=cue)
        name = f"{pid:08d}_{follow_up:03d}.png"
        _save_png(out / "images" / name, phantom.image)
        labels = "|".join(findings) if findings else NO_FINDING
        rows.append((name, labels, follow_up, pid, age, sex, str(rng.choice(["PA", "AP"])),
                     size, size, 0.143, 0.143))
        box = [f"{t:.4f}" for t in cue_box(cue_corner(anatomy))] if cue else [""] * 4
        truth.append((name, int(cue), anatomy.marker, round(float(phantom.lungs.mean()), 4),
                      *box))
    write_csv(out / "Data_Entry_2017.csv", NIH_COLUMNS, rows)
    write_csv(out / "phantoms.csv", PHANTOM_COLUMNS, truth)
    counts = Counter(label for row in rows for label in row[1].split("|"))
    return {"images": n, "patients": len(set(patient_of)),
            "labels": {label: counts.get(label, 0) for label in (*FINDINGS, NO_FINDING)},
            "spurious_cue": {"enabled": spurious_cue, "label": cue_label,
                             "images_with_cue": sum(t[1] for t in truth)}}


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.demo_data",
        description="Generate synthetic chest X-ray demo data: a lung-segmentation set (like RSUA) "
                    "and a classification set with an NIH-style label table.",
        epilog="example: python -m cxrcls.demo_data --out work/demo/data --n-seg 32 --n-cls 120 "
               "--seed 0",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder (DATA)")
    parser.add_argument("--n-seg", type=int_range(0), default=292,
                        help="image/mask pairs in DATA/seg (RSUA has 292)")
    parser.add_argument("--n-cls", type=int_range(0), default=1000,
                        help="images in DATA/nih with Data_Entry_2017.csv")
    parser.add_argument("--size", type=int_range(32), default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="random seed")
    parser.add_argument("--spurious-cue", action="store_true",
                        help="add a ring outside the lungs that mostly appears with Pneumonia "
                             "(a shortcut that lung masking removes)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        start = time.perf_counter()
        start_clean(args.out)
        seg = make_segmentation_set(args.out / "seg", args.n_seg, args.size, args.seed)
        print(f"demo_data: {args.n_seg} segmentation pairs in {time.perf_counter() - start:.1f}s",
              flush=True)
        cls = make_classification_set(args.out / "nih", args.n_cls, args.size, args.seed,
                                      args.spurious_cue)
        seconds = time.perf_counter() - start
        print(f"demo_data: {args.n_cls} classification images ({cls['patients']} patients), "
              f"labels {cls['labels']}, {seconds:.1f}s", flush=True)
        write_run_json(args.out, args, seconds=seconds, segmentation=seg, classification=cls)
        write_done(args.out, args, OUTPUTS, done=DONE, segmentation=seg, classification=cls)
    except USER_ERRORS as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
