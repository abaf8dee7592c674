"""``nn.Module`` layers: parameters + reshaping + one call into a kernel.

The three attentions share one protocol (``forward(x, state=None, padding_mask=None) -> (out,
state)``, ``step``, ``init_state``) and the same projections, so a model swaps them freely.
"""

from .attention import NAMAttention, NAMAttentionState
from .linear import LinearAttention, LinearAttentionState
from .softmax import SoftmaxAttention, SoftmaxAttentionState

__all__ = [
    "LinearAttention",
    "LinearAttentionState",
    "NAMAttention",
    "NAMAttentionState",
    "SoftmaxAttention",
    "SoftmaxAttentionState",
]
