"""The study's classifiers: torchvision ResNet50 / DenseNet121 with a 5-logit head.

The wrapper takes gray images (B, 1, H, W) in [0, 1], repeats them to 3 channels and applies the
ImageNet normalization, so callers never see backbone-specific preprocessing. `resnet18` is offered
as a small extra (quick checks, tests); the study's backbones are resnet50 and densenet121.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from cxrcls.imagenet_files import ARCHS
from cxrcls.labels import FINDINGS
from cxrcls.weights import imagenet_state_dict
from cxrstats.foundation.checkpoints import load_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Classifier(nn.Module):
    """gray (B, 1, H, W) in [0, 1] -> logits (B, num_outputs)."""

    def __init__(self, arch: str = "resnet50", num_outputs: int = len(FINDINGS),
                 imagenet: bool = False):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
        self.arch = arch
        self.net = getattr(torchvision.models, arch)(weights=None)
        if imagenet:  # from the project's weights folder (`make weights`), never downloaded
            self.net.load_state_dict(imagenet_state_dict(arch))
        head_name = "fc" if arch.startswith("resnet") else "classifier"
        self.head_name = head_name
        in_features = getattr(self.net, head_name).in_features
        setattr(self.net, head_name, nn.Linear(in_features, num_outputs))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.frozen_backbone = False

    @property
    def head(self) -> nn.Linear:
        return getattr(self.net, self.head_name)

    def freeze_backbone(self) -> None:
        """Linear probe: only the head trains; the backbone (BatchNorm statistics included) is
        fixed."""
        for p in self.net.parameters():
            p.requires_grad_(False)
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.frozen_backbone = True
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.frozen_backbone:  # keep BatchNorm running statistics of a frozen backbone fixed
            self.net.eval()
            self.head.train(mode)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.expand(-1, 3, -1, -1)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.net(x)


def load_weights(model: Classifier, path: str | Path) -> str:
    """Load a checkpoint into `model` (through the guarded load, `cxrstats.foundation.checkpoints`):
    our best.pt/last.pt ({"model": ...}) or a raw state dict, with or without the `net.` prefix (a
    plain torchvision state dict). A head of another shape
    (another label set) is skipped and re-initialized. Returns a one-line note of what was
    loaded."""
    path = Path(path)
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}
    own = model.state_dict()
    head_keys = {f"net.{model.head_name}.weight", f"net.{model.head_name}.bias"}
    skipped = [k for k in head_keys if k in state and state[k].shape != own[k].shape]
    for k in skipped:
        del state[k]
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: does not fit {model.arch}: {len(missing)} missing, "
                         f"{len(unexpected)} unexpected, {len(wrong)} of another shape "
                         f"(e.g. {(missing + unexpected + wrong)[:3]})")
    model.load_state_dict(state, strict=False)
    return f"loaded {path}" + (" (head of another shape re-initialized)" if skipped else "")


def build_model(arch: str, weights: str = "none", num_outputs: int = len(FINDINGS)) -> Classifier:
    """`weights`: 'imagenet' (the project's copy of torchvision's, see `cxrcls.weights`), 'none',
    or a file path."""
    if weights == "imagenet":
        return Classifier(arch, num_outputs, imagenet=True)
    model = Classifier(arch, num_outputs)
    if weights != "none":
        print(load_weights(model, weights))
    return model
