"""SAM's ViT image encoder (MedSAM ViT-B): 16x16 patches, windowed and global attention, conv
neck.

Data flow for ViT-B at 1024x1024: patch embedding -> (B, 64, 64, 768) channels-last token grid
-> + absolute position embedding -> 12 blocks (windowed 14x14 attention, global in blocks 2, 5, 8,
11; decomposed relative position terms in every attention) -> neck -> (B, 256, 64, 64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided conv; output is channels-last (B, H/p, W/p, C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_position_table(table: torch.Tensor, q_size: int, k_size: int) -> torch.Tensor:
    """Look up R[qy - ky + (k_size - 1)] for every (query, key) pair: (q_size, k_size, head_dim).

    The table has 2*size-1 rows, one per signed offset. SAM would interpolate a table of another
    length; none of our configurations needs that, so a mismatch is an error.
    """
    if q_size != k_size or table.shape[0] != 2 * q_size - 1:
        raise ValueError(
            f"relative position table has {table.shape[0]} rows, expected {2 * q_size - 1} for a "
            f"{q_size}x{k_size} attention window (image size not supported by this configuration)"
        )
    q_coords = torch.arange(q_size, device=table.device)[:, None]
    k_coords = torch.arange(k_size, device=table.device)[None, :]
    return table[q_coords - k_coords + (k_size - 1)]


class Attention(nn.Module):
    """Multi-head self-attention on a (B, H, W, C) grid with decomposed relative position terms.

    The qkv projection is laid out as (3, heads, head_dim): q is the first C channels, then k,
    then v.
    The relative terms use the *unscaled* query: logits = (q*scale) k^T + q.Rh[dy] + q.Rw[dx].
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, use_rel_pos: bool,
                 grid_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            # Registered before qkv so the state_dict order matches SAM's (rel_pos_h, rel_pos_w,
            # qkv, proj).
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        heads = self.num_heads
        # (B, N, 3, heads, hd) -> (3, B, heads, N, hd)
        qkv = self.qkv(x).reshape(B, H * W, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = None
        if self.use_rel_pos:
            bias = self.relative_position_bias(q, H, W)  # (B, heads, N, N)
        # softmax((q*scale) k^T + bias) v; the fused kernel is faster on CPU than the written-out
        # product for ViT-B's global 4096-token attention and its 14x14 windows (make bench).
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, H, W, C)
        return self.proj(out)

    def relative_position_bias(self, q: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """rel_h[b,h,y,x,ky] = sum_c q[b,h,y,x,c] Rh[y-ky], likewise rel_w; broadcast to
        (B, heads, N, N).
        """
        B, heads, N, hd = q.shape
        Rh = relative_position_table(self.rel_pos_h, H, H)  # (H, kH, hd)
        Rw = relative_position_table(self.rel_pos_w, W, W)  # (W, kW, hd)
        q = q.reshape(B, heads, H, W, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", q, Rh)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", q, Rw)
        bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, heads, H, W, kH, kW)
        return bias.reshape(B, heads, N, N)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (B, H, W, C) at bottom/right to multiples of `window`, cut into raster-order
    windows.

    Returns (B * nWin, window, window, C) and the padded size (Hp, Wp).
    """
    B, H, W, C = x.shape
    pad_h = (window - H % window) % window
    pad_w = (window - W % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C), (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int],
                       size: tuple[int, int]) -> torch.Tensor:
    """Inverse of window_partition: (B * nWin, window, window, C) -> (B, H, W, C), padding
    cropped.
    """
    Hp, Wp = padded
    H, W = size
    B = windows.shape[0] // ((Hp // window) * (Wp // window))
    x = windows.view(B, Hp // window, Wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :]
    return x


class Block(nn.Module):
    """Pre-norm transformer block; window_size 0 means global attention over the whole grid."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 use_rel_pos: bool, window_size: int, grid_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos,
                              grid_size=window_size if window_size > 0 else grid_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)  # windows are padded *after* the norm: padded tokens are exact zeros
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, padded = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """(B, 3, S, S) image in [0, 1] -> (B, out_chans, S/patch, S/patch) embedding."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, out_chans: int = 256,
                 qkv_bias: bool = True, use_abs_pos: bool = True, use_rel_pos: bool = True,
                 window_size: int = 14,
                 global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        # Channels-last absolute position embedding, (1, grid, grid, C).
        self.pos_embed = (nn.Parameter(torch.zeros(1, grid, grid, embed_dim)) if use_abs_pos
                          else None)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, use_rel_pos,
                  window_size=0 if i in global_attn_indexes else window_size, grid_size=grid)
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
