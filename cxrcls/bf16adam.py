"""Adam for bfloat16 training on CPU: float32 master weights, bf16 copies, one pass per step.

Under autocast each forward pass casts every float32 convolution and linear weight to bf16, and the
backward pass casts each bf16 weight gradient back to float32 for Adam: two passes over the
weights besides Adam's own. On small images (the demo's 64 px) those passes cost about as much
as the bf16 convolutions save. Here the bf16 copies are kept between steps (the forward pass runs
on them, so autocast casts no weight), and one kernel per step reads the bf16 gradients, updates
the float32 weights and Adam's float32 state, and writes the new bf16 copies.

- The numbers are autocast's: a copy is the float32 weight rounded to bf16, as autocast rounds it,
  and the update is torch.optim.Adam's arithmetic on the gradient (to the bit when run eagerly;
  compiled, up to the last bits of a float32 result).
- The model keeps float32 parameters (checkpoints, evaluation and prediction see no difference):
  the optimizer moves the convolution and linear weights into one flat float32 buffer and leaves
  the parameters as views of it. Its state_dict is torch.optim.Adam's, so either loads the other's.
- The kernel is compiled with torch.compile (it needs a C++ compiler; torch caches the result on
  disk, so later runs load it in a few seconds); where that fails the same arithmetic runs eagerly,
  op by op (slower than autocast). `update_kind` says which ran.
"""
from __future__ import annotations

import logging
import math
import warnings

import torch
from torch import nn
from torch.func import functional_call

