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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._common import check_tokens

__all__ = ["StackRNN", "StackRNNConfig"]

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


class StackRNN(nn.Module):
    """``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``;
    state ``(h [B, hidden], stacks [B, K, D, m])``."""

    def __init__(self, config: StackRNNConfig) -> None:
        super().__init__()
        names = ["d_embed", "hidden", "num_stacks", "stack_dim", "read_depth"]
        if config.stack_depth != "auto":
            names.append("stack_depth")
        for name in names:
            v = getattr(config, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if config.stack_depth != "auto" and config.read_depth > config.stack_depth:
            raise ValueError(
                f"read_depth: expected <= stack_depth={config.stack_depth}, got {config.read_depth}"
            )
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        K, m, k = config.num_stacks, config.stack_dim, config.read_depth
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.U = nn.Linear(config.d_embed, config.hidden)
        self.R = nn.Linear(config.hidden, config.hidden, bias=False)
        self.P = nn.Linear(K * k * m, config.hidden, bias=False)
        self.A = nn.Linear(config.hidden, K * 3)
        self.D = nn.Linear(config.hidden, K * m)
        self.V = nn.Linear(config.hidden, config.num_classes)

    def init_state(
        self, batch: int, device: torch.device | None = None, stack_depth: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Blank state; ``stack_depth`` defaults to the config's (required when it is "auto")."""
        c = self.config
        depth = stack_depth if stack_depth is not None else c.stack_depth
        if depth == "auto":
            raise ValueError('stack_depth: expected an int when config.stack_depth is "auto"')
        depth = max(int(depth), c.read_depth)
        h = torch.zeros(batch, c.hidden, device=device)
        stacks = torch.full((batch, c.num_stacks, depth, c.stack_dim), EMPTY, device=device)
        return h, stacks

    def step_embedded(
        self, x: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h_prev, s = state
        B, K, _, m = s.shape
        top = s[:, :, : self.config.read_depth].reshape(B, -1)
        h = torch.sigmoid(self.U(x) + self.R(h_prev) + self.P(top))
        a = torch.softmax(self.A(h).view(B, K, 3), dim=-1)
        push, pop, noop = (a[..., i].view(B, K, 1, 1) for i in range(3))
        new_top = torch.sigmoid(self.D(h)).view(B, K, 1, m)
        pushed = torch.cat([new_top, s[:, :, :-1]], dim=2)
        popped = torch.cat([s[:, :, 1:], torch.full_like(s[:, :, :1], EMPTY)], dim=2)
        s = push * pushed + pop * popped + noop * s
        return self.V(h), (h, s)

    def forward(
        self,
        tokens: Tensor,
        padding_mask: Tensor | None = None,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        check_tokens(tokens, padding_mask, self.config.vocab_size)
        B, T = tokens.shape
        if state is None:
            depth = T + 1 if self.config.stack_depth == "auto" else None
            state = self.init_state(B, tokens.device, stack_depth=depth)
        x = self.embed(tokens)
        outs = []
        for t in range(T):
            y, state = self.step_embedded(x[:, t], state)
            outs.append(y)
        return torch.stack(outs, dim=1)
