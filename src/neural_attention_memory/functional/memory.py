"""The NAM memory primitives: ``unit_norm`` (mu), ``nam_read`` (RD) and ``nam_write`` (WR).

A memory ``M`` is ``[..., d_v, d_k]`` (value rows, key columns, the paper's orientation). Keys and
queries are expected to be unit vectors (apply :func:`unit_norm` first); the primitives do not
normalise, so they read line for line like the paper's equations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validate import check_float_tensor, check_memory_gate

__all__ = ["nam_read", "nam_write", "unit_norm"]


def unit_norm(x: Tensor, eps: float = 1e-6, dim: int = -1) -> Tensor:
    """mu(x) = x / max(||x||, eps) along ``dim``: unit length wherever ``||x|| >= eps``, the zero
    vector maps to zero.

    Exact for any finite input: ``x`` is first divided by its largest magnitude (a per-vector
    scale the result does not depend on), so ``||x||`` can neither overflow (entries near the
    dtype's max) nor underflow (tiny entries) before the division.

    Args:
        x: `[..., d]` floating-point tensor.
        eps: lower bound on the norm; must be > 0.
    Returns:
        `[..., d]`, same dtype as ``x``.
    """
    check_float_tensor("x", x, min_rank=1)
    if not eps > 0:
        raise ValueError(f"eps: expected a positive float, got {eps}")
    return _unit_norm(x, eps, dim)


def _unit_norm(x: Tensor, eps: float, dim: int = -1) -> Tensor:
    # The result is invariant to the scale, so detaching it keeps every gradient exact.
    scale = x.detach().abs().amax(dim, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    y = x / scale  # largest entry +-1, so 1 <= ||y|| <= sqrt(d) unless x == 0
    n = torch.linalg.vector_norm(y, dim=dim, keepdim=True)
    # ||x|| = scale * n; below eps the paper's guard divides by eps instead. The clamp only
    # keeps the unselected branch finite for x == 0 (n >= 1 otherwise).
    return torch.where(scale * n >= eps, y / n.clamp_min(0.5), x / eps)


def _gate(p: Tensor | float, like: Tensor, extra_dims: int) -> Tensor | float:
    # [...] gate -> [..., 1, (1)] so it scales whole vectors / matrices of one memory.
    if isinstance(p, Tensor) and p.dim():
        return p.reshape(p.shape + (1,) * extra_dims)
    return p


def nam_read(M: Tensor, q: Tensor, p_r: Tensor | float | None = None) -> Tensor:
    """RD(M, q, p_r) = p_r * M @ q.

    Args:
        M: `[..., d_v, d_k]` memory.
        q: `[..., d_k]` query (unit length for the paper's guarantees).
        p_r: read probability: None (= 1), a float in [0, 1] or a tensor `[...]`.
    Returns:
        `[..., d_v]`.
    """
    check_float_tensor("M", M, min_rank=2)
    check_float_tensor("q", q, min_rank=1)
    if q.shape != M.shape[:-2] + M.shape[-1:]:
        raise ValueError(
            f"q: expected shape {tuple(M.shape[:-2] + M.shape[-1:])} ([..., d_k] matching M "
            f"{tuple(M.shape)}), got {tuple(q.shape)}"
        )
    p_r = check_memory_gate("p_r", p_r, M.shape[:-2], M)
    out = (M @ q.unsqueeze(-1)).squeeze(-1)
    return out if p_r is None else _gate(p_r, out, 1) * out


def nam_write(
    M: Tensor,
    k: Tensor,
    v: Tensor,
    p_w: Tensor | float | None = None,
    p_e: Tensor | float | None = None,
) -> Tensor:
    """WR(M, k, v, p_w, p_e) = M + p_w v k^T - p_e (M k) k^T.

    Args:
        M: `[..., d_v, d_k]` memory.
        k: `[..., d_k]` key (unit length for the paper's guarantees).
        v: `[..., d_v]` value.
        p_w: write probability: None (= 1), a float in [0, 1] or a tensor `[...]`.
        p_e: erase probability: None (= 0, no erase), a float in [0, 1] or a tensor `[...]`.
    Returns:
        `[..., d_v, d_k]`, the new memory (``M`` is not modified).
    """
    check_float_tensor("M", M, min_rank=2)
    check_float_tensor("k", k, min_rank=1)
    check_float_tensor("v", v, min_rank=1)
    lead = M.shape[:-2]
    if k.shape != lead + M.shape[-1:]:
        raise ValueError(
            f"k: expected shape {tuple(lead + M.shape[-1:])} ([..., d_k] matching M "
            f"{tuple(M.shape)}), got {tuple(k.shape)}"
        )
    if v.shape != lead + M.shape[-2:-1]:
        raise ValueError(
            f"v: expected shape {tuple(lead + M.shape[-2:-1])} ([..., d_v] matching M "
            f"{tuple(M.shape)}), got {tuple(v.shape)}"
        )
    p_w = check_memory_gate("p_w", p_w, lead, M)
    p_e = check_memory_gate("p_e", p_e, lead, M)
    kT = k.unsqueeze(-2)  # [..., 1, d_k]
    write = v.unsqueeze(-1) * kT  # [..., d_v, d_k]
    if p_w is not None:
        write = _gate(p_w, write, 2) * write
    out = M + write
    if p_e is not None:
        Mk = (M @ k.unsqueeze(-1)) * kT  # (M k) k^T
        out = out - _gate(p_e, Mk, 2) * Mk
    return out
