"""The 2022 NAM-TM's bidirectional GRU controller: fused forward + hand-written backward against
``nn.GRU`` (outputs and all gradients, with padding), gradcheck and gradgradcheck."""

import pytest
import torch
from torch import nn

from neural_attention_memory.models._gru import bigru_forward


def _packed(gru, x, lengths):
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@pytest.mark.parametrize("lengths", [None, [6, 4, 1]])
def test_equals_nn_gru_outputs_and_all_gradients(lengths):
    torch.manual_seed(0)
    gru = nn.GRU(5, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    if lengths is None:
        ours, ref = bigru_forward(gru, x), gru(x)[0]
        real = torch.ones(3, 6, 1, dtype=torch.double)
    else:
        n = torch.tensor(lengths)
        ours, ref = bigru_forward(gru, x, n), _packed(gru, x, n)
        real = (torch.arange(6)[None] < n[:, None]).unsqueeze(-1).double()
    torch.testing.assert_close(ours * real, ref * real, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(ref) * real  # padded positions are unspecified: no gradient from them
    params = [x, *gru.parameters()]
    g_ours = torch.autograd.grad((ours * cot).sum(), params)
    g_ref = torch.autograd.grad((ref * cot).sum(), params)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_and_gradgradcheck():
    torch.manual_seed(1)
    gru = nn.GRU(3, 2, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: bigru_forward(gru, x), (x,))
    assert torch.autograd.gradgradcheck(lambda x: bigru_forward(gru, x), (x,))
    # Second-order gradients through the weights equal nn.GRU's.
    ref = nn.GRU(3, 2, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(gru.state_dict())
    results = []
    for out, w in (
        (bigru_forward(gru, x), gru.weight_hh_l0_reverse),
        (ref(x)[0], ref.weight_hh_l0_reverse),
    ):
        (g,) = torch.autograd.grad(out.square().sum(), w, create_graph=True)
        results.append(torch.autograd.grad(g.square().sum(), x)[0])
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-12)
