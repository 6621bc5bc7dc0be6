"""Checkpoint files of both training loops (cxrseg.finetune, cxrcls.train) and of every reader of
weights: atomic save, the one guarded load, and the `--resume` policy.

`load_checkpoint` is the project's one guarded torch.load (weights_only=True, on the CPU):
FileNotFoundError for a missing file, ValueError naming the file for an empty, corrupt or foreign
one, pickled code refused. The model layer (vendor_medsam), cxrseg and cxrcls read every checkpoint
through it.

Resume policy: `--resume` continues from last.pt and ends where an uninterrupted run ends; it is
refused (naming the file) when last.pt is missing, unreadable, lacks the loop's state, or was saved
with other settings (the flags that alter the result). Make passes `--resume` only when last.pt
exists (profiles/pipeline.mk, resume_if_fresh).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from cxrstats.foundation.fileio import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "read_resume", "restoring"]


def save_checkpoint(path: str | os.PathLike, obj: dict) -> None:
    """torch.save `obj` to `path` atomically: a killed save never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path):
    """The guarded load: torch.load(weights_only=True) of `path` on the CPU, with a clear
    ValueError for an empty, truncated, corrupt or pickled file (FileNotFoundError for a missing
    one). Returns the object unchecked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # bytes that are no pickle at all, not refused code
            raise ValueError(f"{path}: not a readable PyTorch checkpoint (corrupt file, or not a "
                             f"checkpoint): {_detail(e, 'Unsupported')}") from e
        raise ValueError(f"{path}: refused to load: the checkpoint contains pickled objects or "
                         f"code beyond tensors and plain containers (loaded with "
                         f"torch.load(weights_only=True)). Re-save it as a plain state dict. "
                         f"Details: {_detail(e, 'GLOBAL')}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file?): "
                         f"{_detail(e)}") from e


def _detail(error: BaseException, key: str = "") -> str:
    """The first line of an exception's message that contains `key` (else its first line), or the
    exception's type name when the message is empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    fallback = lines[0] if lines else type(error).__name__
    return next((line for line in lines if key and key in line), fallback)


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
