"""Pure tensor math of Neural Attention Memory.

Letter legend (used in every docstring):
    B batch, T sequence length, H heads, d_k key/query size, d_v value size, C chunk size,
    M a memory `[..., d_v, d_k]` (value rows, key columns: the paper's orientation).
    Sequences are `[B, T, H, d]`, per-token gates `[B, T, H]`, carried states `[B, H, d_v, d_k]`.

The three causal forms share one signature and one meaning: ``naive_`` (a loop of ``nam_write`` /
``nam_read``, the reference), ``recurrent_`` (a fused token loop, for decoding) and ``chunk_``
(chunk-parallel with a hand-written backward, for training and long sequences).
"""

from .attention import nam_attention, recurrent_causal_nam_attention
from .chunk import chunk_causal_nam_attention
from .memory import nam_read, nam_write, unit_norm
from .naive import naive_causal_nam_attention, naive_nam_attention

__all__ = [
    "chunk_causal_nam_attention",
    "naive_causal_nam_attention",
    "naive_nam_attention",
    "nam_attention",
    "nam_read",
    "nam_write",
    "recurrent_causal_nam_attention",
    "unit_norm",
]
