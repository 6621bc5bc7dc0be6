"""Which files and folders are the toolkit's: the rule "a stage only ever replaces files it made".

Standard library only, so that Make can ask before anything is installed:
`python cxrstats/foundation/ownership.py --check-work FOLDER` exits 1, naming a file, when FOLDER
holds anything the toolkit did not write (`make clean-work` asks before it deletes a work folder);
`--check-use FOLDER` prints why FOLDER cannot be a work folder (nothing when it can): Make asks
before a make that runs stages writes there, so a work folder is always one clean-work can delete.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

# A folder the toolkit writes holds this marker; Make's stage stamps (`.done-<stage>*`) sit beside
# a stage's outputs too. A folder with anything else and no marker is not the toolkit's.
FOLDER_MARKER = ".cxr-lungmask"
MAKE_STAMP_PREFIX = ".done-"
MAKE_ENTRIES = (".args", ".lock", ".make")  # Make's own entries at the top of a work folder


def foreign_files(folder: Path, allowed: tuple[str, ...] = (),
                  _above: frozenset[Path] = frozenset()) -> Iterator[Path]:
    """Files under `folder` that are neither Make's stamps, nor an `allowed` name, nor inside a
    marked folder. A symbolic link to a folder (a work folder's cache/ or runs/ on another disk)
    is judged as a folder, by what it holds; deleting the work folder removes the link and leaves
    the folder it points to. A link to a folder above it (a loop) is foreign."""
    above = _above | {folder.resolve()}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(MAKE_STAMP_PREFIX) or path.name in allowed:
            continue
        if not path.is_dir() or (path.is_symlink() and path.resolve() in above):
            yield path
        elif not (path / FOLDER_MARKER).is_file():
            yield from foreign_files(path, _above=above)


def linked_folders(folder: Path) -> list[Path]:
    """The symbolic links to folders directly in `folder` (or in its unmarked sub-folders)."""
    links = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() and path.is_dir():
            links.append(path)
        elif path.is_dir() and not path.is_symlink() and not (path / FOLDER_MARKER).is_file():
            links += linked_folders(path)
    return links


def not_the_toolkits(folder: Path) -> str | None:
    """The first file in a work folder the toolkit did not write (its path inside the folder), or
    None: a marked folder, or one holding only marked stage folders and Make's own entries."""
    if (folder / FOLDER_MARKER).is_file():
        return None
    foreign = next(foreign_files(folder, MAKE_ENTRIES), None)
    return None if foreign is None else str(foreign.relative_to(folder))


def work_folder_problem(folder: str | Path) -> str | None:
    """Why deleting `folder` as a whole would delete files the toolkit did not write; None when it
    holds only the toolkit's stage folders and Make's own entries (or does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir() or folder.is_symlink():
        return f"{folder}: not a work folder (a file or a link)"
    foreign = not_the_toolkits(folder)
    if foreign is None:
        return None
    return (f"{folder}: holds {foreign!r}, which this toolkit did not "
            "write, so it is not (only) a work folder; nothing was deleted. Delete it by hand if "
            "you mean to")


def work_folder_use_problem(folder: str | Path) -> str | None:
    """Why `folder` cannot be a work folder (WORK): it holds a file the toolkit did not write, so
    stage folders written next to it would make a folder that `make clean-work` refuses. None for
    a new or empty folder, or one holding only the toolkit's outputs. A link to a folder is judged
    by that folder (a link is how a folder with a space in its path becomes a WORK)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder}: not a folder"
    foreign = not_the_toolkits(folder.resolve())
    if foreign is None:
        return None
    return (f"{folder}: holds {foreign!r}, which this toolkit did not "
            "write; stage folders written beside it would make a work folder that `make "
            "clean-work` cannot delete. Give WORK a new or empty folder (or one of this toolkit's "
            "work folders); nothing was written")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--check-use":
        print(work_folder_use_problem(argv[1]) or "")
        return 0
    if len(argv) != 2 or argv[0] != "--check-work":
        print("usage: ownership.py --check-work FOLDER | --check-use FOLDER", file=sys.stderr)
        return 2
    problem = work_folder_problem(argv[1])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if Path(argv[1]).is_dir():
        for link in linked_folders(Path(argv[1])):
            print(f"note: {link} is a link; its folder {link.resolve()} stays (delete it by hand "
                  "if you mean to)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
