"""The causal NAM attention on flash-linear-attention's Triton kernels (CUDA tensors only).

NAM's write with separate gates, ``M_t = M_{t-1} (I - e_t k_t k_t^T) + w_t v_t k_t^T``, is a
diagonal-plus-low-rank (DPLR) delta rule. fla keeps the transposed state ``S = M^T`` `[d_k, d_v]`
and runs ``S_t = exp(g_t) S_{t-1} + b_t a_t^T S_{t-1} + k'_t v_t^T``, read as ``o_t = scale S_t^T q_t``,
so the mapping is::

    a = -e k,   b = k,   k' = w k,   g = 0,   scale = 1          (chunk_dplr_delta_rule)

With the erase tied to the write (``p_e is p_w``, LSAM's and DeltaNet's rule) it is fla's plain
delta rule ``S_t = S_{t-1} + k_t (beta_t (v_t - S_{t-1}^T k_t))^T`` with ``beta = w``
(chunk_delta_rule). q and k are unit-normalised here (exactly, by :func:`unit_norm`), the read gate
multiplies the output afterwards, padding and non-finite writes are handled the way the CPU chunk
form handles them (zeroed, and a sequence is marked NaN from its first non-finite write on), all
with tensor ops: no host sync.

:func:`fla_causal_nam_attention` takes the two kernels as arguments so that the tests can run the
mapping on the CPU against fla's pure-PyTorch reference recurrences.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
from torch import Tensor

from .memory import _unit_norm

__all__ = ["fla_causal_nam_attention", "fla_kernels", "use_fla"]

_EPS = 1e-6


@functools.cache
def fla_kernels() -> tuple[Callable, Callable] | None:
    """``(chunk_dplr_delta_rule, chunk_delta_rule)`` from fla, or None when fla (or triton) is
    not importable."""
    try:
        from fla.ops.delta_rule import chunk_delta_rule
        from fla.ops.generalized_delta_rule import chunk_dplr_delta_rule
    except Exception:  # ImportError, or triton failing to initialise without a GPU
        return None
    return chunk_dplr_delta_rule, chunk_delta_rule


def use_fla(q: Tensor) -> bool:
    """Dispatch to fla: CUDA inputs, fla importable, and not disabled by ``NAM_DISABLE_FLA=1``."""
    if q.device.type != "cuda" or os.environ.get("NAM_DISABLE_FLA", "") not in ("", "0"):
        return False
    return fla_kernels() is not None


def fla_causal_nam_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p_w: Tensor | None,
    p_e: Tensor | None,
    p_r: Tensor | None,
    initial_state: Tensor | None,
    key_padding_mask: Tensor | None,
    dplr: Callable,
    delta: Callable,
) -> tuple[Tensor, Tensor]:
    """Validated `[B, T, H, d]` inputs -> ``(out [B, T, H, d_v], final state [B, H, d_v, d_k])``.

    ``dplr``/``delta``: fla's ``chunk_dplr_delta_rule`` / ``chunk_delta_rule`` (or anything with
    their signature and `[B, T, H, *]` layout). Tied gates (``p_e is p_w``) use ``delta``.
    """
    tied = p_e is not None and p_e is p_w
    mask = key_padding_mask
    if mask is not None:
        m3, m4 = mask[:, :, None], mask[:, :, None, None]
        q, k, v = (x.masked_fill(m4, 0) for x in (q, k, v))
        p_w, p_e, p_r = (None if p is None else p.masked_fill(m3, 0) for p in (p_w, p_e, p_r))
    # A real token with a non-finite key, value or gate writes nothing; its sequence is marked.
    ok = torch.isfinite(k).all(-1) & torch.isfinite(v).all(-1)
    for p in (p_w, p_e):
        if p is not None:
            ok &= torch.isfinite(p)
    bad = ~ok  # padded tokens are already zero, hence finite
    k, v = k.masked_fill(bad.unsqueeze(-1), 0), v.masked_fill(bad.unsqueeze(-1), 0)
    w = torch.ones_like(q[..., 0]) if p_w is None else p_w.masked_fill(bad, 0)
    qn, kn = _unit_norm(q, _EPS), _unit_norm(k, _EPS)
    S0 = None if initial_state is None else initial_state.transpose(-1, -2).contiguous()
    if tied:
        o, S = delta(qn, kn, v, w, scale=1.0, initial_state=S0, output_final_state=True)
    else:
        e = torch.zeros_like(w) if p_e is None else p_e.masked_fill(bad, 0)
        o, S = dplr(
            qn,
            kn * w.unsqueeze(-1),
            v,
            -e.unsqueeze(-1) * kn,
            kn,
            torch.zeros_like(kn),
            scale=1.0,
            initial_state=S0,
            output_final_state=True,
        )
    marks = bad.cumsum(1) > 0  # [B, T, H]: from the first non-finite write on
    r = torch.ones_like(w) if p_r is None else p_r
    o = o * r.masked_fill(marks, float("nan")).unsqueeze(-1).to(o.dtype)
    S = S.transpose(-1, -2).masked_fill(marks[:, -1, :, None, None], float("nan"))
    return o.to(q.dtype), S
