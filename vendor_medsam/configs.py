"""Named model configurations and `build_sam`.

vit_b: MedSAM (SAM ViT-B, 1024x1024); lite: LiteMedSAM (TinyViT, 256x256); micro and tiny: the
random-weight reference models used in tests (64x64 and 256x256 SAM-ViT). Every size is a
constructor argument, so a new configuration is one more entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer


@dataclass(frozen=True)
class SamConfig:
    """encoder: "vit" or "tinyvit" plus its constructor kwargs; prompt/decoder sizes; family for
    pre-processing.
    """

    name: str
    family: str  # "medsam" | "lite"
    encoder: str  # "vit" | "tinyvit"
    encoder_args: dict = field(default_factory=dict)
    img_size: int = 1024
    embed_grid: int = 64  # image embedding side h = w
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256


CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(
        name="vit_b", family="medsam", encoder="vit", img_size=1024, embed_grid=64,
        encoder_args=dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, out_chans=256,
                          window_size=14, global_attn_indexes=(2, 5, 8, 11)),
    ),
    "lite": SamConfig(
        name="lite", family="lite", encoder="tinyvit", img_size=256, embed_grid=64,
        encoder_args=dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                          num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio=4.0,
                          mbconv_expand_ratio=4.0, local_conv_size=3, out_chans=256),
    ),
    "tiny": SamConfig(
        name="tiny", family="medsam", encoder="vit", img_size=256, embed_grid=16,
        encoder_args=dict(patch_size=16, embed_dim=64, depth=2, num_heads=2, out_chans=256,
                          window_size=5, global_attn_indexes=(1,)),
    ),
    "micro": SamConfig(
        name="micro", family="medsam", encoder="vit", img_size=64, embed_grid=4, prompt_dim=32,
        mask_in_chans=4, decoder_mlp_dim=64, decoder_heads=2, iou_head_hidden_dim=32,
        encoder_args=dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, out_chans=32,
                          window_size=3, global_attn_indexes=(1,)),
    ),
}


def get_config(config: str | SamConfig) -> SamConfig:
    if isinstance(config, SamConfig):
        return config
    if config not in CONFIGS:
        raise ValueError(f"unknown model config {config!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[config]


def build_sam(config: str | SamConfig) -> Sam:
    """A randomly initialised model of the named configuration (load weights with load_medsam)."""
    cfg = get_config(config)
    if cfg.encoder == "vit":
        encoder = ImageEncoderViT(img_size=cfg.img_size, **cfg.encoder_args)
    elif cfg.encoder == "tinyvit":
        encoder = TinyViT(img_size=cfg.img_size, **cfg.encoder_args)
    else:
        raise ValueError(f"config {cfg.name}: unknown encoder {cfg.encoder!r}")
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.prompt_dim,
        image_embedding_size=(cfg.embed_grid, cfg.embed_grid),
        input_image_size=(cfg.img_size, cfg.img_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=cfg.prompt_dim,
        transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=cfg.prompt_dim,
                                      num_heads=cfg.decoder_heads, mlp_dim=cfg.decoder_mlp_dim),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return Sam(encoder, prompt_encoder, mask_decoder, config_name=cfg.name, family=cfg.family)
