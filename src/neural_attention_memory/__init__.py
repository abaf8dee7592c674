"""Neural Attention Memory (NAM): memory primitives, NAM attention, LSAM, NAM-TM and experiments.

Usage: ``import neural_attention_memory as nam`` then e.g.
``M = nam.nam_write(M, nam.unit_norm(k), v, p_w, p_e)`` and ``nam.nam_read(M, nam.unit_norm(q))``,
or a causal language model: ``nam.NAMForCausalLM(nam.NAMConfig(vocab_size=256)).generate(...)``.
Submodules: ``functional`` (tensor math), ``layers``, ``models``, ``tasks``, ``training``,
``experiments``, ``bench``.
"""

from . import functional
from .functional import nam_read, nam_write, unit_norm
from .layers import LinearAttention, NAMAttention, SoftmaxAttention
from .models.lm import CausalLMOutput, NAMConfig, NAMForCausalLM
from .models.transformer import TransformerConfig, TransformerEncoder

__version__ = "0.1.0"
__all__ = [
    "CausalLMOutput",
    "LinearAttention",
    "NAMAttention",
    "NAMConfig",
    "NAMForCausalLM",
    "SoftmaxAttention",
    "TransformerConfig",
    "TransformerEncoder",
    "__version__",
    "functional",
    "nam_read",
    "nam_write",
    "unit_norm",
]
