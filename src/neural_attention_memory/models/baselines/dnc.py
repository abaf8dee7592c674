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

``forward(tokens, padding_mask)`` runs ``step`` over the sequence; padded positions (after the
sequence) do not change the outputs of real positions because the model is causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tokens

__all__ = ["DNC", "DNCConfig", "DNCState", "allocation_weighting"]

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


class DNC(nn.Module):
    """``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``;
    ``step(x_t [B] ids, state) -> (logits_t [B, C], state)``; ``init_state(batch)``."""

    def __init__(self, config: DNCConfig) -> None:
        super().__init__()
        if config.memory_size != "auto":
            _positive("memory_size", config.memory_size)
        for name in ("hidden", "word_size", "num_reads", "d_embed"):
            _positive(name, getattr(config, name))
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        R, W = config.num_reads, config.word_size
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.controller = nn.LSTMCell(config.d_embed + R * W, config.hidden)
        # read keys R*W, read strengths R, write key W, write strength 1, erase W, write vector W,
        # free gates R, allocation gate 1, write gate 1, read modes 3R
        self.interface_size = R * W + R + W + 1 + W + W + R + 1 + 1 + 3 * R
        self.interface = nn.Linear(config.hidden, self.interface_size)
        self.out = nn.Linear(config.hidden + R * W, config.num_classes)

    def init_state(
        self,
        batch: int,
        device: torch.device | None = None,
        memory_size: int | None = None,
        slots: Tensor | None = None,
    ) -> DNCState:
        """Blank state; ``memory_size`` defaults to the config's (required when it is "auto").

        ``slots`` `[B]` limits sequence ``b`` to its first ``slots[b]`` memory slots (the others
        are never read, written or allocated: their usage is pinned at 1), so a padded batch
        behaves like each sequence run alone with ``memory_size = slots[b]``.
        """
        c = self.config
        N = memory_size if memory_size is not None else c.memory_size
        if N == "auto":
            raise ValueError('memory_size: expected an int when config.memory_size is "auto"')
        W, R = c.word_size, c.num_reads
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        valid = torch.ones(batch, N, dtype=torch.bool, device=device)
        if slots is not None:
            valid = torch.arange(N, device=device)[None] < slots.to(device)[:, None]
        return DNCState(
            h=z(batch, c.hidden),
            c=z(batch, c.hidden),
            memory=z(batch, N, W),
            usage=torch.where(valid, _EPS, 1.0),
            link=z(batch, N, N),
            precedence=z(batch, N),
            read_weights=z(batch, R, N),
            write_weights=z(batch, N),
            reads=z(batch, R, W),
            valid=valid,
        )

    def _split(self, xi: Tensor) -> dict[str, Tensor]:
        R, W = self.config.num_reads, self.config.word_size
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

    def step_embedded(self, x: Tensor, state: DNCState) -> tuple[Tensor, DNCState]:
        """One step on an embedded input `[B, d_embed]`; returns the logits `[B, C]`."""
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
        link = link * (1.0 - torch.eye(link.shape[-1], device=link.device))
        precedence = (1.0 - ww.sum(-1, keepdim=True)) * state.precedence + ww
        # read
        fwd = torch.einsum("bij,brj->bri", link, state.read_weights)
        bwd = torch.einsum("bji,brj->bri", link, state.read_weights)
        content_r = _content(memory, p["read_keys"], p["read_strengths"], state.valid)
        m = p["read_modes"]
        rw = m[..., 0:1] * bwd + m[..., 1:2] * content_r + m[..., 2:3] * fwd
        reads = torch.einsum("brn,bnw->brw", rw, memory)
        logits = self.out(torch.cat([h, reads.reshape(B, -1)], -1))
        new = DNCState(h, c, memory, usage, link, precedence, rw, ww, reads, state.valid)
        return logits, new

    def step(self, token: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        """One token ids `[B]` -> logits `[B, C]` and the new state."""
        if not isinstance(token, Tensor) or token.dim() != 1 or token.is_floating_point():
            raise ValueError(f"token: expected integer ids [B], got {token!r}")
        if state is None:
            state = self.init_state(token.shape[0], token.device)
        return self.step_embedded(self.embed(token), state)

    def forward(
        self, tokens: Tensor, padding_mask: Tensor | None = None, state: DNCState | None = None
    ) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        B, T = tokens.shape
        if state is None:
            auto = self.config.memory_size == "auto"
            slots = None
            if auto and padding_mask is not None:  # each sequence gets its own length + 1 slots
                slots = (~padding_mask).sum(1) + 1
            state = self.init_state(
                B, tokens.device, memory_size=T + 1 if auto else None, slots=slots
            )
        x = self.embed(tokens)
        outs = []
        for t in range(T):
            logits, state = self.step_embedded(x[:, t], state)
            outs.append(logits)
        return torch.stack(outs, dim=1)
