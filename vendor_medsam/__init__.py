"""vendor_medsam: our own SAM / MedSAM (ViT-B) / LiteMedSAM (TinyViT) model code in plain PyTorch.

Loads the official checkpoints unchanged and reproduces the official outputs (see
tests/test_vendor_*).
  build_sam(config) -> Sam              random weights; configs "vit_b", "lite", "micro", "tiny"
  load_medsam(path_or_name, config)     strict loading; "lite" = the sha256-checked LiteMedSAM file
  transforms.InputFrame                 image pixels <-> model input / low-res logits
Batched inference (images and prompts in, probability masks out) is cxrseg.engine's.
"""
from .checkpoint import load_medsam
from .configs import CONFIGS, SamConfig, build_sam
from .sam import Sam

__all__ = ["CONFIGS", "Sam", "SamConfig", "build_sam", "load_medsam"]
