"""Image names from label tables, and finding those images by name inside a data folder.

Names come from CSV files, so they are checked to be plain file names (no folders, no `..`) before
they are ever joined to a path: a table can never point outside its data folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


def check_plain_name(name: str, source: str | os.PathLike) -> str:
    """Return `name` if it is a plain file name; raise ValueError naming `source` otherwise."""
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
           or name != name.strip() or os.path.basename(name) != name)
    if bad:
        raise ValueError(f"{source}: image name {name!r} is not a plain file name "
                         "(no folders, '..', or surrounding spaces allowed)")
    return name


def locate_images(names: Iterable[str], root: str | os.PathLike) -> list[Path]:
    """Paths of `names` found anywhere under `root` (NIH ships images_001/images/...), in order.

    Raises FileNotFoundError counting (and listing a few of) the names that are missing, and
    ValueError when a name occurs in two sub-folders (which file is meant would be a guess).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    names = list(names)
    wanted = set(names)
    found: dict[str, Path] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name in wanted:
                path = Path(folder) / name
                if name in found:
                    raise ValueError(f"{root}: image {name!r} occurs twice: {found[name]} and {path}")
                found[name] = path
    missing = [n for n in names if n not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{root}: {len(missing)} of {len(names)} images not found under "
                                f"this folder (e.g. {shown})")
    return [found[n] for n in names]
