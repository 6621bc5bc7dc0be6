"""Atomic file writes and run provenance shared by every stage.

Each stage writes `name.tmp` first and renames it over `name`, so an interrupted run never leaves a
half-written file that a later stage (or `make`) would mistake for a finished one.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .names import inside
from .ownership import FOLDER_MARKER, foreign_files


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success rename it over `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as `.npy`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))


def load_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """The array of a `.npy` file, memory-mapped read-only with `mmap`; never a pickle.
    FileNotFoundError / ValueError naming the file when it is missing, truncated (a copy cut short)
    or not a `.npy` array, instead of numpy's message without a name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, EOFError, OSError ... for a broken file
        raise ValueError(f"{path}: not a readable .npy array ({error})") from None


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV with a header row, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)


def read_text(path: str | os.PathLike) -> str:
    """A text file's content, decoded as UTF-8 (a leading byte-order mark, as Excel and LibreOffice
    write, dropped); ValueError naming the file and line when it is not UTF-8 (e.g. Excel's
    Windows-1252 'CSV (Comma delimited)'): guessing another encoding could misread names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = len((data[:start] + b"x").splitlines())
        raise ValueError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[start]:02x}); save "
                         "it as UTF-8 (Excel: 'CSV UTF-8')") from None


def read_csv(path: str | os.PathLike, required: Sequence[str] = ()) -> list[dict[str, str]]:
    """Read a CSV into a list of dicts; ValueError naming the file when columns are missing, a row
    has fewer or more cells than the header (e.g. a truncated file), or the text is not UTF-8
    (`read_text`)."""
    return parse_csv(read_text(path), path, required)


def parse_csv(text: str, path: str | os.PathLike,
              required: Sequence[str] = ()) -> list[dict[str, str]]:
    """`read_csv` of a CSV's text already read from `path` (named in errors)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {columns}")
    rows = []
    for row in reader:  # DictReader keys extra cells by None and fills missing ones with None
        if None in row or None in row.values():
            which = "more" if None in row else "fewer"
            raise ValueError(f"{path}: line {reader.line_num} has {which} cells than the header's "
                             f"{len(columns)} (a truncated or hand-edited file)")
        rows.append(row)
    return rows


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes: tells a later reader whether the file is still the one an
    earlier stage read. FileNotFoundError naming a missing file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


CONTENT = "content_sha256"  # an input stage's content identity, in its completion record
CONTENT_FILES = "content_files"
FILE_SHA256 = "content_file_sha256"  # {name: sha256} of each of those files


def content_facts(folder: str | os.PathLike, names: Sequence[str]) -> dict:
    """The content identity of what a stage wrote that later stages depend on, as facts for its
    completion record: `content_sha256`, a sha256 over each named file's name and sha256 in the
    order given, `content_files`, the names, and `content_file_sha256`, each file's sha256. Two
    makes of a stage hold the same content exactly when this hash is the same, whatever
    arguments made them; `read_done` checks the files against it."""
    hashes = {name: file_sha256(Path(folder) / name) for name in names}
    return {CONTENT: _content_sha256(hashes), CONTENT_FILES: list(names), FILE_SHA256: hashes}


