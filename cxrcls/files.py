"""Image names from label tables, and finding those images by name inside a data folder.

Names come from CSV files, so they are checked to be plain file names before they are ever joined
to a path (`cxrstats.foundation.names.plain_name`, the one rule): a table can never point outside
its data folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from cxrstats.foundation.names import name_key


def check_unique(names: Iterable[str], source: str | os.PathLike) -> None:
    """Raise ValueError naming `source` when a name occurs twice (a row would count twice), also
    in two Unicode forms (`name_key`: one file on a Mac, two rows here)."""
    first: dict[str, tuple[int, str]] = {}
    for i, name in enumerate(names):
        key = name_key(name)
        if key in first:
            row, seen = first[key]
            forms = "" if seen == name else (f" (once as {seen!r}: the same name in another "
                                             "Unicode form)")
            raise ValueError(f"{source}: image {name!r} is listed twice (rows {row + 1} "
                             f"and {i + 1} after the header){forms}; remove the duplicate")
        first[key] = (i, name)


def walk_files(root: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """(folder, file name) of every file under `root`, following symbolic links to folders.

    Datasets are often linked in (`images -> /mnt/bigdisk/nih`), so links are followed; a folder
    reached twice (a link to an ancestor, or two links to one folder) is walked once, so a loop
    cannot run forever and a file is never seen twice through two routes.
    """
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        for name in files:
            yield folder, name


def locate_images(names: Iterable[str], root: str | os.PathLike) -> list[Path]:
    """Paths of `names` found anywhere under `root` (NIH ships images_001/images/...), in order.

    Symbolic links to folders and files are followed (see `walk_files`). Raises FileNotFoundError
    counting (and listing a few of) the names that are missing, and ValueError when a name occurs
    in two sub-folders (which file is meant would be a guess) or is a broken link.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    names = list(names)
    wanted = set(names)
    found: dict[str, Path] = {}
    for folder, name in walk_files(root):
        if name not in wanted:
            continue
        path = Path(folder) / name
        if not path.exists():
            raise ValueError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} "
                             "does not exist)")
        if name in found and not os.path.samefile(found[name], path):
            raise ValueError(f"{root}: image {name!r} occurs twice: {found[name]} and {path}")
        found.setdefault(name, path)
    missing = [n for n in names if n not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{root}: {len(missing)} of {len(names)} images not found under "
                                f"this folder (e.g. {shown}){near_miss(missing, root)}")
    return [found[n] for n in names]


def near_miss(missing: list[str], root: str | os.PathLike) -> str:
    """A hint for a name not found: the first file under `root` that differs from a missing name
    only in case, extension or Unicode form (a table written without extensions, in capitals, or
    with accents composed where a Mac wrote the file name decomposed); '' when none. Walks the
    folder again: only on the way to an error."""
    def keys(name: str) -> tuple[str, str]:
        name = name_key(name).lower()
        return name, os.path.splitext(name)[0]
    wanted = {key: name for name in missing for key in keys(name)}
    for _, name in walk_files(root):
        hit = next((wanted[k] for k in keys(name) if k in wanted), None)
        if hit is not None:
            return (f"; {hit!r} is there as {name!r}: names must match the files' exactly, "
                    "extension, case and Unicode form included")
    return ""
