"""The classifiers' ImageNet weights: fetched once by `make weights`, read from the project after.

Training never downloads: a compute node without network (or 30 runs racing to write one cache
file) must not decide whether a week-long run starts. `python -m cxrcls.weights` fetches
torchvision's original ImageNet weights of the study's backbones into the weights folder and checks
each file against the sha256 prefix in its name (torchvision's convention, e.g.
`resnet50-0676ba61.pth`); `imagenet_state_dict` reads a file from there, checks it again, and
refuses with a message naming `make weights` when it is missing. Which files, and which folder
(`weights/imagenet/`, or $IMAGENET_DIR), is `cxrcls.imagenet_files`'s rule, which Make's check
before a run reads too.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import torch

from cxrcls.imagenet_files import DOWNLOAD_URL, IMAGENET_FILES, weights_dir, weights_file
from cxrstats.foundation.checkpoints import load_checkpoint
from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import USER_ERRORS, file_sha256

STUDY_ARCHS = ("resnet50", "densenet121")


def weights_url(arch: str) -> str:
    """torchvision's download address of `arch`'s ImageNet weights (known offline)."""
    return DOWNLOAD_URL + weights_file(arch).name


def require_imagenet(arch: str) -> Path:
    """The weights file of `arch`, or ValueError naming `make weights` when it is missing: the
    check a training run makes before anything else."""
    path = weights_file(arch)
    if not path.is_file():
        raise ValueError(f"ImageNet weights for {arch} not found ({path}); fetch them once with "
                         "`make weights` (no stage downloads), or give --weights none or a "
                         "checkpoint file")
    return path


def check_hash(path: Path, name: str | None = None) -> None:
    """ValueError unless the file's sha256 starts with the hex prefix that `name` (by default its
    own name) carries after its last '-'."""
    prefix = Path(name or path.name).stem.rsplit("-", 1)[-1]
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        raise ValueError(f"{path}: sha256 {digest[:16]}... does not match the {prefix!r} its name "
                         "carries (a broken or partial download); delete it and run `make weights`")


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """`arch`'s ImageNet state dict from the weights folder, with torchvision's current key names;
    never downloads. ValueError naming `make weights` when the file is missing or broken."""
    path = require_imagenet(arch)
    check_hash(path)
    state = load_checkpoint(path)
    return {modern_key(k): v for k, v in state.items()}


def modern_key(key: str) -> str:
    """DenseNet files keep the old names `denselayer1.norm.1.weight`; the model says `norm1`."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)


def fetch(archs: list[str]) -> list[Path]:
    """Download the weights not yet in the weights folder; a download is renamed into place only
    once its hash matches. Each download has a temporary file of its own, so two jobs fetching at
    once both end with the checked file. Returns the files, each checked."""
    weights_dir().mkdir(parents=True, exist_ok=True)
    files = []
    for arch in archs:
        path = weights_file(arch)
        if not path.is_file():
            print(f"weights: fetching {weights_url(arch)} -> {path}", flush=True)
            handle, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(handle)
            tmp = Path(name)
            try:
                download(weights_url(arch), tmp, path)
                check_hash(tmp, name=path.name)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        check_hash(path)
        files.append(path)
    return files


def download(url: str, tmp: Path, path: Path) -> None:
    """Download `url` into `tmp`; without the network, ValueError saying which file to copy from a
    machine that has it into which folder (`path`: where the file belongs)."""
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=False)
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise ValueError(
            f"cannot download {url} ({getattr(error, 'reason', error)}). On a machine without "
            f"the network, copy {path.name} from one that has it (that address, or a torchvision "
            f"cache: ~/.cache/torch/hub/checkpoints/{path.name}) into {path.parent}/, then run "
            "`make weights` again: it checks the file and downloads nothing") from None


def build_parser() -> Parser:
    parser = Parser(prog="python -m cxrcls.weights", description=__doc__)
    parser.add_argument("--archs", nargs="+", default=list(STUDY_ARCHS),
                        choices=sorted(IMAGENET_FILES), help="backbones to fetch")
    parser.add_argument("--check", action="store_true",
                        help="only check that the files are there and intact; fetch nothing")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            for arch in args.archs:
                imagenet_state_dict(arch)
                print(f"weights: {arch} ok ({weights_file(arch)})")
        else:
            for path in fetch(args.archs):
                print(f"weights: {path} ok")
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    sys.stdout.flush()


if __name__ == "__main__":
    main()
