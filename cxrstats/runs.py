"""Read and check the files the report needs: the cohort's labels and splits, and the training runs.

Everything comes from files under WORK (see docs/DESIGN.md); every inconsistency (rows that
disagree, an image missing from the cohort, a test image outside its split's test part) raises a
ValueError or FileNotFoundError naming the file(s) and the problem. A run folder counts only once
cxrcls.train has written its completion record `done.json` (last, after every output): `read_run`
raises `IncompleteRunError` otherwise, so a killed or restarted run is never reported as the old
one.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrstats.foundation.fileio import (IncompleteRunError, file_sha256, load_npy, read_csv,
                                        read_done)
from cxrstats.foundation.input_names import mask_radius
from cxrstats.results import changed_inputs
from cxrstats.study import FINDINGS, LABELS

ARCH_ORDER = ("resnet50", "densenet121")
SPLIT_FOLDER = re.compile(r"^split(\d+)$")
DONE = "done.json"  # cxrcls.train's completion record in every run folder


@dataclass
class Cohort:
    """cohort.csv: image names and their (N, 6) uint8 0/1 labels in LABELS order."""
    path: Path
    images: list[str]
    labels: np.ndarray
    row_of: dict[str, int]

    def labels_for(self, ids: list[str], ids_path: Path) -> np.ndarray:
        """(n, 6) labels of `ids`, in their order; error naming both files for an unknown image."""
        missing = [image for image in ids if image not in self.row_of]
        if missing:
            raise ValueError(f"{ids_path}: {len(missing)} image(s) not in {self.path}, "
                             f"e.g. {missing[:3]}")
        return self.labels[[self.row_of[image] for image in ids]]


def read_cohort(path: Path) -> Cohort:
    """Read cohort/cohort.csv (`image`, the six labels as 0/1, ...)."""
    rows = read_csv(path, required=["image", *LABELS])
    if not rows:
        raise ValueError(f"{path}: no images")
    images = [r["image"] for r in rows]
    row_of = {image: i for i, image in enumerate(images)}
    if len(row_of) != len(images):
        raise ValueError(f"{path}: duplicate image names")
    try:
        labels = np.array([[int(r[label]) for label in LABELS] for r in rows], dtype=np.uint8)
    except ValueError as error:
        raise ValueError(f"{path}: label values must be 0/1 integers ({error})") from None
    if labels.max() > 1:
        raise ValueError(f"{path}: label values must be 0/1")
    return Cohort(Path(path), images, labels, row_of)


def read_splits(path: Path, cohort: Cohort) -> dict[int, dict[str, str]]:
    """Read cohort/splits.csv (`image, split, part`) -> {split: {image: part}}."""
    splits: dict[int, dict[str, str]] = {}
    for r in read_csv(path, required=["image", "split", "part"]):
        if r["image"] not in cohort.row_of:
            raise ValueError(f"{path}: image {r['image']!r} is not in {cohort.path}")
        if r["part"] not in ("train", "val", "test"):
            raise ValueError(f"{path}: part must be train/val/test, got {r['part']!r}")
        try:
            k = int(r["split"])
        except ValueError:
            raise ValueError(f"{path}: split must be an integer, got {r['split']!r}") from None
        splits.setdefault(k, {})[r["image"]] = r["part"]
    return splits


@dataclass(frozen=True)
class Setting:
    """A training setting, from its folder name `<arch>_<train>` or `<arch>_<train>_on_<test>`."""
    name: str
    arch: str
    train_input: str
    test_input: str

    @property
    def sort_key(self):
        arch = (ARCH_ORDER.index(self.arch), "") if self.arch in ARCH_ORDER else (len(ARCH_ORDER),
                                                                                 self.arch)
        return (arch, self.train_input != self.test_input, input_order(self.train_input),
                input_order(self.test_input))


def input_order(input_name: str) -> tuple:
    """Sort key of an input: original, then m<r> by increasing radius, then overlay, then any other
    name alphabetically."""
    radius = mask_radius(input_name)
    if input_name == "original":
        return (0, 0, "")
    if radius is not None:
        return (1, radius, "")
    if input_name == "overlay":
        return (2, 0, "")
    return (3, 0, input_name)


def parse_setting(name: str) -> Setting:
    """`resnet50_m50` -> (resnet50, m50, m50); `densenet121_m15_on_original` -> (densenet121, m15,
    original). Inputs are original, overlay or m<r> for any radius r (m0, m30, m100, ...); other
    names are kept and sorted last. A name without `_` is kept whole as the architecture, input
    "unknown"."""
    arch, _, rest = name.partition("_")
    if not rest:
        return Setting(name, name, "unknown", "unknown")
    train, sep, test = rest.partition("_on_")
    return Setting(name, arch, train, test if sep else train)


def find_runs(runs_dir: Path) -> dict[str, dict[int, Path]]:
    """{setting name: {split k: folder}} for every runs/<setting>/split<k>/ folder."""
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no runs folder (train some settings first)")
    found: dict[str, dict[int, Path]] = {}
    for setting_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        for split_dir in sorted(p for p in setting_dir.iterdir() if p.is_dir()):
            match = SPLIT_FOLDER.match(split_dir.name)
            if match:
                found.setdefault(setting_dir.name, {})[int(match.group(1))] = split_dir
    return found


@dataclass
class FinishedRun:
    """One trained model's outputs: validation and test probabilities (n, 5) with their (n, 6)
    labels, the test images' names (n,), thresholds from thresholds.csv (6,) in LABELS order or
    None, training time and provenance (done_sha256: the sha256 of the run's done.json as read;
    precision: the resolved precision it trained and predicted in, fp32 or bf16, None when its
    done.json records none)."""
    setting: Setting
    split: int
    folder: Path
    val_probs: np.ndarray
    val_labels: np.ndarray
    test_probs: np.ndarray
    test_labels: np.ndarray
    test_ids: list[str]
    thresholds: np.ndarray | None
    train_seconds: float | None
    epochs: int | None
    run_args: dict | None
    done_sha256: str = ""
    precision: str | None = None
    notes: list[str] = field(default_factory=list)


def read_probs(folder: Path, part: str, cohort: Cohort) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`<part>_probs.npy` (n, 5) probabilities, the (n, 6) labels and the n names of
    `<part>_ids.csv`, rows checked aligned."""
    probs_path = folder / f"{part}_probs.npy"
    ids_path = folder / f"{part}_ids.csv"
    if not probs_path.is_file():
        raise FileNotFoundError(f"{probs_path}: file not found")
    probs = load_npy(probs_path)
    ids = [r["image"] for r in read_csv(ids_path, required=["image"])]
    if probs.ndim != 2 or probs.shape[1] != len(FINDINGS):
        raise ValueError(f"{probs_path}: expected shape (n, {len(FINDINGS)}), got {probs.shape}")
    if probs.shape[0] != len(ids):
        raise ValueError(f"{probs_path} has {probs.shape[0]} rows but {ids_path} lists {len(ids)} "
                         "images; they must be aligned row by row")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{ids_path}: duplicate image names")
    if not np.isfinite(probs).all():
        raise ValueError(f"{probs_path}: contains NaN or infinite values")
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{probs_path}: values must be probabilities in [0, 1] "
                         f"(found {probs.min():.3g}..{probs.max():.3g}; logits saved by mistake?)")
    return probs.astype(np.float64), cohort.labels_for(ids, ids_path), ids


