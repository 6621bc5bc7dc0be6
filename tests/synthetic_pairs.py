"""Tiny synthetic segmentation data for the cxrseg tests (as tests/synthetic_work.py is for the
classifier and the statistics): image/mask pairs (noise plus two bright rectangles as lungs,
40x36 by default), the stage command lines the tests share, and a tiny finished study on the
random `micro` model (conftest.py's `study` and `predicted` fixtures build one per test file).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cliargs import with_flags
from cxrseg import evaluate, finetune, postprocess, predict, split



def two_lungs() -> np.ndarray:
    """A (30, 30) uint8 0/1 mask of two rectangular lungs, 9 and 10 pixels wide, 5 apart."""
    m = np.zeros((30, 30), np.uint8)
    m[4:26, 3:12] = 1
    m[4:26, 17:27] = 1
    return m

def write_pairs(root: Path, prefix: str = "x", n: int = 12, h: int = 40, w: int = 36,
                seed: int = 0, empty=()) -> Path:
    """n pairs <prefix><i:02d>.png in root/images and root/masks: noise plus a left 'lung' of
    random height and a fixed right one; masks 0/255, all zero for the indices in `empty`.
    Returns `root`."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        m[rng.integers(4, 10):rng.integers(28, 36), 4:15] = 1
        m[6:34, 20:32] = 1
        img = (rng.normal(60, 10, (h, w)) + 120 * m).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{prefix}{i:02d}.png")
        Image.fromarray(m * 255 * (i not in empty)).save(root / "masks" / f"{prefix}{i:02d}.png")
    return root


def write_stack(folder: Path, images, names: list[str]) -> None:
    """A cache-like `images.npy` (N, H, W) uint8 and its `index.csv` (`row, image`) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.stack(images).astype(np.uint8))
    (folder / "index.csv").write_text("row,image\n" + "".join(f"{i},{n}\n"
                                                               for i, n in enumerate(names)))


def data_flags(root: Path) -> list[str]:
    return ["--images", str(root / "images"), "--masks", str(root / "masks")]


def run_split(root: Path, *extra: str) -> None:
    split.main([*data_flags(root), "--out", str(root / "seg" / "splits.csv"), *extra])


def finetune_argv(root: Path, seg: Path, *extra: str) -> list[str]:
    """cxrseg.finetune's arguments for one epoch of decoder fine-tuning of the micro model on
    root's pairs into `seg`, with `extra` in place of the same flags."""
    return with_flags(
        [*data_flags(root), "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
         "--train", "decoder", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3",
         "--out", str(seg), "--device", "cpu"], *extra)


def run_finetune(root: Path, seg: Path, *extra: str) -> None:
    """One epoch of decoder fine-tuning of the micro model on root's pairs into `seg`."""
    finetune.main(finetune_argv(root, seg, *extra))


def run_evaluate(root: Path, seg: Path, *extra: str) -> None:
    """Evaluate seg/best.pt on root's pairs into seg/eval.csv."""
    evaluate.main(with_flags(
        [*data_flags(root), "--splits", str(root / "seg" / "splits.csv"),
         "--checkpoint", str(seg / "best.pt"), "--out", str(seg / "eval.csv"),
         "--device", "cpu"], *extra))


def run_predict(root: Path, seg: Path, out: Path, *extra: str) -> None:
    """Segment root's cache stack with seg/best.pt at the threshold evaluate chose."""
    predict.main(with_flags(
        ["--images", str(root / "cache" / "images.npy"),
         "--index", str(root / "cache" / "index.csv"), "--checkpoint", str(seg / "best.pt"),
         "--prior", str(seg / "prior.json"), "--threshold-from", str(seg / "eval.csv"),
         "--out", str(out), "--device", "cpu"], *extra))


def predict_folder(study: Path, images: Path, out: Path, *extra: str) -> None:
    """Segment a folder of images with the random micro model and the study's prior."""
    predict.main(with_flags(
        ["--images", str(images), "--checkpoint", "micro",
         "--prior", str(study / "seg" / "prior.json"), "--out", str(out), "--device", "cpu"],
        *extra))


def make_study(root: Path) -> Path:
    """split -> finetune -> evaluate of 12 pairs x00..x11 in `root` (seg/ with its records), and
    a cache stack of the images (cache/images.npy, cache/index.csv). Returns `root`."""
    write_pairs(root)
    run_split(root)
    run_finetune(root, root / "seg")
    run_evaluate(root, root / "seg")
    files = sorted((root / "images").iterdir())
    write_stack(root / "cache", [np.asarray(Image.open(f)) for f in files],
                [f.name for f in files])
    return root


def make_predicted(study: Path, root: Path) -> Path:
    """The study's cache segmented in two shards (root/shards/<k>of2/) and whole (root/masks/),
    then post-processed (erode 1) in root/masks/. Returns `root`."""
    for k in range(2):
        run_predict(study, study / "seg", root / "shards" / f"{k}of2" / "raw.npy",
                    "--shard", f"{k}/2")
    run_predict(study, study / "seg", root / "masks" / "raw.npy")
    postprocess.main(["--masks", str(root / "masks" / "raw.npy"),
                      "--index", str(study / "cache" / "index.csv"), "--erode", "1",
                      "--out", str(root / "masks")])
    return root


def copy_seg(study: Path, tmp_path: Path) -> Path:
    """A copy of the study's seg/ (with its records), to fine-tune or evaluate again."""
    shutil.copytree(study / "seg", tmp_path / "seg")
    return tmp_path / "seg"
