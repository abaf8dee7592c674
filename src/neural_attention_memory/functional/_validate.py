"""Input validation shared by the public functional entry points.

Every check raises ``TypeError``/``ValueError`` whose message names the argument, what was expected
and what was given, so a wrong call fails loudly instead of broadcasting silently.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "accepted_dtypes",
    "check_float_tensor",
    "check_gate",
    "check_memory_gate",
    "check_padding_mask",
    "check_qkv",
    "check_state",
]


_HALF = (torch.bfloat16, torch.float16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype NAM attention accumulates in: float32 for bfloat16/float16, else ``dtype``."""
    return torch.float32 if dtype in _HALF else dtype


def accepted_dtypes(ref: Tensor) -> tuple[torch.dtype, ...]:
    """Gates and states may be in q's dtype or, for half q, in the float32 accumulation dtype."""
    return (ref.dtype,) if ref.dtype not in _HALF else (ref.dtype, torch.float32)


def _want(ref: Tensor) -> str:
    return " or ".join(str(d) for d in accepted_dtypes(ref)) + " (same as q)"


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_float_tensor(
    name: str, x: object, *, rank: int | None = None, min_rank: int = 0
) -> Tensor:
    """Return ``x`` after checking it is a floating-point tensor of the given rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if rank is not None and x.dim() != rank:
        raise ValueError(f"{name}: expected a rank-{rank} tensor, got shape {_shape(x)}")
    if x.dim() < min_rank:
        raise ValueError(f"{name}: expected at least {min_rank} dims, got shape {_shape(x)}")
    return x


def _check_prob_range(name: str, p: Tensor, ignore: Tensor | None = None) -> None:
    """Values in [0, 1]; NaN is rejected too (a NaN gate fails both comparisons). Positions where
    ``ignore`` (broadcastable bool, e.g. the padding mask) is True are not checked.

    On the CPU one reduction and one read; on an accelerator the check is queued with
    ``torch._assert_async`` (no host sync: the error surfaces at the next sync); on ``meta``
    tensors there are no values to check.
    """
    if not p.numel() or p.device.type == "meta":
        return
    ok = (p >= 0) & (p <= 1)
    if ignore is not None:
        ok |= ignore
    ok = ok.all()
    if p.device.type != "cpu":
        torch._assert_async(ok, f"{name}: expected probabilities in [0, 1] (no NaN)")
        return
    if not bool(ok):
        bad = p.detach() if ignore is None else p.detach().masked_fill(ignore, 0.5)
        n_nan = int(bad.isnan().sum())
        finite = bad[~bad.isnan()]
        got = (
            f"values in [{float(finite.min()):.4g}, {float(finite.max()):.4g}]"
            if finite.numel()
            else "only NaN"
        )
        if n_nan:
            got += f" and {n_nan} NaN"
        raise ValueError(f"{name}: expected probabilities in [0, 1], got {got}")


def check_memory_gate(
    name: str, p: object, lead_shape: torch.Size, ref: Tensor
) -> Tensor | float | None:
    """A gate of the memory primitives: ``None``, a number in [0, 1], or a tensor of ``lead_shape``."""
    if p is None:
        return None
    if isinstance(p, bool) or not isinstance(p, (int, float, Tensor)):
        raise TypeError(f"{name}: expected None, a float or a tensor, got {type(p).__name__}")
    if not isinstance(p, Tensor):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {p}")
        return float(p)
    if not p.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {p.dtype}")
    if p.dim() != 0 and p.shape != lead_shape:
        raise ValueError(
            f"{name}: expected a scalar or shape {tuple(lead_shape)} (one gate per memory), "
            f"got shape {_shape(p)}"
        )
    if p.dtype != ref.dtype:
        raise TypeError(f"{name}: expected dtype {ref.dtype} (same as the memory), got {p.dtype}")
    _check_prob_range(name, p)
    return p


def check_qkv(q: object, k: object, v: object) -> tuple[int, int, int, int, int]:
    """Check ``q, k: [B, T, H, d_k]`` and ``v: [B, T, H, d_v]``; return ``(B, T, H, d_k, d_v)``."""
    q = check_float_tensor("q", q, rank=4)
    k = check_float_tensor("k", k, rank=4)
    v = check_float_tensor("v", v, rank=4)
    if k.shape != q.shape:
        raise ValueError(
            f"k: expected the shape of q {_shape(q)} ([B, T, H, d_k]), got {_shape(k)}"
        )
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v: expected [B, T, H] = {tuple(q.shape[:3])} like q (heads and length must match), "
            f"got shape {_shape(v)}"
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v: expected one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    B, T, H, d_k = q.shape
    if T == 0:
        raise ValueError("q: expected a non-empty sequence (T >= 1), got T = 0")
    if B == 0 or H == 0 or d_k == 0 or v.shape[3] == 0:
        raise ValueError(
            f"q, v: expected non-zero B, H and head dims, got q {_shape(q)}, v {_shape(v)}"
        )
    return B, T, H, d_k, v.shape[3]


def check_gate(
    name: str, p: object, B: int, T: int, H: int, ref: Tensor, mask: Tensor | None = None
) -> Tensor | None:
    """A per-token, per-head gate ``[B, T, H]`` with values in [0, 1] (not checked at padded
    positions, ``mask`` `[B, T]` True), or ``None``."""
    if p is None:
        return None
    if not isinstance(p, Tensor):
        raise TypeError(
            f"{name}: expected None or a tensor of shape [B, T, H], got {type(p).__name__}"
        )
    if not p.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {p.dtype}")
    if p.shape != (B, T, H):
        raise ValueError(f"{name}: expected shape [B, T, H] = {(B, T, H)}, got {_shape(p)}")
    if p.dtype not in accepted_dtypes(ref):
        raise TypeError(f"{name}: expected dtype {_want(ref)}, got {p.dtype}")
    _check_prob_range(name, p, None if mask is None else mask.unsqueeze(-1))
    return p


def check_padding_mask(
    mask: object, B: int, T: int, name: str = "key_padding_mask"
) -> Tensor | None:
    """``mask`` `[B, T]` bool, True = padding (PyTorch's convention), or None.

    The one padding-mask validator of the package (functional, layers and models); ``name`` is the
    argument as the caller's signature spells it.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name}: expected a bool tensor [B, T] (True = padding), got {got}")
    if mask.shape != (B, T):
        raise ValueError(f"{name}: expected shape [B, T] = {(B, T)}, got {_shape(mask)}")
    return mask


def check_state(
    name: str, s: object, B: int, H: int, d_v: int, d_k: int, ref: Tensor
) -> Tensor | None:
    """A carried memory ``[B, H, d_v, d_k]`` or ``None``."""
    if s is None:
        return None
    s = check_float_tensor(name, s, rank=4)
    if s.shape != (B, H, d_v, d_k):
        raise ValueError(
            f"{name}: expected shape [B, H, d_v, d_k] = {(B, H, d_v, d_k)}, got {_shape(s)}"
        )
    if s.dtype not in accepted_dtypes(ref):
        raise TypeError(f"{name}: expected dtype {_want(ref)}, got {s.dtype}")
    return s
