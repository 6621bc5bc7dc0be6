"""LiteMedSAM's image encoder: a TinyViT-5M variant that keeps full resolution in its stem.

Data flow at 256x256 (LiteMedSAM):
  stem: 1x1 Conv-BN (3->32), GELU, 1x1 Conv-BN (32->64)                      (B, 64, 256, 256)
  stage 0: 2 MBConv blocks, then PatchMerging (stride 2)                       (B, 128, 128, 128)
  stage 1: 2 TinyViT blocks, window 7,  4 heads, then PatchMerging (stride 2)  (B, 160, 64, 64)
  stage 2: 6 TinyViT blocks, window 14, 5 heads, then PatchMerging (stride 1)  (B, 320, 64, 64)
  stage 3: 2 TinyViT blocks, window 7, 10 heads                                (B, 320, 64, 64)
  neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d                           (B, 256, 64, 64)
A TinyViT block is: windowed attention (learned per-head bias on |dy|, |dx|) + residual, a 3x3
depthwise Conv-BN over the grid, then a pre-norm MLP + residual. Stage tensors here are NCHW (conv
stages) or channels-last grids (B, H, W, C) (attention stages).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .image_encoder import window_partition, window_unpartition


class Conv2dBN(nn.Module):
    """Bias-free Conv2d followed by BatchNorm2d (submodules `c` and `bn`, as in the checkpoint).

    In eval mode BatchNorm (running statistics) is a per-channel affine map, so it is folded into
    the conv weights on the fly: same parameters and state dict, one pass less over the
    activations.
    """

    fold_bn_at_eval = True  # class switch, for A/B benchmarks

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups,
                           bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.fold_bn_at_eval:
            return self.bn(self.c(x))
        c, bn = self.c, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, c.weight * scale[:, None, None, None], bias, c.stride, c.padding,
                        c.dilation, c.groups)


class PatchEmbed(nn.Module):
    """The stem: two 1x1 Conv-BN with GELU between; LiteMedSAM does not downsample here."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_chans, embed_dim // 2), nn.GELU(),
                                 Conv2dBN(embed_dim // 2, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (each Conv-BN), residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        return self.act3(x + self.conv3(y))


class PatchMerging(nn.Module):
    """Downsample (B, C, H, W) -> (B, out, H', W'): 1x1, 3x3 depthwise (stride 2; 1 for
    320/448/576 out), 1x1.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        # TinyViT-for-SAM keeps 64x64 in the last stage
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2dBN(dim, out_dim)
        self.act = nn.GELU()
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


def attention_bias_index(window: int) -> torch.Tensor:
    """(N, N) index, N = window^2, of the offset |dy| * window + |dx| between two positions of a
    window.
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class Attention(nn.Module):
    """Window attention on (B*, N, C) tokens: LayerNorm, per-head qkv, learned offset bias,
    projection.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads  # key_dim = value dim = dim / heads in LiteMedSAM
        self.scale = self.head_dim ** -0.5
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Not in the checkpoint; indexing on every call means there is no eval-time cache to go
        # stale.
        self.register_buffer("attention_bias_idxs", attention_bias_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        x = self.norm(x)
        # Per-head layout: (heads, [q | k | v]) -- unlike the SAM ViT's (3, heads, head_dim).
        qkv = self.qkv(x).view(B, N, self.num_heads, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        # Written out rather than F.scaled_dot_product_attention: with a float bias on CPU the fused
        # call was slower here (it scans the mask for -inf rows on every call).
        scores = (q * self.scale) @ k.transpose(-2, -1)
        # The bias takes the scores' dtype: under bfloat16 autocast a float32 bias would promote
        # the (B*, heads, N, N) scores to float32 and back, two copies of the largest tensor.
        bias = self.attention_biases[:, self.attention_bias_idxs].to(scores.dtype)  # (heads, N, N)
        out = (scores + bias).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Pre-norm feed-forward: LayerNorm, fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """(B, H, W, C) grid -> same. Attention runs on zero-padded raw tokens (padding before the
    norm).
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float,
                 local_conv_size: int) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        windows, padded = window_partition(x, self.window)
        attn = self.attn(windows.view(-1, self.window * self.window, C))
        x = x + window_unpartition(attn.view_as(windows), self.window, padded, (H, W))
        # no residual around the conv
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on (B, C, H, W), then the downsample."""

    def __init__(self, dim: int, out_dim: int, depth: int, expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """An attention stage on (B, C, H, W) input: TinyViT blocks on the channels-last grid,
    optional downsample.
    """

    def __init__(self, dim: int, out_dim: int | None, depth: int, num_heads: int, window: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """(B, 3, S, S) image in [0, 1] -> (B, out_chans, S/4, S/4) embedding."""

    def __init__(self, img_size: int = 256, in_chans: int = 3,
                 embed_dims: tuple[int, ...] = (64, 128, 160, 320),
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (2, 4, 5, 10),
                 window_sizes: tuple[int, ...] = (7, 7, 14, 7), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3,
                 out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        # Run the convs in channels-last (NHWC) layout: faster on CPU here, and the attention
        # stages' (B, H, W, C) grids then convert to and from NCHW without copies.
        self.channels_last = True
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        layers: list[nn.Module] = [
            ConvLayer(embed_dims[0], embed_dims[1], depths[0], mbconv_expand_ratio)]
        for i in range(1, len(depths)):
            out_dim = embed_dims[i + 1] if i + 1 < len(depths) else None
            layers.append(BasicLayer(embed_dims[i], out_dim, depths[i], num_heads[i],
                                     window_sizes[i], mlp_ratio, local_conv_size))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
