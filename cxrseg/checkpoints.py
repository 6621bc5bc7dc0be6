"""Checkpoint files of both training loops (cxrseg.finetune, cxrcls.train) and of every reader of
weights: atomic save, the one guarded load, and the `--resume` policy.

The guarded load is `vendor_medsam.checkpoint.load_checkpoint_file` (torch.load(weights_only=True),
FileNotFoundError for a missing file, ValueError naming the file for an empty, corrupt or foreign
one, pickled code refused): it sits in the bottom model layer, which imports nothing of cxrseg, and
this module hands it on so that cxrseg and cxrcls read every checkpoint through it.

Resume policy: `--resume` continues from last.pt and ends where an uninterrupted run ends; it is
refused (naming the file) when last.pt is missing, unreadable, lacks the loop's state, or was saved
with other settings (the flags that alter the result). Make passes `--resume` only when last.pt
exists (profiles/pipeline.mk, resume_if_fresh).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from cxrstats.fileio import atomic_path
from vendor_medsam.checkpoint import load_checkpoint_file

__all__ = ["save_checkpoint", "load_checkpoint", "read_resume", "restoring"]


def save_checkpoint(path: str | os.PathLike, obj: dict) -> None:
    """torch.save `obj` to `path` atomically: a killed save never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike):
    """The guarded load (see the module docstring): the object in `path`, on the CPU, unchecked."""
    return load_checkpoint_file(path)


def read_resume(path: str | os.PathLike, settings: Mapping, *, settings_key: str,
                required: Iterable[str], stage: str) -> dict:
    """last.pt for `--resume`, checked: it exists, holds `required` and `settings_key`, and its
    saved settings (under `settings_key`) equal `settings`.

    FileNotFoundError or ValueError naming the file otherwise; `stage` (e.g. "cxrcls.train")
    names the loop in the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: --resume given but there is no last.pt to resume from; "
                                "start without --resume")
    state = load_checkpoint(path)
    missing = [k for k in (*required, settings_key)
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: not a {stage} last.pt (missing {missing}); start afresh "
                         "without --resume")
    saved = state[settings_key] if isinstance(state[settings_key], dict) else {}
    changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if changed:
        raise ValueError(f"{path}: cannot resume with different settings {changed} (saved, given); "
                         "use the same flags, or start afresh without --resume")
    return state


@contextmanager
def restoring(path: str | os.PathLike) -> Iterator[None]:
    """Wrap the loading of last.pt's states into model, optimizer and generators: an error there
    (a state of another shape or kind) becomes a ValueError naming the file."""
    try:
        yield
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot restore the training state ({error}); start afresh "
                         "without --resume") from None