def check_parts(folder: Path, part: str, cohort: Cohort, split: int,
                splits: dict[int, dict[str, str]], splits_path: Path) -> None:
    """Every image of `<part>_ids.csv` must belong to that part of split k in splits.csv."""
    ids_path = folder / f"{part}_ids.csv"
    if split not in splits:
        raise ValueError(f"{folder}: split {split} does not exist in {splits_path}")
    parts = splits[split]
    wrong = [r["image"] for r in read_csv(ids_path, required=["image"])
             if parts.get(r["image"]) != part]
    if wrong:
        raise ValueError(f"{ids_path}: {len(wrong)} image(s) are not in the {part} part of split "
                         f"{split} in {splits_path}, e.g. {wrong[:3]}")


def read_thresholds(path: Path) -> np.ndarray:
    """thresholds.csv (`label, threshold, val_f1`) -> (6,) thresholds in LABELS order, each label
    once; the one reader of the file (cxrstats.report, cxrcls.predict). ValueError naming the file
    for a missing, repeated or unknown label, a threshold that is not a number, or NaN (it would
    flag nothing)."""
    rows = read_csv(path, required=["label", "threshold"])
    labels = [r["label"] for r in rows]
    by_label = {r["label"]: r["threshold"] for r in rows}
    missing = [label for label in LABELS if label not in by_label]
    if missing:
        raise ValueError(f"{path}: no threshold for {missing}")
    extra = sorted({label for label in labels if label not in LABELS or labels.count(label) > 1})
    if extra:
        raise ValueError(f"{path}: labels {extra} are repeated or not the study's {list(LABELS)}")
    try:
        values = np.array([float(by_label[label]) for label in LABELS])
    except ValueError as error:
        raise ValueError(f"{path}: thresholds must be numbers ({error})") from None
    if np.isnan(values).any():
        raise ValueError(f"{path}: NaN threshold")
    return values


