"""Stack-augmented RNN (Joulin & Mikolov, 2015) as a per-position tagger.

A simple recurrent network with ``K`` differentiable stacks of depth ``D`` (entries of size
``m``; the original uses scalar entries, ``m = 1``). Per step, with input embedding ``x_t``::

    h_t  = sigmoid(U x_t + R h_{t-1} + P s_{t-1}[0:k])        # reads the top k entries of each stack
    a_t  = softmax(A h_t)                                      # per stack: PUSH, POP, NO-OP
    s_t[0] = a_push * sigmoid(D h_t) + a_pop * s_{t-1}[1] + a_noop * s_{t-1}[0]
    s_t[i] = a_push * s_{t-1}[i-1]  + a_pop * s_{t-1}[i+1] + a_noop * s_{t-1}[i]
    y_t  = V h_t

Below the bottom the stack holds the "empty" value ``-1`` as in the paper. The depth ``D`` does not
change the parameters, so a model trained with one depth runs with a deeper stack;
``stack_depth="auto"`` gives a sequence of ``T`` tokens a stack of ``T + 1`` entries.

:class:`StackRNNCore` is the recurrent network on embedded inputs (output ``h_t``) and speaks the
sequence-model protocol (``forward(x, state=None, padding_mask=None) -> (h, state)``, ``step``,
``init_state``; a padded step keeps the state and outputs zero); :class:`StackRNN` is the tagger
(embedding, core, ``V``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...layers._common import check_input, check_padding_mask
from ._common import check_h_state, check_tokens, run_steps

__all__ = ["StackRNN", "StackRNNConfig", "StackRNNCore", "StackRNNState"]

EMPTY = -1.0


@dataclass
class StackRNNConfig:
    vocab_size: int
    num_classes: int
    d_embed: int = 32
    hidden: int = 128
    num_stacks: int = 4
    stack_depth: int | str = "auto"  # "auto" = T + 1 for a sequence of T tokens
    stack_dim: int = 8  # entry size m (1 in the paper)
    read_depth: int = 2  # top k entries fed back


class StackRNNState(NamedTuple):
    """State of a :class:`StackRNNCore`.

    Attributes:
        h: `[B, hidden]` hidden state.
        stacks: `[B, K, D, m]` the ``K`` stacks, top entry first.
    """

    h: Tensor
    stacks: Tensor


def _positive(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


class StackRNNCore(nn.Module):
    """The Stack-RNN on embedded inputs; output ``h_t`` `[B, hidden]` per step.

    Protocol: ``forward(x [B, T, input_size], state=None, padding_mask=None) -> (h [B, T, hidden],
    StackRNNState)``, ``step(x_t, state=None)``, ``init_state(batch, device=None, dtype=None, *,
    stack_depth=None)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int = 128,
        num_stacks: int = 4,
        stack_depth: int | str = "auto",
        stack_dim: int = 8,
        read_depth: int = 2,
    ) -> None:
        super().__init__()
        for name, v in (
            ("input_size", input_size),
            ("hidden", hidden),
            ("num_stacks", num_stacks),
            ("stack_dim", stack_dim),
            ("read_depth", read_depth),
        ):
            _positive(name, v)
        if stack_depth != "auto":
            _positive("stack_depth", stack_depth)
            if read_depth > stack_depth:
                raise ValueError(
                    f"read_depth: expected <= stack_depth={stack_depth}, got {read_depth}"
                )
        self.input_size, self.hidden, self.num_stacks = input_size, hidden, num_stacks
        self.stack_depth, self.stack_dim, self.read_depth = stack_depth, stack_dim, read_depth
        K, m, k = num_stacks, stack_dim, read_depth
        self.U = nn.Linear(input_size, hidden)
        self.R = nn.Linear(hidden, hidden, bias=False)
        self.P = nn.Linear(K * k * m, hidden, bias=False)
        self.A = nn.Linear(hidden, K * 3)
        self.D = nn.Linear(hidden, K * m)

    def init_state(
        self,
        batch: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        *,
        stack_depth: int | None = None,
    ) -> StackRNNState:
        """Blank state; ``stack_depth`` defaults to the core's (required when it is "auto")."""
        depth = stack_depth if stack_depth is not None else self.stack_depth
        if depth == "auto":
            raise ValueError('stack_depth: expected an int when the stack depth is "auto"')
        depth = max(int(depth), self.read_depth)
        device = device or self.U.weight.device
        dtype = dtype or self.U.weight.dtype
        h = torch.zeros(batch, self.hidden, device=device, dtype=dtype)
        shape = (batch, self.num_stacks, depth, self.stack_dim)
        return StackRNNState(h, torch.full(shape, EMPTY, device=device, dtype=dtype))

    def _step(self, x: Tensor, state: StackRNNState) -> tuple[Tensor, StackRNNState]:
        h_prev, s = state
        B, K, _, m = s.shape
        top = s[:, :, : self.read_depth].reshape(B, -1)
        h = torch.sigmoid(self.U(x) + self.R(h_prev) + self.P(top))
        a = torch.softmax(self.A(h).view(B, K, 3), dim=-1)
        push, pop, noop = (a[..., i].view(B, K, 1, 1) for i in range(3))
        new_top = torch.sigmoid(self.D(h)).view(B, K, 1, m)
        pushed = torch.cat([new_top, s[:, :, :-1]], dim=2)
        popped = torch.cat([s[:, :, 1:], torch.full_like(s[:, :, :1], EMPTY)], dim=2)
        s = push * pushed + pop * popped + noop * s
        return h, StackRNNState(h, s)

    def _check_state(self, state: object, B: int) -> StackRNNState:
        return check_h_state(state, StackRNNState, B, self.hidden)

    def step(self, x_t: Tensor, state: StackRNNState | None = None) -> tuple[Tensor, StackRNNState]:
        """One step: ``x_t`` `[B, input_size]` -> ``(h_t [B, hidden], new state)``."""
        x_t = check_input(x_t, "x_t", 2, self.input_size)
        if state is None:
            state = self.init_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self._step(x_t, self._check_state(state, x_t.shape[0]))

    def forward(
        self, x: Tensor, state: StackRNNState | None = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, StackRNNState]:
        """``x`` `[B, T, input_size]` -> ``(h [B, T, hidden], state after the last token)``."""
        x = check_input(x, "x", 3, self.input_size)
        B, T, _ = x.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        if state is None:
            depth = T + 1 if self.stack_depth == "auto" else None
            state = self.init_state(B, x.device, x.dtype, stack_depth=depth)
        return run_steps(self._step, x, self._check_state(state, B), padding_mask)


