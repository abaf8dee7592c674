"""Conformance test of the one sequence-model protocol (every registered model goes through it).

Protocol: ``forward(x [B, T, D_in], state=None, padding_mask=None) -> (y [B, T, D_out], state)``;
``step(x_t [B, D_in], state=None) -> (y_t [B, D_out], state)`` (``NotImplementedError`` when a
model cannot step); ``init_state(batch, device=None, dtype=None)``; the state is a ``NamedTuple``
of tensors, the same type from forward, step and init_state; ``padding_mask`` `[B, T]` bool, True =
padding: a padded token changes no state and outputs zero.

To register a model add one entry to ``CAUSAL`` (steps) or ``NON_CAUSAL`` (cannot step):
``name -> factory`` returning ``(module, D_in)``; the module is put in float64 and eval mode here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from neural_attention_memory.layers import LinearAttention, NAMAttention, SoftmaxAttention
from neural_attention_memory.models.baselines import DNCCore, LSTMAttentionCore, StackRNNCore
from neural_attention_memory.models.lsam import LSAM
from neural_attention_memory.models.nam_tm import NAMTuringMachine, nam_tm_2023
from neural_attention_memory.models.transformer import TransformerConfig, TransformerEncoder

DT = torch.float64
Factory = Callable[[], tuple[nn.Module, int]]


def _encoder(attention: str, causal: bool, **kw) -> Factory:
    def make() -> tuple[nn.Module, int]:
        cfg = TransformerConfig(
            d_model=16,
            num_layers=2,
            num_heads=2,
            d_ff=24,
            attention=attention,
            causal=causal,
            dropout=0.0,
            chunk_size=4,
            **kw,
        )
        return TransformerEncoder(cfg), 16

    return make


CAUSAL: dict[str, Factory] = {
    "nam-attention": lambda: (NAMAttention(12, 3, causal=True, chunk_size=4), 12),
    "nam-attention-gated": lambda: (
        NAMAttention(12, 3, causal=True, gates=("write", "erase", "read"), chunk_size=4),
        12,
    ),
    "nam-attention-tied": lambda: (
        NAMAttention(12, 3, causal=True, gates=("write", "read"), tie_erase=True, chunk_size=4),
        12,
    ),
    "linear-attention": lambda: (LinearAttention(12, 3, causal=True, chunk_size=4), 12),
    "softmax-attention": lambda: (SoftmaxAttention(12, 3, causal=True), 12),
    "transformer-nam": _encoder("nam", True, gates=("write", "erase", "read"), positional="none"),
    "transformer-nam-tied": _encoder("nam-tied", True, positional="sinusoidal"),
    "transformer-linear": _encoder("linear", True, positional="learned"),
    "transformer-softmax": _encoder("softmax", True, positional="learned"),
    "lsam": lambda: (LSAM(12, 12, 4, num_layers=2), 12),
    "lsam-separate-erase": lambda: (LSAM(12, 8, 2, separate_erase=True), 12),
    "nam-tm-2023": lambda: (nam_tm_2023(12, 2, 4, tape_length=8), 12),
    # The 2022 key tape (keys at positions) with the 2023 LSTM controller; the 2022 model itself
    # (bidirectional GRU, tests/models/test_nam_tm.py) cannot step.
    "nam-tm-position-keys": lambda: (
        NAMTuringMachine(12, 2, 4, tape_length=8, key_tape="position", tied_erase=True),
        12,
    ),
    # Fixed memory / stack sizes: "auto" sizes them from T, so a split run would differ.
    "dnc": lambda: (DNCCore(6, hidden=10, memory_size=12, word_size=4, num_reads=2), 6),
    "stack-rnn": lambda: (StackRNNCore(6, hidden=10, num_stacks=2, stack_depth=12), 6),
}

NON_CAUSAL: dict[str, Factory] = {
    "nam-attention": lambda: (NAMAttention(12, 3, gates=("write", "read")), 12),
    "linear-attention": lambda: (LinearAttention(12, 3), 12),
    "softmax-attention": lambda: (SoftmaxAttention(12, 3), 12),
    "transformer-nam": _encoder("nam", False),
    "transformer-linear": _encoder("linear", False),
    "transformer-softmax": _encoder("softmax", False),
    "lstm-attention": lambda: (LSTMAttentionCore(6, hidden=8, num_heads=2), 6),
}


def _build(factory: Factory) -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    model, d_in = factory()
    return model.to(DT).eval(), d_in


def _leaves(state) -> list[Tensor]:
    """All tensors of a (nested) state, in order."""
    if isinstance(state, Tensor):
        return [state]
    return [t for part in state for t in _leaves(part)]


def _assert_state_type(state) -> None:
    assert isinstance(state, tuple) and hasattr(state, "_fields"), type(state)
    assert all(isinstance(t, Tensor) for t in _leaves(state))


def _assert_states_close(a, b) -> None:
    assert type(a) is type(b)
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_forward_equals_step_by_step_with_gradients(name: str) -> None:
    model, d_in = _build(CAUSAL[name])
    x = torch.randn(2, 9, d_in, dtype=DT)
    y, state = model(x)
    _assert_state_type(state)
    cot = torch.randn_like(y)
    grads_full = torch.autograd.grad((y * cot).sum(), list(model.parameters()), allow_unused=True)
    s, outs = None, []
    for t in range(x.shape[1]):
        y_t, s = model.step(x[:, t], s)
        _assert_state_type(s)
        outs.append(y_t)
    y_step = torch.stack(outs, 1)
    torch.testing.assert_close(y_step, y)
    _assert_states_close(s, state)
    grads_step = torch.autograd.grad(
        (y_step * cot).sum(), list(model.parameters()), allow_unused=True
    )
    for gf, gs in zip(grads_full, grads_step, strict=True):
        if gf is None or gs is None:
            assert gf is None and gs is None
        else:
            torch.testing.assert_close(gs, gf)


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_split_with_carried_state_equals_one_pass(name: str) -> None:
    model, d_in = _build(CAUSAL[name])
    x = torch.randn(3, 11, d_in, dtype=DT)
    y, state = model(x)
    a, s = model(x[:, :5])
    b, s = model(x[:, 5:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), y)
    _assert_states_close(s, state)
    # state=None is the same as the empty state, passed positionally or by keyword.
    for init in (
        model.init_state(3),
        model.init_state(3, None, None),
        model.init_state(3, dtype=DT),
    ):
        _assert_state_type(init)
        y0, s0 = model(x, init)
        torch.testing.assert_close(y0, y)
        _assert_states_close(s0, state)


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_padded_batch_equals_sequences_alone_and_padding_changes_no_state(name: str) -> None:
    model, d_in = _build(CAUSAL[name])
    lengths = [7, 3, 5]
    T = max(lengths) + 2
    x = torch.randn(3, T, d_in, dtype=DT) * 3  # padded entries hold junk
    mask = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
    nxt = torch.randn(3, 4, d_in, dtype=DT)  # a next segment, no padding
    y, s = model(x, padding_mask=mask)
    assert torch.all(y[mask] == 0)
    y2, _ = model(nxt, s)
    for i, n in enumerate(lengths):
        alone, s_i = model(x[i : i + 1, :n])
        torch.testing.assert_close(y[i : i + 1, :n], alone)
        after, _ = model(nxt[i : i + 1], s_i)
        torch.testing.assert_close(y2[i : i + 1], after)


@pytest.mark.parametrize("name", sorted(NON_CAUSAL))
def test_non_causal_models_pad_and_refuse_to_step(name: str) -> None:
    model, d_in = _build(NON_CAUSAL[name])
    lengths = [6, 2]
    x = torch.randn(2, 8, d_in, dtype=DT) * 3
    mask = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    out = model(x, padding_mask=mask)
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is None
    y = out[0]
    assert torch.all(y[mask] == 0)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(y[i : i + 1, :n], model(x[i : i + 1, :n])[0])
    with pytest.raises(NotImplementedError, match=type(model).__name__):
        model.step(x[:, 0])
    with pytest.raises(NotImplementedError, match=type(model).__name__):
        model.init_state(2)