def read_training_time(folder: Path) -> tuple[float | None, int | None, list[str]]:
    """Training seconds and epochs from timing.json, else summed from history.csv; (None, None)
    if neither."""
    notes = []
    timing_path = folder / "timing.json"
    history_path = folder / "history.csv"
    seconds = epochs = None
    if timing_path.is_file():
        try:
            timing = json.loads(timing_path.read_text())
            seconds = float(timing["train_seconds"])
            epochs = int(timing["epochs"]) if timing.get("epochs") is not None else None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{timing_path}: expected JSON with 'train_seconds' "
                             f"({error})") from None
    if history_path.is_file():
        history = read_csv(history_path, required=["epoch", "seconds"])
        if epochs is None:
            epochs = len(history)
        if seconds is None:
            seconds = sum(float(r["seconds"]) for r in history)
            notes.append(f"training time summed from {history_path.name} (no timing.json)")
    if seconds is None:
        notes.append("no timing.json or history.csv: training time unknown")
    elif not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{timing_path}: invalid training time {seconds}")
    return seconds, epochs, notes


def check_setting(folder: Path, setting: Setting, record: dict) -> None:
    """The run's recorded arguments (arch, train_input, eval_input: None = train_input) must be
    what its folder name says, or the report would present it as another setting: ValueError
    naming the run otherwise."""
    arguments = record.get("arguments")
    if not isinstance(arguments, dict) or not {"arch", "train_input"} <= set(arguments):
        raise ValueError(f"{folder / DONE}: does not record the run's arch and train_input, so "
                         f"its setting cannot be checked against the folder name {setting.name}")
    train = arguments["train_input"]
    recorded = (arguments["arch"], train, arguments.get("eval_input") or train)
    if recorded != (setting.arch, setting.train_input, setting.test_input):
        arch, train, test = recorded
        name = f"{arch}_{train}" + (f"_on_{test}" if test != train else "")
        raise ValueError(f"{folder}: trained as {name} (arch {arch}, train input {train}, eval "
                         f"input {test} in its {DONE}), but its folder says {setting.name}; "
                         f"move it to runs/{name}/ or train it again under the right name")


def read_run(folder: Path, setting: Setting, split: int, cohort: Cohort,
             splits: dict[int, dict[str, str]], splits_path: Path) -> FinishedRun:
    """Read and check one finished WORK/runs/<setting>/split<k>/ folder; IncompleteRunError without
    its completion record or when WORK's cohort, cache or masks were re-made since it trained
    (cxrstats.results.changed_inputs), ValueError when its recorded arguments are not the setting
    its folder names (check_setting), FileNotFoundError for a missing file."""
    record = read_done(folder, DONE, what="training run")
    changed = changed_inputs(folder.parents[2], folder, record)
    if changed:
        raise IncompleteRunError(changed)
    check_setting(folder, setting, record)
    done_sha256 = file_sha256(folder / DONE)
    val_probs, val_labels, _ = read_probs(folder, "val", cohort)
    test_probs, test_labels, test_ids = read_probs(folder, "test", cohort)
    for part in ("val", "test"):
        check_parts(folder, part, cohort, split, splits, splits_path)
    thresholds_path = folder / "thresholds.csv"
    thresholds = read_thresholds(thresholds_path) if thresholds_path.is_file() else None
    seconds, epochs, notes = read_training_time(folder)
    run_args = None
    if (folder / "run.json").is_file():
        try:
            run_args = json.loads((folder / "run.json").read_text()).get("arguments")
        except (ValueError, AttributeError):
            notes.append("run.json unreadable: arguments not shown")
    return FinishedRun(setting, split, folder, val_probs, val_labels, test_probs, test_labels,
                       test_ids, thresholds, seconds, epochs, run_args, done_sha256,
                       record.get("precision"), notes)


def one_precision(runs: list[FinishedRun]) -> str | None:
    """The resolved precision all `runs` trained in; ValueError naming the runs of each precision
    when they differ (bf16 and fp32 numbers are not one experiment's); "unrecorded" is one too."""
    by_precision: dict[str, list[str]] = {}
    for run in runs:
        by_precision.setdefault(run.precision or "unrecorded", []).append(str(run.folder))
    if len(by_precision) > 1:
        listed = "; ".join(f"{precision}: {', '.join(folders[:3])}"
                           + (f" and {len(folders) - 3} more" if len(folders) > 3 else "")
                           for precision, folders in sorted(by_precision.items()))
        raise ValueError("the runs were trained in different precisions, which one report does "
                         f"not mix ({listed}); train them again with one --precision (fp32 or "
                         "bf16), or report them separately (--settings)")
    return next(iter(by_precision), None)
