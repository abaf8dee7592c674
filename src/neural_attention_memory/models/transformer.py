"""A pre-LayerNorm Transformer encoder whose attention is swappable: NAM, softmax or linear.

This is the model of the paper's Long Range Arena study (PAPER.md §7): the same encoder, the same
projections and the same hyper-parameters, only the attention kernel differs:

- ``"nam"``: non-causal NAM attention (PAPER.md §2), ``out_j = sum_s cos(q_j, k_s) v_s``: unit
  queries and keys, no softmax, no scale, no normaliser; ``O(T d_k d_v)`` per head.
- ``"softmax"``: ``torch.nn.functional.scaled_dot_product_attention``; ``O(T^2 d)`` per head.
- ``"linear"``: Katharopoulos et al. 2020, ``phi(x) = elu(x) + 1``,
  ``out_j = phi(q_j)^T (sum_s phi(k_s) v_s^T) / (phi(q_j)^T sum_s phi(k_s))``.

Padding is honoured by all three: padded tokens are never attended to (they write nothing into the
NAM memory or the linear-attention sums), so the outputs on real tokens do not depend on how much
padding follows them. Outputs at padded positions are zeroed by the attention and must be ignored.

Blocks: ``x += Drop(Attn(LN x)); x += Drop(MLP(LN x))``, then a final LayerNorm. Heads on top:
:class:`SequenceClassifier` (CLS or mean pooling + MLP head) and :class:`DualEncoderClassifier`
(one shared encoder for two documents, ``[u, v, u*v, u-v]`` interaction, as in LRA retrieval).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import nam_attention

__all__ = [
    "ATTENTIONS",
    "DualEncoderClassifier",
    "SelfAttention",
    "SequenceClassifier",
    "TransformerConfig",
    "TransformerEncoder",
    "linear_attention",
    "softmax_attention",
]

ATTENTIONS = ("nam", "softmax", "linear")
POSITIONS = ("learned", "sinusoidal", "none")
POOLINGS = ("cls", "mean")


@dataclass
class TransformerConfig:
    """Hyper-parameters of :class:`TransformerEncoder`.

    Attributes:
        d_model: embedding / residual width ``D``.
        num_layers: number of pre-LN blocks.
        num_heads: attention heads ``H`` (``D`` must be divisible by ``H``).
        d_ff: hidden width of the MLP.
        attention: ``"nam"``, ``"softmax"`` or ``"linear"``.
        vocab_size: if set, ``forward`` also accepts integer tokens ``[B, T]`` and embeds them.
        max_len: longest sequence (learned positions are a table of this size).
        positional: ``"learned"``, ``"sinusoidal"`` or ``"none"``.
        dropout: dropout on the residual branches and the embedding.
        attn_dropout: dropout on the softmax attention weights (softmax only; the other
            kernels have no weight matrix to drop from).
        activation: ``"gelu"`` or ``"relu"`` in the MLP.
        padding_idx: token id used for padding (its embedding row stays zero), or None.
    """

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 128
    attention: str = "softmax"
    vocab_size: int | None = None
    max_len: int = 2048
    positional: str = "learned"
    dropout: float = 0.1
    attn_dropout: float = 0.0
    activation: str = "gelu"
    padding_idx: int | None = 0

    def __post_init__(self) -> None:
        for name in ("d_model", "num_layers", "num_heads", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of d_model={self.d_model}, got {self.num_heads}"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")
        if self.positional not in POSITIONS:
            raise ValueError(f"positional: expected one of {POSITIONS}, got {self.positional!r}")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation: expected 'gelu' or 'relu', got {self.activation!r}")
        for name in ("dropout", "attn_dropout"):
            p = getattr(self, name)
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
        if self.vocab_size is not None and (
            not isinstance(self.vocab_size, int) or self.vocab_size < 1
        ):
            raise ValueError(
                f"vocab_size: expected None or a positive int, got {self.vocab_size!r}"
            )
        if self.padding_idx is not None and self.vocab_size is not None:
            if not 0 <= self.padding_idx < self.vocab_size:
                raise ValueError(
                    f"padding_idx: expected None or an id in [0, {self.vocab_size}), "
                    f"got {self.padding_idx!r}"
                )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        """Build from a mapping, ignoring keys that are not fields (e.g. a model ``name``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Attention kernels: q, k `[B, T, H, d_k]`, v `[B, T, H, d_v]`, mask `[B, T]` bool True = padding.


def _nam_attention(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Non-causal NAM attention of the functional core (padded tokens write nothing, output 0)."""
    return nam_attention(q, k, v, key_padding_mask=key_padding_mask)


def softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """Scaled dot-product attention over non-padded keys.

    Args:
        q, k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`.
        key_padding_mask: `[B, T]` bool, True = padding, or None.
    Returns:
        `[B, T, H, d_v]`, zero at padded positions.
    """
    mask = None
    if key_padding_mask is not None and bool(key_padding_mask.any()):
        # Only pass a mask when something is padded: without one SDPA may pick a fused kernel.
        mask = ~key_padding_mask[:, None, None, :]  # [B, 1, 1, T]: True = may attend
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout_p
    ).transpose(1, 2)
    if mask is not None:
        out = out.masked_fill(key_padding_mask[:, :, None, None], 0.0)
    return out


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, eps: float = 1e-6
) -> Tensor:
    """Linear attention of Katharopoulos et al. (2020) with the ``elu + 1`` feature map.

    The padding mask is applied after the feature map (``phi(k) = 0`` at padding), so padded keys
    add nothing to either the key-value sum or the normaliser.

    Args:
        q, k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`.
        key_padding_mask: `[B, T]` bool, True = padding, or None.
    Returns:
        `[B, T, H, d_v]`, zero at padded positions.
    """
    phi_q = F.elu(q) + 1.0
    phi_k = F.elu(k) + 1.0
    if key_padding_mask is not None:
        phi_k = phi_k.masked_fill(key_padding_mask[:, :, None, None], 0.0)
    kv = torch.einsum("bshk,bshv->bhkv", phi_k, v)  # [B, H, d_k, d_v]
    z = phi_k.sum(dim=1)  # [B, H, d_k]
    num = torch.einsum("bthk,bhkv->bthv", phi_q, kv)
    den = torch.einsum("bthk,bhk->bth", phi_q, z).unsqueeze(-1) + eps
    out = num / den
    if key_padding_mask is not None:
        out = out.masked_fill(key_padding_mask[:, :, None, None], 0.0)
    return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with a swappable kernel; identical parameters for all kernels.

    ``x [B, T, D] -> [B, T, D]``: fused q/k/v projection, kernel, output projection.
    """

    def __init__(
        self, d_model: int, num_heads: int, attention: str = "softmax", attn_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {attention!r}")
        if d_model % num_heads:
            raise ValueError(f"num_heads: expected a divisor of d_model={d_model}, got {num_heads}")
        self.d_model, self.num_heads, self.attention = d_model, num_heads, attention
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads).unbind(2)
        if self.attention == "nam":
            o = _nam_attention(q, k, v, key_padding_mask)
        elif self.attention == "softmax":
            p = self.attn_dropout if self.training else 0.0
            o = softmax_attention(q, k, v, key_padding_mask, dropout_p=p)
        else:
            o = linear_attention(q, k, v, key_padding_mask)
        return self.out(o.reshape(B, T, D))


class EncoderBlock(nn.Module):
    """``x += Drop(Attn(LN x)); x += Drop(MLP(LN x))``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, cfg.num_heads, cfg.attention, cfg.attn_dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            act,
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_ff, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), key_padding_mask))
        return x + self.drop(self.mlp(self.ln2(x)))


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The fixed sin/cos table of Vaswani et al. (2017): `[length, dim]`."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def _check_mask(mask: object, B: int, T: int) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"padding_mask: expected a bool tensor [B, T] (True = padding), got {got}")
    if mask.shape != (B, T):
        raise ValueError(f"padding_mask: expected shape [B, T] = {(B, T)}, got {tuple(mask.shape)}")
    return mask


class TransformerEncoder(nn.Module):
    """Pre-LN Transformer encoder with NAM, softmax or linear attention.

    ``forward(x, padding_mask)``: ``x`` is either integer tokens `[B, T]` (needs
    ``config.vocab_size``) or already-embedded inputs `[B, T, D]`; positions are added here.
    ``padding_mask`` is `[B, T]` bool, True = padding. Returns hidden states `[B, T, D]` after a
    final LayerNorm; rows at padded positions carry no information and must be ignored.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        self.config = config
        D = config.d_model
        self.embed = None
        if config.vocab_size is not None:
            self.embed = nn.Embedding(config.vocab_size, D, padding_idx=config.padding_idx)
            nn.init.normal_(self.embed.weight, std=0.02)
            if config.padding_idx is not None:
                with torch.no_grad():
                    self.embed.weight[config.padding_idx].zero_()
        if config.positional == "learned":
            self.pos = nn.Parameter(torch.randn(config.max_len, D) * 0.02)
        elif config.positional == "sinusoidal":
            self.register_buffer("pos", sinusoidal_positions(config.max_len, D), persistent=False)
        else:
            self.pos = None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(D)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """Token embedding only (no positions): `[B, T]` int -> `[B, T, D]`."""
        if self.embed is None:
            raise ValueError(
                "x: integer tokens need config.vocab_size; pass embedded [B, T, D] input"
            )
        if tokens.dim() != 2:
            raise ValueError(f"x: expected integer tokens [B, T], got shape {tuple(tokens.shape)}")
        return self.embed(tokens)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor [B, T] or [B, T, D], got {type(x).__name__}")
        if not x.is_floating_point():
            x = self.embed_tokens(x)
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(
                f"x: expected [B, T, D] with D = {self.config.d_model}, got {tuple(x.shape)}"
            )
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("x: expected a non-empty sequence (T >= 1), got T = 0")
        if T > self.config.max_len:
            raise ValueError(f"x: expected length <= max_len = {self.config.max_len}, got {T}")
        padding_mask = _check_mask(padding_mask, B, T)
        if self.pos is not None:
            x = x + self.pos[:T]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, padding_mask)
        return self.ln_f(x)


def _mlp_head(d_in: int, hidden: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class SequenceClassifier(nn.Module):
    """Token embedding + :class:`TransformerEncoder` + pooling + MLP head.

    ``forward(tokens [B, T] int, padding_mask [B, T] bool | None) -> logits [B, num_classes]``.
    ``pooling="cls"`` prepends a learned CLS vector (so ``max_len`` must be ``>= T + 1``) and
    reads its output; ``"mean"`` averages the outputs of the real tokens.
    """

    def __init__(
        self,
        config: TransformerConfig,
        num_classes: int,
        pooling: str = "cls",
        head_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError(
                "config.vocab_size: expected a positive int for a token classifier, got None"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.encoder = TransformerEncoder(config)
        self.pooling = pooling
        self.num_classes = num_classes
        if pooling == "cls":
            self.cls = nn.Parameter(torch.randn(config.d_model) * 0.02)
        self.head = _mlp_head(config.d_model, head_hidden or config.d_ff, num_classes)

    def encode(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Pooled representation `[B, D]`."""
        if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() != 2:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens: expected an integer tensor [B, T], got {got}")
        B, T = tokens.shape
        padding_mask = _check_mask(padding_mask, B, T)
        x = self.encoder.embed_tokens(tokens)
        if self.pooling == "cls":
            x = torch.cat([self.cls.expand(B, 1, -1), x], dim=1)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (1, 0), value=False)
            return self.encoder(x, padding_mask)[:, 0]
        h = self.encoder(x, padding_mask)
        if padding_mask is None:
            return h.mean(dim=1)
        keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encode(tokens, padding_mask))


class DualEncoderClassifier(nn.Module):
    """Two documents through one shared encoder; the head sees ``[u, v, u*v, u-v]``.

    ``forward(tokens1, mask1, tokens2, mask2) -> logits [B, num_classes]`` with tokens `[B, T]`.
    """

    def __init__(
        self,
        config: TransformerConfig,
        num_classes: int = 2,
        pooling: str = "cls",
        head_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.tower = SequenceClassifier(config, max(num_classes, 2), pooling, head_hidden)
        self.tower.head = nn.Identity()  # the tower only encodes; the pair head is below
        self.num_classes = num_classes
        self.head = _mlp_head(4 * config.d_model, head_hidden or config.d_ff, num_classes)

    def forward(
        self,
        tokens1: Tensor,
        mask1: Tensor | None,
        tokens2: Tensor,
        mask2: Tensor | None,
    ) -> Tensor:
        u = self.tower.encode(tokens1, mask1)
        v = self.tower.encode(tokens2, mask2)
        return self.head(torch.cat([u, v, u * v, u - v], dim=-1))