# The modules whose weights autocast runs in bf16 on CPU (the others, BatchNorm, stay float32).
BF16_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def adam_update(weights, grads_bf16, exp_avg, exp_avg_sq, copies, step_size, bias2_sqrt,
                beta1: float, beta2: float, eps: float) -> None:
    """One Adam step over flat (N,) buffers, in place: float32 weights and state, bf16 gradients
    in, bf16 copies of the new weights out. step_size, bias2_sqrt: 0-d float32 tensors.
    Run eagerly it is torch.optim.Adam's arithmetic (for-each and single-tensor forms) to the bit;
    compiled, results can differ in their last bits (the compiled kernel fuses multiply-adds, and
    its square root is correctly rounded where torch's vectorized one is not always)."""
    grads = grads_bf16.float()
    exp_avg.lerp_(grads, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
    weights.add_(exp_avg.mul(-step_size).div_(denom))  # addcdiv_(exp_avg, denom, -step_size)
    copies.copy_(weights)


def flat_view(flat: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """flat[offset:offset + like.numel()] with like's shape and strides (like: dense)."""
    return flat.as_strided(like.shape, like.stride(), offset)


class BF16Adam(torch.optim.Adam):
    """torch.optim.Adam (fused) whose convolution and linear weights train through bf16 copies.

    Use `optimizer.forward(x)` under bf16 autocast in place of `model(x)` for training steps."""

    def __init__(self, model: nn.Module, lr: float, compile_update: bool = True):
        trainable = [p for p in model.parameters() if p.requires_grad]
        super().__init__(trainable, lr=lr, fused=True)
        self.model = model
        self.names, self.params = [], []
        for module_name, module in model.named_modules():
            if isinstance(module, BF16_MODULES):
                for name, p in module.named_parameters(recurse=False):
                    if p.requires_grad:
                        self.names.append(f"{module_name}.{name}" if module_name else name)
                        self.params.append(p)
        n = sum(p.numel() for p in self.params)
        device = self.params[0].device if self.params else torch.device("cpu")
        self.weights = torch.empty(n, device=device)
        self.copies = torch.empty(n, dtype=torch.bfloat16, device=device)
        self.grads = torch.empty(n, dtype=torch.bfloat16, device=device)
        self.exp_avg = torch.zeros(n, device=device)
        self.exp_avg_sq = torch.zeros(n, device=device)
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)  # Adam's `step`
        self.offsets, self.copy_views, self.grad_views = [], [], []
        offset = 0
        with torch.no_grad():
            for p in self.params:
                dense = p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last)
                if not dense:
                    raise ValueError(f"BF16Adam: a weight of shape {tuple(p.shape)} is not dense")
                view = flat_view(self.weights, offset, p)
                view.copy_(p)
                p.data = view
                self.copy_views.append(flat_view(self.copies, offset, p).requires_grad_())
                self.grad_views.append(flat_view(self.grads, offset, p))
                self.offsets.append(offset)
                offset += p.numel()
        self._point_state_at_buffers()
        self._synced_version = -1
        self._compile = compile_update
        self._update = None
        self.update_kind = "not yet run"

    def _point_state_at_buffers(self) -> None:
        """Adam's per-parameter state for the flat weights: views of the flat state buffers."""
        for p, offset in zip(self.params, self.offsets):
            self.state[p] = {"step": self.step_count,
                             "exp_avg": flat_view(self.exp_avg, offset, p),
                             "exp_avg_sq": flat_view(self.exp_avg_sq, offset, p)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """model(x) with the bf16 copies standing in for the convolution and linear weights
        (refreshed first if the float32 weights changed outside `step`, e.g. by a load)."""
        if self._synced_version != self.weights._version:
            with torch.no_grad():
                self.copies.copy_(self.weights)
            self._synced_version = self.weights._version
        return functional_call(self.model, dict(zip(self.names, self.copy_views)), (x,))

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for view in self.copy_views:
            view.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("BF16Adam.step takes no closure")
        super().step()  # the float32 parameters (BatchNorm): gradients on the parameters
        if not self.params:
            return None
        for name, view, grad_view in zip(self.names, self.copy_views, self.grad_views):
            if view.grad is None:
                raise RuntimeError(f"BF16Adam: no gradient for {name}; every convolution and "
                                   "linear weight must take part in the loss")
            grad_view.copy_(view.grad)
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.step_count += 1
        step = float(self.step_count)
        step_size = torch.tensor(group["lr"] / (1 - beta1 ** step), dtype=torch.float32)
        bias2_sqrt = torch.tensor(math.sqrt(1 - beta2 ** step), dtype=torch.float32)
        self._run_update(step_size, bias2_sqrt, beta1, beta2, group["eps"])
        self._synced_version = self.weights._version
        return None

    def _run_update(self, step_size, bias2_sqrt, beta1, beta2, eps) -> None:
        args = (self.weights, self.grads, self.exp_avg, self.exp_avg_sq, self.copies,
                step_size, bias2_sqrt, beta1, beta2, eps)
        if self._update is None:
            self._update, self.update_kind = adam_update, "eager"
            if self._compile and self._compiled_first_update(args):
                return
        self._update(*args)

    def _compiled_first_update(self, args) -> bool:
        """Compile adam_update and run it on `args`: True, or False (with a warning, the buffers
        as they were) where compiling fails."""
        compiled = torch.compile(adam_update, dynamic=True, fullgraph=True)
        saved = [t.clone() for t in args[:5]]
        quiet = logging.getLogger("torch.utils.cpp_extension")  # its "no CUDA runtime found"
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            compiled(*args)
        except Exception as error:  # no C++ compiler, an unsupported platform, ...
            for t, s in zip(args[:5], saved):
                t.copy_(s)
            reason = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(f"BF16Adam: torch.compile failed ({type(error).__name__}: {reason}); "
                          "the update runs op by op (Adam's arithmetic, slower)", stacklevel=3)
            return False
        finally:
            quiet.setLevel(level)
        self._update, self.update_kind = compiled, "compiled"
        return True

    def load_state_dict(self, state_dict: dict) -> None:
        """torch.optim.Adam's state_dict (of the same parameters), into the flat buffers."""
        super().load_state_dict(state_dict)
        steps = set()
        with torch.no_grad():
            for p, offset in zip(self.params, self.offsets):
                state = self.state.get(p, {})
                if state:
                    flat_view(self.exp_avg, offset, p).copy_(state["exp_avg"])
                    flat_view(self.exp_avg_sq, offset, p).copy_(state["exp_avg_sq"])
                    steps.add(float(state["step"]))
                else:
                    flat_view(self.exp_avg, offset, p).zero_()
                    flat_view(self.exp_avg_sq, offset, p).zero_()
                    steps.add(0.0)
        if len(steps) > 1:
            raise ValueError(f"BF16Adam: the saved state's convolution and linear weights were "
                             f"updated different numbers of times ({sorted(steps)})")
        self.step_count.fill_(steps.pop() if steps else 0.0)
        self._point_state_at_buffers()
