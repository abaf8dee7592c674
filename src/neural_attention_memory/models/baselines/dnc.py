"""Differentiable Neural Computer (Graves et al., 2016) as a per-position tagger.

An LSTM controller reads ``[x_t ; r_{t-1}]`` (the embedded token and the previous read vectors)
and emits an interface vector that drives an external memory `[N, W]` with ``R`` read heads and one
write head:

- **content addressing**: ``C(M, k, beta) = softmax(beta * cos(M[i], k))``;
- **dynamic allocation**: usage ``u = (u + w_w - u * w_w) * psi`` with retention
  ``psi = prod_r (1 - f_r w_r)``; the allocation weighting gives the least-used free slot,
  ``a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i]`` over the usage sorted ascending (``phi``);
- **write**: ``w_w = g_w (g_a a + (1 - g_a) C(M, k_w, beta_w))``,
  ``M = M * (1 - w_w e^T) + w_w v^T``;
- **temporal links**: ``L[i, j] = (1 - w_w[i] - w_w[j]) L[i, j] + w_w[i] p[j]`` (zero diagonal),
  precedence ``p = (1 - sum w_w) p + w_w``; forward / backward weightings ``L w_r`` / ``L^T w_r``;
- **read**: ``w_r = pi_b b + pi_c C(M, k_r, beta_r) + pi_f f``, ``r = M^T w_r``.

The output is ``Linear([h_t ; r_t])``. Numerical stability (no NaNs in long training): cosine
similarities divide by ``max(|a||b|, eps)``; strengths are ``oneplus(x) = 1 + softplus(x)`` and
are bounded by clamping the pre-activation; usage is kept in ``[eps, 1]`` (as in DeepMind's
implementation) so the allocation products never reach exactly 0 or 1; all weightings are
convex combinations, so memory contents stay bounded by the written values. Memory size ``N`` is
independent of the weights, so a trained DNC runs with any ``N``; ``memory_size="auto"`` gives a
sequence of ``T`` tokens ``T + 1`` slots (enough to store every token, at any test length).

:class:`DNCCore` is the recurrent network on embedded inputs and speaks the sequence-model
protocol (``forward(x, state=None, padding_mask=None) -> (y, state)``, ``step``, ``init_state``; a
padded step keeps the state and outputs zero). :class:`DNC` is the tagger of the experiments:
embedding, core, linear head; ``forward(tokens, padding_mask)`` returns the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers._common import check_input, check_padding_mask
from ._common import check_h_state, check_tokens, run_steps

__all__ = ["DNC", "DNCConfig", "DNCCore", "DNCState", "allocation_weighting"]

_EPS = 1e-6


@dataclass
class DNCConfig:
    vocab_size: int
    num_classes: int
    d_embed: int = 32
    hidden: int = 128
    memory_size: int | str = "auto"  # N slots; "auto" = T + 1 for a sequence of T tokens
    word_size: int = 32  # W
    num_reads: int = 2  # R


class DNCState(NamedTuple):
    """Recurrent state; shapes with batch ``B``."""

    h: Tensor  # [B, hidden]
    c: Tensor  # [B, hidden]
    memory: Tensor  # [B, N, W]
    usage: Tensor  # [B, N]
    link: Tensor  # [B, N, N]
    precedence: Tensor  # [B, N]
    read_weights: Tensor  # [B, R, N]
    write_weights: Tensor  # [B, N]
    reads: Tensor  # [B, R, W]
    valid: Tensor  # [B, N] bool: slots this sequence may use


def _positive(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


def _oneplus(x: Tensor) -> Tensor:
    return 1.0 + F.softplus(x.clamp(max=30.0))


def _content(memory: Tensor, keys: Tensor, strength: Tensor, valid: Tensor) -> Tensor:
    """``softmax(beta * cos(M, k))`` over the valid slots: memory `[B, N, W]`, keys `[B, K, W]`,
    strength `[B, K]`, valid `[B, N]` -> `[B, K, N]`."""
    dot = torch.einsum("bkw,bnw->bkn", keys, memory)
    norm = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)
    score = strength.unsqueeze(-1) * dot / norm.clamp_min(_EPS)
    return torch.softmax(score.masked_fill(~valid.unsqueeze(1), float("-inf")), dim=-1)


def allocation_weighting(usage: Tensor) -> Tensor:
    """`[B, N]` usage in ``[eps, 1]`` -> allocation weighting `[B, N]` (sums to at most 1)."""
    sorted_usage, phi = torch.sort(usage, dim=-1)
    # exclusive cumulative product: prod_{i<j} u[phi_i]
    prod = torch.cumprod(
        torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], 1), 1
    )
    sorted_alloc = (1.0 - sorted_usage) * prod
    return torch.zeros_like(usage).scatter(1, phi, sorted_alloc)


class DNCCore(nn.Module):
    """The DNC on embedded inputs: LSTM controller + external memory, output ``[h_t ; r_t]``.

    Protocol: ``forward(x [B, T, input_size], state=None, padding_mask=None) -> (y [B, T,
    output_size], DNCState)``, ``step(x_t [B, input_size], state=None)``,
    ``init_state(batch, device=None, dtype=None, *, memory_size=None, slots=None)``. With
    ``memory_size="auto"`` and no state, ``forward`` gives each sequence its length + 1 slots.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int = 128,
        memory_size: int | str = "auto",
        word_size: int = 32,
        num_reads: int = 2,
    ) -> None:
        super().__init__()
        if memory_size != "auto":
            _positive("memory_size", memory_size)
        for name, v in (
            ("input_size", input_size),
            ("hidden", hidden),
            ("word_size", word_size),
            ("num_reads", num_reads),
        ):
            _positive(name, v)
        self.input_size, self.hidden, self.memory_size = input_size, hidden, memory_size
        self.word_size, self.num_reads = word_size, num_reads
        R, W = num_reads, word_size
        self.output_size = hidden + R * W
        self.controller = nn.LSTMCell(input_size + R * W, hidden)
        # read keys R*W, read strengths R, write key W, write strength 1, erase W, write vector W,
        # free gates R, allocation gate 1, write gate 1, read modes 3R
        self.interface_size = R * W + R + W + 1 + W + W + R + 1 + 1 + 3 * R
        self.interface = nn.Linear(hidden, self.interface_size)

    def init_state(
        self,
        batch: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        *,
        memory_size: int | None = None,
        slots: Tensor | None = None,
    ) -> DNCState:
        """Blank state; ``memory_size`` defaults to the core's (required when it is "auto").

        ``slots`` `[B]` limits sequence ``b`` to its first ``slots[b]`` memory slots (the others
        are never read, written or allocated: their usage is pinned at 1), so a padded batch
        behaves like each sequence run alone with ``memory_size = slots[b]``.
        """
        N = memory_size if memory_size is not None else self.memory_size
        if N == "auto":
            raise ValueError('memory_size: expected an int when the memory size is "auto"')
        device = device or self.interface.weight.device
        dtype = dtype or self.interface.weight.dtype
        W, R = self.word_size, self.num_reads
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)  # noqa: E731
        valid = torch.ones(batch, N, dtype=torch.bool, device=device)
        if slots is not None:
            valid = torch.arange(N, device=device)[None] < slots.to(device)[:, None]
        return DNCState(
            h=z(batch, self.hidden),
            c=z(batch, self.hidden),
            memory=z(batch, N, W),
            usage=torch.where(valid, _EPS, 1.0).to(dtype),
            link=z(batch, N, N),
            precedence=z(batch, N),
            read_weights=z(batch, R, N),
            write_weights=z(batch, N),
            reads=z(batch, R, W),
            valid=valid,
        )

    def _split(self, xi: Tensor) -> dict[str, Tensor]:
        R, W = self.num_reads, self.word_size
        sizes = [R * W, R, W, 1, W, W, R, 1, 1, 3 * R]
        parts = torch.split(xi, sizes, dim=-1)
        B = xi.shape[0]
        return {
            "read_keys": parts[0].view(B, R, W),
            "read_strengths": _oneplus(parts[1]),
            "write_key": parts[2].view(B, 1, W),
            "write_strength": _oneplus(parts[3]),
            "erase": torch.sigmoid(parts[4]),
            "write_vector": parts[5],
            "free_gates": torch.sigmoid(parts[6]),
            "alloc_gate": torch.sigmoid(parts[7]),
            "write_gate": torch.sigmoid(parts[8]),
            "read_modes": torch.softmax(parts[9].view(B, R, 3), dim=-1),
        }

    def _step(self, x: Tensor, state: DNCState) -> tuple[Tensor, DNCState]:
        B = x.shape[0]
        h, c = self.controller(torch.cat([x, state.reads.reshape(B, -1)], -1), (state.h, state.c))
        p = self._split(self.interface(h))
        # usage and allocation
        psi = torch.prod(1.0 - p["free_gates"].unsqueeze(-1) * state.read_weights, dim=1)
        ww_prev = state.write_weights
        usage = (state.usage + ww_prev - state.usage * ww_prev) * psi
        usage = _EPS + (1.0 - _EPS) * usage
        alloc = allocation_weighting(usage)
        content_w = _content(state.memory, p["write_key"], p["write_strength"], state.valid)
        content_w = content_w.squeeze(1)
        ww = p["write_gate"] * (p["alloc_gate"] * alloc + (1.0 - p["alloc_gate"]) * content_w)
        # write: erase then add
        memory = state.memory * (1.0 - ww.unsqueeze(-1) * p["erase"].unsqueeze(1))
        memory = memory + ww.unsqueeze(-1) * p["write_vector"].unsqueeze(1)
        # temporal links
        link = (1.0 - ww.unsqueeze(2) - ww.unsqueeze(1)) * state.link
        link = link + ww.unsqueeze(2) * state.precedence.unsqueeze(1)
        link = link * (1.0 - torch.eye(link.shape[-1], device=link.device, dtype=link.dtype))
        precedence = (1.0 - ww.sum(-1, keepdim=True)) * state.precedence + ww
        # read
        fwd = torch.einsum("bij,brj->bri", link, state.read_weights)
        bwd = torch.einsum("bji,brj->bri", link, state.read_weights)
        content_r = _content(memory, p["read_keys"], p["read_strengths"], state.valid)
        m = p["read_modes"]
        rw = m[..., 0:1] * bwd + m[..., 1:2] * content_r + m[..., 2:3] * fwd
        reads = torch.einsum("brn,bnw->brw", rw, memory)
        y = torch.cat([h, reads.reshape(B, -1)], -1)
        return y, DNCState(h, c, memory, usage, link, precedence, rw, ww, reads, state.valid)

    def _check_state(self, state: object, B: int) -> DNCState:
        return check_h_state(state, DNCState, B, self.hidden)

    def step(self, x_t: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        """One step: ``x_t`` `[B, input_size]` -> ``(y_t [B, output_size], new state)``."""
        x_t = check_input(x_t, "x_t", 2, self.input_size)
        if state is None:
            state = self.init_state(x_t.shape[0], x_t.device, x_t.dtype)
        return self._step(x_t, self._check_state(state, x_t.shape[0]))

    def forward(
        self, x: Tensor, state: DNCState | None = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, DNCState]:
        """``x`` `[B, T, input_size]` -> ``(y [B, T, output_size], state after the last token)``."""
        x = check_input(x, "x", 3, self.input_size)
        B, T, _ = x.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        if state is None:
            auto = self.memory_size == "auto"
            slots = None
            if auto and padding_mask is not None:  # each sequence gets its own length + 1 slots
                slots = (~padding_mask).sum(1) + 1
            state = self.init_state(
                B, x.device, x.dtype, memory_size=T + 1 if auto else None, slots=slots
            )
        return run_steps(self._step, x, self._check_state(state, B), padding_mask)


class DNC(nn.Module):
    """The DNC tagger: embedding, :class:`DNCCore`, linear head ``Linear([h_t ; r_t])``.

    ``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``;
    ``step(token [B] ids, state) -> (logits_t [B, C], state)``; ``init_state(batch)``.
    """

    def __init__(self, config: DNCConfig) -> None:
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        _positive("d_embed", config.d_embed)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.core = DNCCore(
            config.d_embed, config.hidden, config.memory_size, config.word_size, config.num_reads
        )
        self.out = nn.Linear(self.core.output_size, config.num_classes)

    def init_state(
        self,
        batch: int,
        device: torch.device | None = None,
        memory_size: int | None = None,
        slots: Tensor | None = None,
    ) -> DNCState:
        """Blank state (see :meth:`DNCCore.init_state`)."""
        return self.core.init_state(batch, device, memory_size=memory_size, slots=slots)

    def step(self, token: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        """One token ids `[B]` -> logits `[B, C]` and the new state."""
        if not isinstance(token, Tensor) or token.dim() != 1 or token.is_floating_point():
            raise ValueError(f"token: expected integer ids [B], got {token!r}")
        y, state = self.core.step(self.embed(token), state)
        return self.out(y), state

    def forward(
        self, tokens: Tensor, padding_mask: Tensor | None = None, state: DNCState | None = None
    ) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        y, _ = self.core(self.embed(tokens), state, padding_mask)
        return self.out(y)
