"""BF16Adam: bf16 weight copies with float32 master weights give autocast + Adam's numbers, keep
torch.optim.Adam's state_dict, and are chosen only for bf16 on a CPU in one process."""
import pytest
import torch
from torch import nn

from cxrcls.bf16adam import BF16_MODULES, BF16Adam
from cxrcls.models import Classifier
from cxrcls.training import make_optimizer, optimizer_kind, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def model():
    torch.manual_seed(0)
    return Classifier("resnet18").train().to(memory_format=torch.channels_last)


def batches(n=3):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(4, 1, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
             (torch.rand(4, 5, generator=g) < 0.4).float()) for _ in range(n)]


def autocast_adam(net, lr):
    """The reference: float32 weights under autocast, torch.optim.Adam (for-each) for the
    convolution and linear weights and fused Adam for the rest, as BF16Adam splits them."""
    copied = [p for m in net.modules() if isinstance(m, BF16_MODULES)
              for p in m.parameters(recurse=False)]
    ids = {id(p) for p in copied}
    rest = [p for p in net.parameters() if id(p) not in ids]
    a = torch.optim.Adam(copied, lr=lr, foreach=True)
    b = torch.optim.Adam(rest, lr=lr, fused=True)

    class Both:
        def zero_grad(self, set_to_none=True):
            a.zero_grad(set_to_none), b.zero_grad(set_to_none)

        def step(self):
            a.step(), b.step()
    return Both(), a


def assert_same_state(a: nn.Module, b: nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_eager_update_is_autocast_with_adam_to_the_bit():
    reference, ours = model(), model()
    ref_opt, ref_adam = autocast_adam(reference, 1e-3)
    opt = BF16Adam(ours, 1e-3, compile_update=False)
    for x, y in batches():
        a = train_step(reference, ref_opt, x, y, "bf16")
        b = train_step(ours, opt, x, y, "bf16")
        assert torch.equal(a, b)
    assert opt.update_kind == "eager"
    assert_same_state(reference, ours)          # weights and BatchNorm statistics
    for p, q in zip([p for p in reference.parameters()], ours.parameters()):
        if p in ref_adam.state:
            assert torch.equal(ref_adam.state[p]["exp_avg"], opt.state[q]["exp_avg"])
            assert torch.equal(ref_adam.state[p]["exp_avg_sq"], opt.state[q]["exp_avg_sq"])
    assert all(p.dtype == torch.float32 for p in ours.parameters())


def test_compiled_update_agrees_with_the_eager_one_to_rounding():
    eager, compiled = model(), model()
    opt_e = BF16Adam(eager, 1e-3, compile_update=False)
    opt_c = BF16Adam(compiled, 1e-3)
    x, y = batches(1)[0]
    train_step(eager, opt_e, x, y, "bf16")
    train_step(compiled, opt_c, x, y, "bf16")
    if opt_c.update_kind != "compiled":
        pytest.skip("torch.compile is not available here (no C++ compiler?)")
    # the two may differ in the last bits of a float32 weight (a weight here is below 1)
    assert float((opt_e.weights - opt_c.weights).abs().max()) <= 1e-6
    assert float((opt_e.copies != opt_c.copies).float().mean()) < 1e-3
    assert torch.equal(opt_e.exp_avg_sq > 0, opt_c.exp_avg_sq > 0)


def test_state_dict_is_adams_and_a_resume_continues_exactly():
    batch = batches(3)
    straight = model()
    opt = BF16Adam(straight, 1e-3, compile_update=False)
    for x, y in batch:
        train_step(straight, opt, x, y, "bf16")

    first = model()
    opt1 = BF16Adam(first, 1e-3, compile_update=False)
    for x, y in batch[:2]:
        train_step(first, opt1, x, y, "bf16")
    saved_model = {k: v.clone() for k, v in first.state_dict().items()}
    saved_opt = opt1.state_dict()
    plain = torch.optim.Adam([p for p in model().parameters()], lr=1e-3, fused=True)
    plain.load_state_dict(saved_opt)   # torch.optim.Adam reads it as its own

    resumed = model()
    opt2 = BF16Adam(resumed, 1e-3, compile_update=False)
    resumed.load_state_dict(saved_model)   # the copies follow the loaded weights
    opt2.load_state_dict(saved_opt)
    assert float(opt2.step_count) == 2
    train_step(resumed, opt2, *batch[2], "bf16")
    assert_same_state(straight, resumed)


def test_the_copies_follow_weights_loaded_after_the_optimizer_was_made():
    trained, fresh = model(), model()
    opt = BF16Adam(trained, 1e-2, compile_update=False)
    x, y = batches(1)[0]
    train_step(trained, opt, x, y, "bf16")
    fresh_opt = BF16Adam(fresh, 1e-2, compile_update=False)
    fresh.load_state_dict(trained.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fresh_opt.forward(x), trained(x))


class WithUnusedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.unused = nn.Conv2d(1, 2, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.conv(x).mean((1, 2, 3))


def test_a_weight_without_a_gradient_is_refused_by_name():
    net = WithUnusedLayer()
    opt = BF16Adam(net, 1e-3, compile_update=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = opt.forward(torch.rand(2, 1, 5, 5))
    out.float().sum().backward()
    with pytest.raises(RuntimeError, match="no gradient for unused.weight"):
        opt.step()


def test_asked_for_and_bf16_on_one_cpu_process_only():
    assert isinstance(make_optimizer(model(), 1e-4, "bf16", bf16_copies=True), BF16Adam)
    for precision, distributed, copies in (("fp32", False, True), ("bf16", True, True),
                                           ("bf16", False, False)):
        opt = make_optimizer(model(), 1e-4, precision, distributed=distributed,
                             bf16_copies=copies)
        assert type(opt) is torch.optim.Adam and optimizer_kind(opt) == "adam"
    opt = make_optimizer(model(), 1e-4, "bf16", bf16_copies=True)
    assert optimizer_kind(opt) == "adam, bf16 weight copies, update not yet run"


def test_where_compiling_fails_the_update_runs_eagerly_with_a_warning(monkeypatch):
    def no_compiler(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler found")
        return fail
    eager, fallback = model(), model()
    opt_e = BF16Adam(eager, 1e-3, compile_update=False)
    monkeypatch.setattr(torch, "compile", no_compiler)
    opt_f = BF16Adam(fallback, 1e-3)
    x, y = batches(1)[0]
    train_step(eager, opt_e, x, y, "bf16")
    with pytest.warns(UserWarning, match="torch.compile failed.*no C.. compiler"):
        train_step(fallback, opt_f, x, y, "bf16")
    assert opt_f.update_kind == "eager"
    assert_same_state(eager, fallback)
