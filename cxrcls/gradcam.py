"""Grad-CAM (Selvaraju et al., ICCV 2017), written out with a forward hook and torch only.

For a convolutional layer with activations A (B, C, h, w) and a class score y_c (the logit of one
finding), Grad-CAM weights each channel by its average gradient and keeps the positive part:

    alpha_k = mean over (h, w) of d y_c / d A_k,      cam = ReLU(sum_k alpha_k A_k)   (B, h, w)

The map lives on the layer's grid (for a 64 px input, ResNet's `layer4` is 2 x 2; at 512 px,
16 x 16) and is upsampled to the image by the caller. The default layer is each backbone's last
convolutional block: `layer4` for ResNets, `features` for DenseNet121 (its output before the final
ReLU, as torchvision's `DenseNet.forward` applies that ReLU in place after the module). Given the
input size, `target_layer` instead takes the deepest block whose grid is at least `min_grid` cells
a side (default 7, the grid Grad-CAM was introduced with: ResNet's last block at 224 px), so a small
input (64 px: `layer2` / `features.denseblock2`, 8 x 8) still gets a map that can tell a corner
from the lungs, while 224 px and larger inputs keep the last block.

How the gradient is taken: a forward hook replaces the layer's output with a detached copy that
requires grad, so the graph of the rest of the network starts there; `torch.autograd.grad` of the
score with respect to that copy then runs back through the head only (pooling and the linear layer)
and accumulates no parameter gradients. (A module backward hook would need the layer's output to be
left untouched, which DenseNet's in-place ReLU breaks.) The network's parameters are switched to
`requires_grad=False` during the call (and restored), so no graph is recorded before the layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# The last convolutional block of each backbone family, as a path inside Classifier.net.
DEFAULT_LAYERS = {"resnet": "layer4", "densenet": "features"}
# Each family's blocks, deepest first; each one's grid is twice as fine as the one before.
LAYER_LADDER = {"resnet": ("layer4", "layer3", "layer2", "layer1"),
                "densenet": ("features", "features.denseblock3", "features.denseblock2",
                             "features.denseblock1")}
MIN_GRID = 7


def default_layer_name(arch: str) -> str:
    """`layer4` for resnet18/50, `features` for densenet121."""
    return DEFAULT_LAYERS[_family(arch)]


def _family(arch: str) -> str:
    for family in LAYER_LADDER:
        if arch.startswith(family):
            return family
    raise ValueError(f"no default Grad-CAM layer for arch {arch!r}; pass a layer name")


def layer_grids(model: nn.Module, names: tuple[str, ...], image_size: int) -> dict[str, int]:
    """Grid side (h of the (B, C, h, w) output) of each named layer of `model.net` for a square
    (1, 1, image_size, image_size) input, from one forward pass of zeros."""
    root = getattr(model, "net", model)
    sides: dict[str, int] = {}
    handles = [root.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: sides.__setitem__(name, int(out.shape[-2])))
        for name in names]
    try:
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 1, image_size, image_size, device=parameter.device,
                              dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return sides


def finest_deep_layer(model: nn.Module, image_size: int, min_grid: int = MIN_GRID) -> str:
    """The deepest block of the model's family whose grid is at least `min_grid` a side for
    `image_size` px inputs; the finest block when none is."""
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ValueError("model has no `arch`; pass the Grad-CAM layer name")
    ladder = LAYER_LADDER[_family(arch)]
    sides = layer_grids(model, ladder, image_size)
    return next((name for name in ladder if sides[name] >= min_grid), ladder[-1])


def target_layer(model: nn.Module, name: str | None = None, image_size: int | None = None,
                 min_grid: int = MIN_GRID) -> tuple[str, nn.Module]:
    """The layer to explain: `name` is a dotted path inside `model.net` (a cxrcls Classifier) or
    inside `model` itself (any other module). Without a name: given `image_size`, the deepest block
    with a grid of at least `min_grid` (`finest_deep_layer`), else the last convolutional block.
    Returns (name, module); ValueError naming the path when it does not exist."""
    root = getattr(model, "net", model)
    if name is None:
        arch = getattr(model, "arch", None)
        if arch is None:
            raise ValueError("model has no `arch`; pass the Grad-CAM layer name")
        name = (default_layer_name(arch) if image_size is None
                else finest_deep_layer(model, image_size, min_grid))
    try:
        return name, root.get_submodule(name)
    except AttributeError:
        raise ValueError(f"layer {name!r} not found in the model "
                         f"(top-level children: {[n for n, _ in root.named_children()]})") from None


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor,
             targets: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of `layer` for each target output.

    model: in eval mode (BatchNorm must not mix the images of a batch), x (B, ...) its input,
    targets: output columns to explain (default: all). Returns cams (T, B, h, w) float32 >= 0 on x's
    device, one map per target and image, and the logits (B, K), both detached.
    Because the model is in eval mode, image b's score depends on image b only, so the gradient of
    the batch's summed score gives every image's own gradient in one pass.
    """
    if model.training:
        raise ValueError("grad_cam needs the model in eval mode (call model.eval())")
    captured: dict[str, torch.Tensor] = {}

    def forward_hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(f"Grad-CAM layer must output a (B, C, h, w) tensor, got "
                             f"{type(output).__name__} {getattr(output, 'shape', '')}")
        activation = output.detach().float().requires_grad_(True)
        captured["activation"] = activation
        # Return a copy: an in-place op after the layer (DenseNet's ReLU) must not change A.
        return activation.clone().to(output.dtype)

    flags = [p.requires_grad for p in model.parameters()]
    handle = layer.register_forward_hook(forward_hook)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            logits = model(x)
            if "activation" not in captured:
                raise ValueError("the Grad-CAM layer was not run by the model's forward pass")
            activation = captured["activation"]
            if not logits.requires_grad:
                raise ValueError("the model's output does not depend on the Grad-CAM layer")
            targets = list(range(logits.shape[1])) if targets is None else list(targets)
            cams = []
            for i, t in enumerate(targets):
                (gradient,) = torch.autograd.grad(logits[:, t].sum(), activation,
                                                  retain_graph=i < len(targets) - 1)
                weights = gradient.mean(dim=(2, 3), keepdim=True)           # (B, C, 1, 1)
                cams.append(torch.relu((weights * activation.detach()).sum(dim=1)))
    finally:
        handle.remove()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return torch.stack(cams), logits.detach()
