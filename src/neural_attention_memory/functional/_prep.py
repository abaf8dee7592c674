"""Shared argument handling of the NAM attention entry points (validation + padding folded into gates)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validate import check_gate, check_padding_mask, check_qkv, check_state, compute_dtype
from .memory import unit_norm


@dataclass
class Prepared:
    """Validated inputs in `[B, T, H, d]` layout, q/k unit-normalised; gates are None or `[B, T, H]`.

    Everything is in the accumulation dtype (float32 for half inputs); ``dtype`` is q's own.
    """

    q: Tensor
    k: Tensor
    v: Tensor
    p_w: Tensor | None
    p_e: Tensor | None
    p_r: Tensor | None
    keep: Tensor | None  # [B, T, 1] 1.0 for real tokens, 0.0 for padding (None: no padding)
    state: Tensor | None
    B: int
    T: int
    H: int
    d_k: int
    d_v: int
    dtype: torch.dtype


def prepare(
    q, k, v, p_w=None, p_e=None, p_r=None, initial_state=None, key_padding_mask=None
) -> Prepared:
    B, T, H, d_k, d_v = check_qkv(q, k, v)
    mask = check_padding_mask(key_padding_mask, B, T)
    p_w = check_gate("p_w", p_w, B, T, H, q, mask)
    p_e = check_gate("p_e", p_e, B, T, H, q, mask)
    p_r = check_gate("p_r", p_r, B, T, H, q, mask)
    state = check_state("initial_state", initial_state, B, H, d_v, d_k, q)
    cdt = compute_dtype(q.dtype)
    dtype = q.dtype
    if cdt != dtype:  # bfloat16/float16: accumulate in float32
        q, k, v, p_w, p_e, p_r, state = (
            None if x is None else x.to(cdt) for x in (q, k, v, p_w, p_e, p_r, state)
        )
    keep = None
    if mask is not None:
        # Zero every input at padded positions first: a gate of 0 cannot silence a NaN/inf held
        # there (0 * NaN = NaN), and a zero key writes, erases and reads nothing.
        m3, m4 = mask[:, :, None], mask[:, :, None, None]
        q, k, v = (x.masked_fill(m4, 0) for x in (q, k, v))
        p_w, p_e, p_r = (None if p is None else p.masked_fill(m3, 0) for p in (p_w, p_e, p_r))
        keep = (~mask).to(q.dtype).unsqueeze(-1)  # [B, T, 1]
    return Prepared(
        unit_norm(q), unit_norm(k), v, p_w, p_e, p_r, keep, state, B, T, H, d_k, d_v, dtype
    )


def no_autocast(x: object):
    """The kernels choose their own precision: autocast must not downcast their products.

    ``x``: a tensor whose device type selects the autocast context (anything else: no-op).
    """
    device = getattr(x, "device", None)
    if isinstance(device, torch.device) and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def fold_padding(
    p: Tensor | None, keep: Tensor | None, ref: Tensor, absent: float = 1.0
) -> Tensor | None:
    """Gate times the keep-mask: a padded token writes/erases/reads with probability 0.

    ``absent`` is what a missing gate means (1 for write/read, 0 for erase, which stays absent).
    """
    if keep is None or (p is None and absent == 0.0):
        return p
    if p is None:
        return keep.expand(ref.shape[0], ref.shape[1], ref.shape[2])
    return p * keep
