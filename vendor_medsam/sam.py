"""The Segment Anything model as MedSAM uses it: image i goes with prompt row i, boxes in
model-input pixels.

`forward` is trainable (no no_grad inside); inference code wraps it in torch.inference_mode().
"""
from __future__ import annotations

import torch
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

# coords (B, P, 2) (x, y), labels (B, P): 1 fg, 0 bg, -1 padding
Points = tuple[torch.Tensor, torch.Tensor]


class Sam(nn.Module):
    """image encoder + prompt encoder + mask decoder.

    config_name: the named configuration it was built from; img_size: model input side
    (1024/256/64); family: "medsam" (square resize + min-max) or "lite" (longest side + min-max +
    zero pad bottom/right).
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder, config_name: str, family: str) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        # LiteMedSAM's checkpoint lists mask_decoder before prompt_encoder; registering in the
        # same order keeps state_dict() identical to the official files (strict loading does not
        # care, manifests do).
        if family == "lite":
            self.mask_decoder = mask_decoder
            self.prompt_encoder = prompt_encoder
        else:
            self.prompt_encoder = prompt_encoder
            self.mask_decoder = mask_decoder
        self.config_name = config_name
        self.family = family
        self.img_size = image_encoder.img_size

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution logits: 4 x the embedding grid (256 for ViT-B and
        LiteMedSAM).
        """
        return 4 * self.prompt_encoder.image_embedding_size[0]

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None,
                points: Points | None = None, masks: torch.Tensor | None = None,
                multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) in [0, 1] -> low-res logits (B, 1|3, 4h, 4w), IoU predictions
        (B, 1|3).
        """
        if (images.ndim != 4 or images.shape[1] != 3
                or images.shape[-1] != self.img_size or images.shape[-2] != self.img_size):
            raise ValueError(f"{self.config_name}: expected images "
                             f"(B, 3, {self.img_size}, {self.img_size}), got {tuple(images.shape)}")
        return self.decode(self.image_encoder(images), boxes, points, masks, multimask_output)

    def decode(self, image_embeddings: torch.Tensor, boxes: torch.Tensor | None = None,
               points: Points | None = None, masks: torch.Tensor | None = None,
               multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed (B|1, C, h, w) embeddings (B prompt
        rows).
        """
        if boxes is None and points is None and masks is None:
            raise ValueError("give at least one prompt: boxes, points or masks")
        sparse, dense = self.prompt_encoder(points, boxes, masks)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse,
                                 dense, multimask_output)
