"""Pure tensor math of Neural Attention Memory.

Letter legend (used in every docstring):
    B batch, T sequence length, H heads, d_k key/query size, d_v value size, C chunk size,
    M a memory `[..., d_v, d_k]` (value rows, key columns: the paper's orientation).
    Sequences are `[B, T, H, d]`, per-token gates `[B, T, H]`, carried states `[B, H, d_v, d_k]`.
"""

from .memory import nam_read, nam_write, unit_norm

__all__ = ["nam_read", "nam_write", "unit_norm"]
