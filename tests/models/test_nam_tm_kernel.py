"""The compiled NAM-TM tape kernel: equal to the PyTorch loop and the line-by-line twin (outputs,
states, all gradients), float32 and float64, odd sizes; the fallback when it is unavailable."""

import pytest
import torch

from neural_attention_memory.models import _tape_kernel
from neural_attention_memory.models.nam_tm import NAMTMState, NAMTuringMachine

KINDS = {
    "2022": {"controller": "bigru", "tied_erase": True, "key_tape": "position"},
    "2023": {"controller": "lstm", "tied_erase": False, "key_tape": "key"},
    "mix": {"controller": "lstm", "tied_erase": False, "key_tape": "position"},
}
VARIANTS = {
    "full": {},
    "nojump": {"actions": ("noop", "left", "right")},
    "onlyjump": {"actions": ("noop", "jump")},
    "norw": {"rw_prob": False},
    "noerase": {"erase": False},
}

needs_kernel = pytest.mark.skipif(
    _tape_kernel.get() is None, reason="no C compiler: the PyTorch loop is used"
)


def _runs(m, x, st, pad):
    """Outputs + final state + every gradient for kernel, PyTorch loop and twin."""
    params = [x, *st, *m.parameters()]
    results = []
    for run in (
        lambda: m(x, st, pad, use_kernel=True),
        lambda: m(x, st, pad, use_kernel=False),
        lambda: m.forward_reference(x, st, pad),
    ):
        out, new = run()
        outs = [out, *new]
        g = torch.Generator().manual_seed(0)
        cots = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
        loss = sum((o * c).sum() for o, c in zip(outs, cots))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append([o.detach() for o in outs] + [gr for gr in grads if gr is not None])
    return results


