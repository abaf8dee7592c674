"""LSAM's compiled step kernel: equal to the PyTorch loop and the line-by-line twin (outputs, final
states, every gradient; padding, odd sizes, both directions), float32 accuracy, and the fallback."""

import pytest
import torch

from neural_attention_memory.models import _lsam_kernel, lsam
from neural_attention_memory.models.lsam import LSAM, LSAMState

torch.set_num_threads(1)

needs_kernel = pytest.mark.skipif(
    _lsam_kernel.get() is None, reason="no C compiler: the PyTorch loop is used"
)


def _runs(m, x, state, pad):
    """Outputs, final state and the gradients of (x, M0, h0, every parameter) for the kernel, the
    PyTorch loop and the twin, under one random cotangent."""
    torch.manual_seed(123)
    params = [x, *state, *m.parameters()]
    results = []
    cots = None
    for run in (
        lambda: m(x, state, pad, use_kernel=True),
        lambda: m(x, state, pad, use_kernel=False),
        lambda: m.forward_reference(x, state, pad),
    ):
        out, (M, h) = run()
        if cots is None:
            cots = [torch.randn_like(t) for t in (out, M, h)]
        loss = sum((t * c).sum() for t, c in zip((out, M, h), cots))
        grads = torch.autograd.grad(loss, params)
        results.append([out.detach(), M.detach(), h.detach(), *grads])
    return results


def _state(m, B, dtype=torch.double):
    M0, h0 = m.init_state(B, dtype=dtype)
    return LSAMState(M0.normal_().requires_grad_(), h0.normal_().requires_grad_())


@needs_kernel
@pytest.mark.parametrize(
    "kw",
    [
        dict(num_layers=1),
        dict(num_layers=2, separate_erase=True),
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=1, bidirectional=True, separate_erase=True),
    ],
)
@pytest.mark.parametrize("hidden,heads", [(12, 4), (10, 2)])  # d = 3, d = 5
def test_kernel_equals_torch_loop_and_twin_float64(kw, hidden, heads):
    torch.manual_seed(0)
    m = LSAM(5, hidden, heads, **kw).double()
    B, T = 4, 7
    x = torch.randn(B, T, 5, dtype=torch.double, requires_grad=True)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, 4:] = True  # right padding
    pad[2, :2] = True  # left padding
    pad[2, 5] = True  # a hole
    pad[3] = True  # a row that is all padding
    kernel, loop, twin = _runs(m, x, _state(m, B), pad)
    assert len(kernel) == len(loop) == len(twin)
    for a, b, c in zip(kernel, loop, twin, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(b, c, rtol=1e-10, atol=1e-10)
    assert torch.all(kernel[0][pad] == 0)


@needs_kernel
def test_kernel_without_padding_batch_one_and_time_major():
    torch.manual_seed(1)
    m = LSAM(3, 8, 2, num_layers=2, batch_first=False).double()
    x = torch.randn(9, 1, 3, dtype=torch.double, requires_grad=True)
    kernel, loop, twin = _runs(m, x, _state(m, 1), None)
    for a, b, c in zip(kernel, loop, twin, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(b, c, rtol=1e-10, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("separate_erase", [False, True])
def test_kernel_float32_agrees_with_float64(separate_erase):
    torch.manual_seed(2)
    m = LSAM(6, 32, 4, num_layers=2, separate_erase=separate_erase)
    x = torch.randn(3, 20, 6)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[0, 15:] = True
    cot = torch.randn(3, 20, 32)
    out32 = m(x, padding_mask=pad)[0]
    g32 = torch.autograd.grad((out32 * cot).sum(), list(m.parameters()))
    m64 = LSAM(6, 32, 4, num_layers=2, separate_erase=separate_erase).double()
    m64.load_state_dict(m.state_dict())
    out64 = m64.forward_reference(x.double(), padding_mask=pad)[0]
    g64 = torch.autograd.grad((out64 * cot.double()).sum(), list(m64.parameters()))
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-6)
    for a, b in zip(g32, g64, strict=True):
        assert float((a.double() - b).norm() / b.norm()) < 1e-5


@needs_kernel
def test_kernel_is_used_by_default(monkeypatch):
    k = _lsam_kernel.get()
    calls = []
    real = {name: getattr(k, name) for name in ("forward_step", "backward_step")}
    for name, fn in real.items():
        monkeypatch.setattr(k, name, lambda dtype, _n=name, _f=fn: calls.append(_n) or _f(dtype))
    m = LSAM(5, 12, 4)
    m(torch.randn(2, 3, 5, requires_grad=True))[0].sum().backward()
    assert calls == ["forward_step", "backward_step"]
    calls.clear()
    m(torch.randn(2, 3, 5), use_kernel=False)
    assert calls == []
    LSAM(5, 12, 4).to(torch.bfloat16)(torch.randn(2, 3, 5, dtype=torch.bfloat16))
    assert calls == []  # no bfloat16 kernel: the PyTorch loop


def test_disabled_or_unbuildable_kernel_falls_back(monkeypatch, tmp_path):
    m = LSAM(5, 12, 4, num_layers=2).double()
    x = torch.randn(2, 4, 5, dtype=torch.double)
    pad = torch.tensor([[False, False, True, False], [False] * 4])
    want = m.forward_reference(x, padding_mask=pad)[0]
    monkeypatch.setenv("NAM_LSAM_KERNEL", "0")
    assert _lsam_kernel.get() is None
    torch.testing.assert_close(m(x, padding_mask=pad)[0], want, rtol=1e-10, atol=1e-10)
    monkeypatch.delenv("NAM_LSAM_KERNEL")
    monkeypatch.setattr(_lsam_kernel, "_state", {})
    monkeypatch.setattr(_lsam_kernel, "_compiler", lambda: None)
    with pytest.warns(UserWarning, match="LSAM step kernel unavailable, using the PyTorch loop"):
        assert _lsam_kernel.get() is None
    torch.testing.assert_close(m(x, padding_mask=pad)[0], want, rtol=1e-10, atol=1e-10)
    monkeypatch.undo()
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(_lsam_kernel, "SOURCE", bad)
    monkeypatch.setenv("NAM_KERNEL_CACHE", str(tmp_path / "cache"))
    if _lsam_kernel._compiler() is None:
        with pytest.raises(RuntimeError, match="no C compiler"):
            _lsam_kernel.build()
    else:
        with pytest.raises(RuntimeError, match="failed"):
            _lsam_kernel.build()


@needs_kernel
def test_kernel_backward_leaves_saved_state_intact():
    # The backward rebuilds M in a copy: a second backward through the same graph is identical.
    m = LSAM(5, 12, 4).double()
    x = torch.randn(2, 6, 5, dtype=torch.double, requires_grad=True)
    out, (M, h) = m(x)
    loss = (out**2).sum() + (M**2).sum() + h.sum()
    g1 = torch.autograd.grad(loss, [x, *m.parameters()], retain_graph=True)
    g2 = torch.autograd.grad(loss, [x, *m.parameters()])
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)


def test_keep_heads_layout():
    keep = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # [T=2, B=2]
    kh = lsam._keep_heads(keep, 3)
    assert kh.shape == (2, 6, 1, 1)
    assert kh[0].flatten().tolist() == [1, 1, 1, 0, 0, 0]
    assert lsam._keep_heads(None, 3) is None
