"""Which ImageNet weight files the classifiers read, and from where: the one rule that training,
`make weights` and Make's check before a run share (standard library only, so Make runs it with
the system Python, before the virtual environment exists).

- The files: torchvision's original ImageNet weights (IMAGENET1K_V1, what `pretrained=True` gave,
  as in the study's era) under torchvision's own file names, `<arch>-<first hex digits of the
  file's sha256>.pth`, downloaded from DOWNLOAD_URL + name.
- The folder: $IMAGENET_DIR when set and not empty (a relative path is taken from the current
  folder; under make, the project's), otherwise the project's `weights/imagenet/`. Make exports
  IMAGENET_DIR (profiles/user.mk), so its check, `make weights` and every training run agree.

The backbones cxrcls offers are the keys of IMAGENET_FILES (ARCHS; cxrcls.models reads them here).

profiles/user.mk runs `python3 cxrcls/imagenet_files.py --missing ARCH...`, which prints why the
weights of those backbones cannot be read (nothing when they can), and profiles/pipeline.mk
`--not-archs ARCH...`, which prints the names that are no backbone (and `--archs`, the list), so
Make holds no copy of either rule.
"""
from __future__ import annotations

import os
from pathlib import Path

IMAGENET_FILES = {"resnet50": "resnet50-0676ba61.pth",
                  "densenet121": "densenet121-a639ec97.pth",
                  "resnet18": "resnet18-f37072fd.pth"}
ARCHS = tuple(IMAGENET_FILES)   # every backbone cxrcls offers has its ImageNet file
DOWNLOAD_URL = "https://download.pytorch.org/models/"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "weights" / "imagenet"


def weights_dir() -> Path:
    """The folder the ImageNet weights are fetched into and read from."""
    return Path(os.environ.get("IMAGENET_DIR") or DEFAULT_DIR)


def weights_file(arch: str) -> Path:
    """Where `arch`'s ImageNet weights live; ValueError for a backbone without known weights."""
    if arch not in IMAGENET_FILES:
        raise ValueError(f"no ImageNet weights known for {arch!r}; choose one of "
                         f"{sorted(IMAGENET_FILES)}")
    return weights_dir() / IMAGENET_FILES[arch]


def missing(archs: list[str]) -> str:
    """Why the weights of `archs` cannot be read (unknown backbones, missing files); '' if they
    can."""
    try:
        absent = [str(weights_file(arch)) for arch in archs if not weights_file(arch).is_file()]
    except ValueError as error:
        return str(error)
    return f"missing {' '.join(absent)}" if absent else ""


def main(argv: list[str]) -> str:
    """Make's view of the rules: `--missing ARCH...` prints why those weights cannot be read,
    `--not-archs NAME...` the names that are no backbone, `--archs` the backbones."""
    if argv[:1] == ["--missing"]:
        return missing(argv[1:])
    if argv[:1] == ["--not-archs"]:
        return " ".join(name for name in argv[1:] if name not in ARCHS)
    if argv == ["--archs"]:
        return " ".join(ARCHS)
    raise SystemExit("usage: imagenet_files.py --missing ARCH... | --not-archs NAME... | --archs; "
                     f"got {argv!r}")


if __name__ == "__main__":
    import sys
    print(main(sys.argv[1:]))
