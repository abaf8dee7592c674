"""Baselines of the length-generalisation experiment, all per-position taggers
``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``:
Transformer (BERT-like), Universal Transformer, 2-layer LSTM with attention, DNC and Stack-RNN,
plus :func:`build_tagger`, the factory that also reaches the NAM models (LSAM, NAM-TM)."""

from ._common import count_parameters
from .dnc import DNC, DNCConfig, DNCCore, DNCState
from .factory import BASELINES, PAPER_PARAMS, SIZES, all_model_names, build_tagger
from .lstm_attention import LSTMAttention, LSTMAttentionConfig, LSTMAttentionCore
from .stack_rnn import StackRNN, StackRNNConfig, StackRNNCore, StackRNNState
from .transformer_tagger import TransformerTagger, TransformerTaggerConfig
from .universal_transformer import UniversalTransformer, UniversalTransformerConfig

__all__ = [
    "BASELINES",
    "DNC",
    "PAPER_PARAMS",
    "SIZES",
    "DNCConfig",
    "DNCCore",
    "DNCState",
    "LSTMAttention",
    "LSTMAttentionConfig",
    "LSTMAttentionCore",
    "StackRNN",
    "StackRNNConfig",
    "StackRNNCore",
    "StackRNNState",
    "TransformerTagger",
    "TransformerTaggerConfig",
    "UniversalTransformer",
    "UniversalTransformerConfig",
    "all_model_names",
    "build_tagger",
    "count_parameters",
]