@needs_kernel
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_kernel_equals_torch_loop_and_twin_float64(kind, variant):
    # Odd sizes: L = 19 and d = 5 are padded to 32 and 16 inside the kernel.
    torch.manual_seed(1)
    m = NAMTuringMachine(6, 3, 5, tape_length=19, **KINDS[kind], **VARIANTS[variant]).double()
    B, T = 3, 9
    x = torch.randn(B, T, 6, dtype=torch.double, requires_grad=True)
    s = m.init_state(B, dtype=torch.double, tape_length=19)
    st = NAMTMState(*(t.normal_().requires_grad_() for t in s))
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, [1, 4]] = True
    pad[2, 6:] = True
    kernel, loop, twin = _runs(m, x, st, pad)
    assert len(kernel) == len(loop) == len(twin)
    for a, b, c in zip(kernel, loop, twin):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(b, c, rtol=1e-9, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_several_lane_groups(kind):
    # B * N = 21 (batch, tape) pairs: one full group of 16 lanes and one partial group of 5.
    torch.manual_seed(4)
    m = NAMTuringMachine(6, 3, 4, tape_length=7, **KINDS[kind]).double()
    x = torch.randn(7, 6, 6, dtype=torch.double, requires_grad=True)
    s = m.init_state(7, dtype=torch.double, tape_length=7)
    st = NAMTMState(*(t.normal_().requires_grad_() for t in s))
    pad = torch.zeros(7, 6, dtype=torch.bool)
    pad[3, 2:] = True
    kernel, loop, twin = _runs(m, x, st, pad)
    for a, b, c in zip(kernel, loop, twin, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_float32_agrees_with_float64(kind):
    torch.manual_seed(2)
    m = NAMTuringMachine(16, 4, 32, tape_length=41, **KINDS[kind])
    m64 = NAMTuringMachine(16, 4, 32, tape_length=41, **KINDS[kind]).double()
    m64.load_state_dict(m.state_dict())
    x = torch.randn(4, 40, 16)
    out32, st32 = m(x)
    out64, st64 = m64(x.double(), use_kernel=False)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(st32.tape.double(), st64.tape, rtol=1e-4, atol=1e-5)
    g32 = torch.autograd.grad(out32.square().sum(), list(m.parameters()))
    g64 = torch.autograd.grad(out64.square().sum(), list(m64.parameters()))
    for a, b in zip(g32, g64):
        assert float((a.double() - b).norm() / b.norm()) < 1e-4


@needs_kernel
def test_kernel_is_used_by_default():
    calls = []
    k = _tape_kernel.get()
    original = type(k).scan

    def spy(self, *args):
        calls.append(1)
        return original(self, *args)

    try:
        type(k).scan = spy
        m = NAMTuringMachine(8, 2, 4)
        m(torch.randn(2, 3, 8))
        assert calls == [1]
        m(torch.randn(2, 3, 8), use_kernel=False)
        assert calls == [1]
    finally:
        type(k).scan = original


def test_disabled_or_unbuildable_kernel_falls_back(monkeypatch):
    monkeypatch.setenv("NAM_TAPE_KERNEL", "0")
    assert _tape_kernel.get() is None
    m = NAMTuringMachine(8, 2, 4).double()
    x = torch.randn(2, 5, 8, dtype=torch.double)
    torch.testing.assert_close(m(x)[0], m.forward_reference(x)[0], rtol=1e-10, atol=1e-10)
    monkeypatch.delenv("NAM_TAPE_KERNEL")
    monkeypatch.setattr(_tape_kernel, "_state", {})
    monkeypatch.setattr(_tape_kernel, "_compiler", lambda: None)
    with pytest.warns(UserWarning, match="tape kernel unavailable, using the PyTorch loop"):
        assert _tape_kernel.get() is None
    torch.testing.assert_close(m(x)[0], m.forward_reference(x)[0], rtol=1e-10, atol=1e-10)


def test_build_reports_a_compiler_error(monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(_tape_kernel, "SOURCE", bad)
    monkeypatch.setenv("NAM_KERNEL_CACHE", str(tmp_path / "cache"))
    if _tape_kernel._compiler() is None:
        with pytest.raises(RuntimeError, match="no C compiler"):
            _tape_kernel.build()
    else:
        with pytest.raises(RuntimeError, match="failed"):
            _tape_kernel.build()
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-written left behind


@needs_kernel
@pytest.mark.parametrize("key_mode", [None, "position", "key"])
def test_tape_scan_kernel_equals_torch_loop(key_mode):
    # tape_scan's own kernel path (the layers call the fused plan + scan + output kernel).
    from neural_attention_memory.models._tape_scan import tape_scan

    g = torch.Generator().manual_seed(5)
    T, BN, d, L = 6, 19, 3, 7
    D = 2 * d if key_mode == "position" else d
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.double).requires_grad_()  # noqa: E731
    A = torch.softmax(torch.randn(T, BN, 2, 4, generator=g, dtype=torch.double), -1)
    args = [
        rnd(T, BN, D),
        rnd(T, BN, 1),
        rnd(T, BN, 1, d) if key_mode else None,
        A.requires_grad_(),
        rnd(T, BN, 1, d) if key_mode == "key" else None,
        rnd(T, BN, 1) if key_mode == "key" else None,
        rnd(BN, D, L),
        rnd(BN, L, d) if key_mode == "key" else None,
        rnd(BN, 2, L),
    ]
    leaves = [a for a in args if a is not None]
    results = []
    for use_kernel in (True, False):
        outs = [o for o in tape_scan(*args, d, key_mode, True, use_kernel) if o is not None]
        cots = [
            torch.randn(o.shape, generator=torch.Generator().manual_seed(6), dtype=o.dtype)
            for o in outs
        ]
        grads = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), leaves)
        results.append([o.detach() for o in outs] + list(grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("BN", [16, 21, 5])
def test_pack_and_unpack_equal_the_torch_layout_change(dtype, BN):
    # The C packing of states into lanes against its PyTorch twin (_lanes / _unlanes), with full,
    # partial and single lane groups; zero=True packs zeros without reading its argument.
    k = _tape_kernel.get()
    G = -(-BN // _tape_kernel.LANES)
    x = torch.randn(BN, 3, 7, dtype=dtype)
    packed = k.pack(x, BN, G)
    want = _tape_kernel._lanes(x, G, state=True)
    assert packed.shape == (G, 21, _tape_kernel.LANES)
    assert torch.equal(packed, want.view_as(packed))
    assert torch.equal(k.unpack(packed, BN, BN, 3, 7), x)
    assert torch.equal(k.unpack(packed, BN, BN, 3, 7), _tape_kernel._unlanes(want, BN, BN, 3, 7))
    assert torch.equal(k.pack(x.fill_(float("nan")), BN, G, zero=True), torch.zeros_like(packed))
    y = torch.randn(3, BN, dtype=dtype).t()  # a non-contiguous state: packed from a copy
    assert torch.equal(k.pack(y, BN, G), _tape_kernel._lanes(y, G, state=True))