class StackRNN(nn.Module):
    """The Stack-RNN tagger: embedding, :class:`StackRNNCore`, ``y_t = V h_t``.

    ``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``;
    state :class:`StackRNNState` ``(h [B, hidden], stacks [B, K, D, m])``."""

    def __init__(self, config: StackRNNConfig) -> None:
        super().__init__()
        _positive("d_embed", config.d_embed)
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.core = StackRNNCore(
            config.d_embed,
            config.hidden,
            config.num_stacks,
            config.stack_depth,
            config.stack_dim,
            config.read_depth,
        )
        self.V = nn.Linear(config.hidden, config.num_classes)

    def init_state(
        self, batch: int, device: torch.device | None = None, stack_depth: int | None = None
    ) -> StackRNNState:
        """Blank state; ``stack_depth`` defaults to the config's (required when it is "auto")."""
        return self.core.init_state(batch, device, stack_depth=stack_depth)

    def step_embedded(self, x: Tensor, state: StackRNNState) -> tuple[Tensor, StackRNNState]:
        """One step on an embedded input `[B, d_embed]`: ``(logits [B, C], state)``."""
        h, state = self.core.step(x, state)
        return self.V(h), state

    def forward(
        self,
        tokens: Tensor,
        padding_mask: Tensor | None = None,
        state: StackRNNState | None = None,
    ) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        h, _ = self.core(self.embed(tokens), state, padding_mask)
        return self.V(h)
