"""Names read from files, before they are joined to a folder: the rule "names from CSVs and
records never escape their folder".

Label tables, cohort.csv, index.csv and splits.csv name images; completion records (`done*.json`)
name the files and folders a stage wrote or read. A name from a file is only ever joined to a path
through this module:

- `plain_name`: one file name (an image in a table): no folder, not `.` or `..`, no `/` or `\\`
  (a Windows path), no control character (NUL, newline, tab), no surrounding spaces, at most
  255 bytes (the file systems' limit);
- `inside(folder, relative, source)`: `folder / relative` for a relative path from a record
  (`runs/resnet50_m15/split0`, `masks/m15.npy`, `raw/a.png`), so that an absolute path, a `..`
  or a Windows path in a record is refused, naming the record;
- `name_key`: the form two names are compared in when a table must not list one image twice
  (Unicode NFC: `café` composed and decomposed are one name; a Mac writes the second).

The check is on the text, not on the disk: symbolic links inside a folder (a work folder's
`cache/` on a fast disk) are followed as the user made them.
"""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

MAX_NAME_BYTES = 255   # the longest file name ext4, XFS, APFS and NTFS take


def part_problem(name) -> str | None:
    """Why `name`, joined to a folder, could name something else than a file in it (empty, `.`,
    `..`, a folder separator of POSIX or Windows, NUL); None when it cannot."""
    if not isinstance(name, str) or not name:
        return "it is empty" if name == "" else f"it is no text ({type(name).__name__})"
    if name in (".", ".."):
        return f"{name!r} names a folder"
    if "/" in name or "\\" in name:
        return "it holds a folder separator ('/' or '\\')"
    if "\x00" in name:
        return "it holds a NUL character"
    return None


def name_problem(name) -> str | None:
    """Why `name` is not a plain file name (module docstring), in words; None when it is one."""
    problem = part_problem(name)
    if problem:
        return problem
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character (a newline, tab, ...)"
    if name != name.strip():
        return "it has surrounding spaces"
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def plain_name(name, source: str | os.PathLike, what: str = "image name") -> str:
    """`name` if it is a plain file name (module docstring); ValueError naming `source` (the file
    and line or row it came from) otherwise."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"{source}: {what} {name!r} is not a plain file name ({problem}); "
                         "names in tables and records never name a file outside their folder")
    return name


def relative_problem(relative) -> str | None:
    """Why `relative` is not a path inside a folder (parts separated by '/', none of them empty,
    `.`, `..` or holding `\\` or NUL: `part_problem`); None when it is one. The parts are file
    names a stage wrote (a radiograph's own name may hold spaces), so only escaping is refused."""
    if not isinstance(relative, str) or not relative:
        return "it is empty" if relative == "" else f"it is no text ({type(relative).__name__})"
    if relative.startswith("/"):
        return "it is an absolute path"
    for part in relative.split("/"):
        problem = part_problem(part)
        if problem:
            return f"its part {part!r}: {problem}"
    return None


def inside(folder: str | os.PathLike, relative, source: str | os.PathLike,
           what: str = "path") -> Path:
    """`folder / relative` for a relative path read from a file (`source`, the record or table
    and the entry); ValueError naming `source` when `relative` could point outside `folder`."""
    problem = relative_problem(relative)
    if problem:
        raise ValueError(f"{source}: {what} {relative!r} is not a path inside {folder} "
                         f"({problem}); the file was edited or is not the toolkit's")
    return Path(folder) / relative


def name_key(name: str) -> str:
    """The form in which two names are the same name: Unicode NFC."""
    return unicodedata.normalize("NFC", name)
