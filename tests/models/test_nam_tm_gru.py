"""The 2022 NAM-TM's bidirectional GRU controller, both implementations (the C kernel and the
PyTorch path: fused forward + hand-written backward) against ``nn.GRU`` (outputs and all
gradients, with padding), gradcheck and gradgradcheck, float32 against float64."""

import pytest
import torch
from torch import nn

from neural_attention_memory.models import _gru, _tape_kernel
from neural_attention_memory.models._gru import bigru_forward

IMPLS = [
    pytest.param(
        True,
        id="kernel",
        marks=pytest.mark.skipif(
            _tape_kernel.get() is None, reason="no C compiler: the PyTorch path is used"
        ),
    ),
    pytest.param(False, id="torch"),
]


def _packed(gru, x, lengths):
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@pytest.mark.parametrize("use_kernel", IMPLS)
@pytest.mark.parametrize("lengths", [None, [6, 4, 1]])
def test_equals_nn_gru_outputs_and_all_gradients(lengths, use_kernel):
    torch.manual_seed(0)
    gru = nn.GRU(5, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    if lengths is None:
        ours, ref = bigru_forward(gru, x, use_kernel=use_kernel), gru(x)[0]
        real = torch.ones(3, 6, 1, dtype=torch.double)
    else:
        n = torch.tensor(lengths)
        ours, ref = bigru_forward(gru, x, n, use_kernel), _packed(gru, x, n)
        real = (torch.arange(6)[None] < n[:, None]).unsqueeze(-1).double()
    torch.testing.assert_close(ours * real, ref * real, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(ref) * real  # padded positions are unspecified: no gradient from them
    params = [x, *gru.parameters()]
    g_ours = torch.autograd.grad((ours * cot).sum(), params)
    g_ref = torch.autograd.grad((ref * cot).sum(), params)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_kernel", IMPLS)
def test_gradcheck_and_gradgradcheck(use_kernel):
    torch.manual_seed(1)
    gru = nn.GRU(3, 2, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    n = torch.tensor([4, 2])
    params = (x, *gru.parameters())

    real = (torch.arange(4) < n[:, None]).unsqueeze(-1)

    def f(x, *w):  # all inputs, with padding (padded outputs are unspecified: masked)
        if use_kernel:
            return _gru._BiGRUKernel.apply(_tape_kernel.get(), x, n, *w) * real
        return _gru._bigru_torch(x, n, w) * real

    assert torch.autograd.gradcheck(f, params)
    assert torch.autograd.gradgradcheck(f, params)
    fx = lambda x: bigru_forward(gru, x, use_kernel=use_kernel)  # noqa: E731
    assert torch.autograd.gradcheck(fx, (x,))
    assert torch.autograd.gradgradcheck(fx, (x,))
    # Second-order gradients through the weights equal nn.GRU's.
    ref = nn.GRU(3, 2, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(gru.state_dict())
    results = []
    for out, w in (
        (bigru_forward(gru, x, use_kernel=use_kernel), gru.weight_hh_l0_reverse),
        (ref(x)[0], ref.weight_hh_l0_reverse),
    ):
        (g,) = torch.autograd.grad(out.square().sum(), w, create_graph=True)
        results.append(torch.autograd.grad(g.square().sum(), x)[0])
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("use_kernel", IMPLS)
def test_float32_agrees_with_float64_and_empty_rows(use_kernel):
    # The kernel's float32 exp is its own polynomial: check it against float64 at the model's size,
    # with a row of zero length (all padding: zero outputs, zero gradients) and large pre-activations.
    torch.manual_seed(3)
    gru = nn.GRU(16, 64, batch_first=True, bidirectional=True)
    with torch.no_grad():
        gru.weight_ih_l0.mul_(20)  # saturating gates, up to |pre-activation| ~ 100
    gru64 = nn.GRU(16, 64, batch_first=True, bidirectional=True).double()
    gru64.load_state_dict(gru.state_dict())
    x = torch.randn(4, 40, 16, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    n = torch.tensor([40, 17, 0, 1])
    real = (torch.arange(40) < n[:, None]).unsqueeze(-1)
    y = bigru_forward(gru, x, n, use_kernel) * real
    y64 = bigru_forward(gru64, x64, n, use_kernel=False) * real
    torch.testing.assert_close(y.double(), y64, rtol=1e-4, atol=2e-5)
    cot = torch.randn(y.shape, dtype=torch.double)
    g = torch.autograd.grad((y * cot.float()).sum(), [x, *gru.parameters()])
    g64 = torch.autograd.grad((y64 * cot).sum(), [x64, *gru64.parameters()])
    for a, b in zip(g, g64, strict=True):
        assert float((a.double() - b).norm() / b.norm().clamp_min(1e-30)) < 1e-4
    assert float(g[0][2].abs().max()) == 0.0  # the empty row gets no gradient