def _content_sha256(hashes: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name, sha256 in hashes.items():
        digest.update(f"{name}\t{sha256}\n".encode())
    return digest.hexdigest()


# A stage that writes one file per image (PNG masks) records each file's sha256 in this sidecar
# (`file, sha256`; `file` its path inside the stage's folder, e.g. `m15/a.png`) rather than in its
# completion record, which would grow with the images; the record lists the sidecar among its
# outputs and in its content identity (`content_facts`), so the record vouches for the sidecar and
# the sidecar for each file. Readers go through `vouched_files`.
FILE_HASHES = "sha256.csv"


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write `data` to `path` atomically; the sha256 (hex) of the bytes written, so that a stage
    hashes each file once, as it writes it (for FILE_HASHES)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_file_hashes(folder: str | os.PathLike, hashes: dict[str, str]) -> None:
    """Write `folder`/FILE_HASHES: one row `file, sha256` per file written, in the order given."""
    write_csv(Path(folder) / FILE_HASHES, ["file", "sha256"], hashes.items())


@dataclass(frozen=True)
class VouchedFiles:
    """The files of `folder` that its completion record vouches for through FILE_HASHES: each is
    read once, and its bytes are checked against its recorded sha256 as they are read."""
    folder: Path
    hashes: dict[str, str]        # path inside folder -> sha256
    done: str                     # the completion record's name
    what: str                     # the stage, for messages ("re-run the <what>")

    def read_bytes(self, name: str) -> bytes:
        """The bytes of `folder/name`; IncompleteRunError naming the file when FILE_HASHES does
        not list it, it is missing, or its bytes are not those the stage wrote (edited, swapped
        with another file, or left from another run)."""
        path, sidecar = self.folder / name, self.folder / FILE_HASHES
        expected = self.hashes.get(name)
        if expected is None:
            raise IncompleteRunError(f"{path}: not listed in {sidecar}, so it is not a file the "
                                     f"{self.what} wrote; re-run the {self.what}")
        if not path.is_file():
            raise IncompleteRunError(f"{path}: missing, though {sidecar} lists it; re-run the "
                                     f"{self.what}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise IncompleteRunError(
                f"{path}: changed since the {self.what} wrote it (its sha256 is not the one "
                f"{sidecar} records: edited, swapped with another file, or left from another "
                f"run); re-run the {self.what}")
        return data


def vouched_files(folder: str | os.PathLike, record: dict, done: str = "done.json",
                  what: str = "run") -> VouchedFiles:
    """The FILE_HASHES sidecar of `folder`, whose completion record `record` (`done`, as read)
    vouches for it by content. IncompleteRunError naming the record when it vouches for none (a
    folder written before stages kept one: its files cannot be checked by content, and a name
    alone does not say they are the stage's), or naming the sidecar when it is missing or its
    bytes are not those the record vouches for; ValueError naming it when it is malformed."""
    folder = Path(folder)
    path = folder / FILE_HASHES
    recorded = record.get(FILE_SHA256) if isinstance(record.get(FILE_SHA256), dict) else {}
    if not recorded.get(FILE_HASHES):
        raise IncompleteRunError(
            f"{folder / done}: vouches for no {FILE_HASHES} (the sha256 of each file it lists), "
            f"so its files cannot be checked by content (a folder made by an older version of "
            f"the toolkit); re-run the {what}")
    if not path.is_file():
        raise IncompleteRunError(f"{path}: missing, though {folder / done} vouches for it; re-run "
                                 f"the {what}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != recorded[FILE_HASHES]:
        raise IncompleteRunError(
            f"{path}: changed since the {what} wrote it (its bytes are not those {folder / done} "
            f"vouches for: edited, truncated or copied from another run); re-run the {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; re-run the {what}") from None
    rows = parse_csv(text, path, ["file", "sha256"])
    return VouchedFiles(folder, {row["file"]: row["sha256"] for row in rows}, done, what)


def current_sha256(path: str | os.PathLike) -> str:
    """file_sha256, hashed once per file version (path, size, mtime) in a process: readers check
    the same large file (a cache, masks) for many runs."""
    status = Path(path).stat()
    return _sha256_of_version(str(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of_version(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def changed_content(folder: str | os.PathLike, record: dict, done: str = "done.json",
                    what: str = "run", files: Sequence[str] | None = None) -> str | None:
    """Why the files a completion record's content identity covers (`content_files`) are not the
    ones its stage wrote (edited, truncated, or copied from another run since), naming the file;
    None when they are, and for a record without a content identity. `files`: only those of them
    that the reader reads are hashed (a mask reader hashes its one mask file, not every radius);
    None: all. A record without each file's sha256 has all hashed, whatever `files`."""
    names = record.get(CONTENT_FILES)
    if not isinstance(names, list) or not record.get(CONTENT):
        return None
    folder = Path(folder)
    recorded = record.get(FILE_SHA256) if isinstance(record.get(FILE_SHA256), dict) else {}
    if files is not None and all(name in recorded for name in names):
        names = [name for name in names if name in set(files)]
    gone = [name for name in names if not (folder / name).is_file()]
    if gone:
        return (f"{folder / gone[0]}: missing, though {folder / done} vouches for it; re-run "
                f"the {what}")
    now = {name: current_sha256(folder / name) for name in names}
    changed = [name for name in names if name in recorded and recorded[name] != now[name]]
    joined = " and "
    if not changed and names == record[CONTENT_FILES] and _content_sha256(now) != record[CONTENT]:
        changed, joined = names, " or "  # a record without each file's sha256: one of them
    if not changed:
        return None
    also = f" ({joined.strip()} {', '.join(changed[1:])})" if len(changed) > 1 else ""
    return (f"{folder / changed[0]}{also}: changed since the {what} wrote it (its bytes are not "
            f"those {folder / done} vouches for: edited, truncated or copied from another run); "
            f"re-run the {what}")


def input_identity(record) -> dict:
    """What a stage reading an input records of it: {"arguments_hash": ..., "content_sha256": ...}
    taken from the input's completion record `record` (content_sha256 only when the record holds
    one). Also reads a recorded identity back: a dict as above, or a bare arguments-hash string
    (the form of a record without content ids) as {"arguments_hash": it}."""
    if isinstance(record, str):
        return {"arguments_hash": record}
    if not isinstance(record, dict):
        return {}
    return {key: record[key] for key in ("arguments_hash", CONTENT) if record.get(key)}


def changed_identity(recorded, current) -> str | None:
    """How an input a stage read (`recorded`: its input_identity as recorded then) differs from
    that input now (`current`: its completion record or input_identity): "content" when a
    recorded content id is not the current one (also when the current record holds none),
    "arguments" when the arguments hashes differ, None when it is still the same input."""
    recorded, current = input_identity(recorded), input_identity(current)
    if CONTENT in recorded and recorded[CONTENT] != current.get(CONTENT):
        return "content"
    if recorded.get("arguments_hash") != current.get("arguments_hash"):
        return "arguments"
    return None


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def git_commit() -> str:
    """The code's git commit (with '+dirty' when the tree has changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour the results depend on."""
    versions = {"python": platform.python_version()}
    for name, dist in (("numpy", "numpy"), ("scipy", "scipy"), ("torch", "torch"),
                       ("torchvision", "torchvision"), ("PIL", "pillow")):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
            continue
        try:  # read the installed version without importing (importing torch takes seconds)
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_run_json(folder: str | os.PathLike, args, seconds: float | None = None,
                   name: str = "run.json", **extra) -> Path:
    """Write `folder/<name>`: the stage's arguments, seed, git commit, versions and duration.

    `args` is an argparse.Namespace or a dict; `extra` adds stage-specific facts (e.g. device).
    Stages that share a folder pass their own `name` (e.g. "run_split.json") so none overwrites
    another.
    """
    arguments = vars(args) if not isinstance(args, dict) else dict(args)
    info = {
        "stage": Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "unknown",
        "command": " ".join(sys.argv),
        "arguments": arguments,
        "seed": arguments.get("seed"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "host": platform.node(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": None if seconds is None else round(float(seconds), 3),
    }
    info.update(extra)
    path = Path(folder) / name
    write_json(path, info)
    return path


# ----------------------------------------------------------------------------- completion records
# A stage's outputs count as finished only when its completion record exists. The record is written
# last, after every output; every run removes the old record when it starts (`begin_run`, which also
# removes the old outputs unless the run resumes), so a run killed half-way can never be read as the
# finished run it replaced. Readers call `read_done` before trusting a folder.

class IncompleteRunError(RuntimeError):
    """A stage's folder has no completion record (or one from other settings): not a finished
    run."""


class ForeignFolderError(ValueError):
    """An output folder holds files the toolkit did not write: a stage refuses to write there."""


# What every stage's command line reports as `error: <message>` (exit status 1) instead of a
# traceback: bad input (ValueError, with the file and the problem in its message), a file
# system error (OSError: missing, unreadable or unwritable files, a full disk; its message names
# the file) and an unfinished prerequisite. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, IncompleteRunError)




def claim_folder(folder: str | os.PathLike, record: str | None = None) -> Path:
    """Make `folder` one the toolkit may write: create it, or accept it when it is marked as the
    toolkit's, holds the stage's own completion `record`, or holds nothing but Make's stamps and
    empty or marked folders; otherwise ForeignFolderError naming a file.

    This is the rule "a stage only ever replaces files it made": a user's folder of images or
    masks given as an output is refused before anything in it is touched.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ForeignFolderError(f"{folder}: not a folder; give a folder for the outputs")
    if (folder / FOLDER_MARKER).is_file():
        return folder
    if folder.is_dir() and not (record and (folder / record).is_file()):
        foreign = next(foreign_files(folder), None)
        if foreign is not None:
            link = f" (a link to {folder.resolve()})" if folder.is_symlink() else ""
            raise ForeignFolderError(
                f"{folder}{link}: holds files this toolkit did not write (e.g. "
                f"{str(foreign.relative_to(folder))!r}) and no {FOLDER_MARKER} marker; nothing "
                "was changed. Give an empty or new folder for the outputs")
    mark_folder(folder)
    return folder


def mark_folder(folder: str | os.PathLike) -> None:
    """Mark `folder` as written by the toolkit (see `claim_folder`), creating it and its missing
    parents; the parents it creates are the toolkit's too and are marked as well."""
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for path in {folder, *created}:
        marker = path / FOLDER_MARKER
        if not marker.is_file():
            marker.write_text("This folder is written by cxr-lungmask; its stages replace only "
                              "files they made.\n")


def arguments_hash(arguments) -> str:
    """A short stable hash of a stage's arguments (argparse.Namespace or dict), for completion
    records."""
    import hashlib

    arguments = vars(arguments) if not isinstance(arguments, dict) else dict(arguments)
    text = json.dumps(arguments, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def begin_run(folder: str | os.PathLike, outputs: Iterable[str], done: str = "done.json",
              resume: bool = False) -> None:
    """Call when a stage starts: remove its old completion record, and unless it resumes, the
    outputs that record covered (so a killed fresh run leaves nothing of the old run beside its own
    files).

    The record goes first, so even if removing the outputs is interrupted nothing reads as finished.
    A folder that is not the toolkit's is refused first (`claim_folder`), and so is a sub-folder
    holding an output (`raw/a.png`) that is not: a sub-folder replaced by a link to a folder of the
    user's own files is never emptied.
    """
    folder = claim_folder(folder, record=done)
    outputs = list(outputs)
    check_not_another_stages(folder, outputs, done)
    for sub in sorted({(folder / name).parent for name in outputs} - {folder}):
        if sub.is_dir():
            claim_folder(sub)
    for name in [done, *([] if resume else outputs)]:
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()


# Four stages name their record done.json (cohort, cache, a training run, the demo data), each
# with a fixed list of outputs; the other records' names say whose they are (done_<stage>.json).
SHARED_RECORD = "done.json"


def check_not_another_stages(folder: Path, outputs: Sequence[str], done: str) -> None:
    """Refuse, before anything is removed, to replace a file another stage's completion record in
    `folder` vouches for, or to take over a done.json of another stage (one listing a file this
    stage does not write): ForeignFolderError naming the file and the record. Stages may share a
    folder (seg/, masks/, results/), never a file."""
    mine = {*outputs, done}
    for record in sorted(folder.glob("done*.json")):
        listed = _listed_outputs(record)
        if record.name == done:
            others = sorted(listed - mine) if done == SHARED_RECORD else []
            if others:
                raise ForeignFolderError(
                    f"{record}: the completion record of another stage (it lists {others[0]!r}, "
                    "which this stage does not write); nothing was changed. Give this stage a "
                    "folder of its own")
            continue
        clash = sorted(listed & mine)
        if clash:
            raise ForeignFolderError(
                f"{folder / clash[0]}: made by the stage whose completion record is {record.name}; "
                "this stage would replace it, so nothing was changed. Give this stage a folder of "
                "its own")


def _listed_outputs(record: Path) -> set[str]:
    """The outputs a completion record lists (empty for an unreadable one)."""
    try:
        outputs = json.loads(record.read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(outputs, list):
        return set()
    return {name for name in outputs if isinstance(name, str)}


def write_done(folder: str | os.PathLike, arguments, outputs: Sequence[str],
               done: str = "done.json", **facts) -> Path:
    """Write the completion record `folder/<done>` last: the outputs it vouches for, the arguments
    and their hash, and stage-specific `facts`. Refuses when a listed output is missing."""
    folder = Path(folder)
    missing = [name for name in outputs if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: outputs {missing} missing; not marking the run "
                                "finished")
    arguments = vars(arguments) if not isinstance(arguments, dict) else dict(arguments)
    record = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "outputs": list(outputs),
        "arguments_hash": arguments_hash(arguments),
        "arguments": arguments,
        **facts,
    }
    path = folder / done
    write_json(path, record)
    mark_folder(folder)
    return path


def read_done(folder: str | os.PathLike, done: str = "done.json", what: str = "run",
              files: Sequence[str] | None = None) -> dict:
    """The completion record of `folder`, or IncompleteRunError naming the folder and what to do:
    no record, an unreadable one, a listed output missing, or a file of its content identity
    (`content_facts`) holding other bytes than the stage wrote (`changed_content`; with `files`,
    only those the reader reads are hashed, each once per process). ValueError naming the record
    when it lists an output that is no path inside `folder` (`recorded_outputs`)."""
    folder = Path(folder)
    path = folder / done
    if not path.is_file():
        raise IncompleteRunError(
            f"{folder}: no {done}, so this {what} did not finish (killed, still running, or "
            f"started again over an older run); re-run it")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IncompleteRunError(f"{path}: unreadable completion record ({e}); "
                                 f"re-run the {what}") from None
    missing = [name for name in recorded_outputs(path, record) if not (folder / name).exists()]
    if missing:
        raise IncompleteRunError(f"{folder}: {done} lists {missing}, which are missing; "
                                 f"re-run the {what}")
    changed = changed_content(folder, record, done, what, files)
    if changed:
        raise IncompleteRunError(changed)
    return record


def recorded_outputs(path: str | os.PathLike, record) -> list[str]:
    """The outputs the completion record at `path` (`record`, as read) lists; ValueError naming
    the record and the entry when `outputs` is no list, or an entry is no path inside the
    record's folder (absolute, `..`, a Windows path: `names.inside`)."""
    path = Path(path)
    outputs = record.get("outputs", []) if isinstance(record, dict) else None
    if not isinstance(outputs, list):
        raise ValueError(f"{path}: not a completion record (`outputs` is no list); the file was "
                         "edited or is not the toolkit's")
    for i, name in enumerate(outputs):
        inside(path.parent, name, f"{path}: outputs[{i}]", what="output")
    return outputs
