"""Obviously-correct reference loops of NAM attention. Every fast path is tested against these.

They call :func:`nam_write` / :func:`nam_read` once per token, exactly as the paper writes the
recurrence, and handle padding with ``torch.where`` (a padded step keeps the old memory).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._prep import no_autocast, prepare
from .memory import nam_read, nam_write

__all__ = ["naive_causal_nam_attention", "naive_nam_attention"]


def _step_gate(p: Tensor | None, t: int) -> Tensor | None:
    return None if p is None else p[:, t]  # [B, H]


def naive_nam_attention(q, k, v, p_w=None, p_r=None, key_padding_mask=None) -> Tensor:
    """Non-causal NAM attention as a write loop then a read loop; same contract as
    :func:`~neural_attention_memory.functional.nam_attention`."""
    with no_autocast(q):
        x = prepare(q, k, v, p_w=p_w, p_r=p_r, key_padding_mask=key_padding_mask)
        M = x.q.new_zeros(x.B, x.H, x.d_v, x.d_k)
        for s in range(x.T):
            M_new = nam_write(M, x.k[:, s], x.v[:, s], _step_gate(x.p_w, s))
            M = M_new if x.keep is None else torch.where(x.keep[:, s, :, None, None] > 0, M_new, M)
        outs = []
        for t in range(x.T):
            o = nam_read(M, x.q[:, t], _step_gate(x.p_r, t))
            outs.append(o if x.keep is None else o * x.keep[:, t, :, None])
        return torch.stack(outs, dim=1).to(x.dtype)


def naive_causal_nam_attention(
    q,
    k,
    v,
    p_w=None,
    p_e=None,
    p_r=None,
    *,
    initial_state=None,
    output_final_state=False,
    key_padding_mask=None,
) -> tuple[Tensor, Tensor | None]:
    """Causal NAM attention, one :func:`nam_write` and one :func:`nam_read` per token.

    ``M_t = WR(M_{t-1}, mu(k_t), v_t, p_w, p_e)``, ``out_t = RD(M_t, mu(q_t), p_r)``; padded steps keep
    ``M`` and output zeros. Same contract as :func:`chunk_causal_nam_attention`.
    """
    with no_autocast(q):
        x = prepare(q, k, v, p_w, p_e, p_r, initial_state, key_padding_mask)
        M = x.state if x.state is not None else x.q.new_zeros(x.B, x.H, x.d_v, x.d_k)
        outs = []
        for t in range(x.T):
            M_new = nam_write(M, x.k[:, t], x.v[:, t], _step_gate(x.p_w, t), _step_gate(x.p_e, t))
            M = M_new if x.keep is None else torch.where(x.keep[:, t, :, None, None] > 0, M_new, M)
            o = nam_read(M, x.q[:, t], _step_gate(x.p_r, t))
            outs.append(o if x.keep is None else o * x.keep[:, t, :, None])
        return torch.stack(outs, dim=1).to(x.dtype), (M if output_final_state else None)
