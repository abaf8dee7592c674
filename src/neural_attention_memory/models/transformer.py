"""A pre-LayerNorm Transformer whose attention is swappable: NAM, NAM-tied, softmax or linear.

One block, built on the attention layers of :mod:`..layers` (models never re-implement attention),
causal or non-causal:

- ``"nam"``: :class:`~..layers.NAMAttention` (paper §2), ``out_t = p_r M mu(q_t)`` with unit queries
  and keys, no softmax, no scale, no normaliser; learned gates from ``config.gates`` (write / erase
  / read; erase only when causal). Non-causal with no gates is the paper's LRA model.
- ``"nam-tied"``: causal NAM attention whose erase is tied to its write gate (``p_e = p_w``, the
  delta rule).
- ``"softmax"``: :class:`~..layers.SoftmaxAttention` (scaled dot-product; a key/value cache when
  causal).
- ``"linear"``: :class:`~..layers.LinearAttention` (Katharopoulos et al. 2020, ``elu + 1``).

Padding is honoured by all of them: padded tokens are never attended to (they write nothing into
the NAM memory or the linear-attention sums) and their outputs are zero.

Blocks: ``x += Drop(Attn(LN x)); x += Drop(MLP(LN x))``, then a final LayerNorm. Every block and
the encoder speak the sequence-model protocol: ``forward(x, state=None, padding_mask=None) ->
(out, state)``; causal ones also ``step(x_t, state)`` and ``init_state(batch, device, dtype)``.
Heads on top: :class:`SequenceClassifier` (CLS or mean pooling + MLP head) and
:class:`DualEncoderClassifier` (one shared encoder for two documents, ``[u, v, u*v, u-v]``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import nam_attention
from ..layers import LinearAttention, NAMAttention, SoftmaxAttention
from ..layers._common import check_padding_mask, zero_padded
from ..layers.linear import linear_attention
from ..layers.softmax import softmax_attention

__all__ = [
    "ATTENTIONS",
    "DualEncoderClassifier",
    "EncoderBlock",
    "SequenceClassifier",
    "TransformerConfig",
    "TransformerEncoder",
    "TransformerState",
    "build_attention",
    "linear_attention",
    "softmax_attention",
]

ATTENTIONS = ("nam", "nam-tied", "softmax", "linear")
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
        attention: ``"nam"``, ``"nam-tied"`` (causal only), ``"softmax"`` or ``"linear"``.
        causal: causal attention (a state, ``step``) or non-causal (every token sees all).
        gates: NAM gates, a subset of ``("write", "erase", "read")`` (erase only when causal);
            ``"nam-tied"`` always has a write gate and erases with it.
        chunk_size: chunk length of the causal NAM / linear kernels.
        vocab_size: if set, ``forward`` also accepts integer tokens ``[B, T]`` and embeds them.
        max_len: longest sequence for ``"learned"`` positions (a table of this size).
        positional: ``"learned"``, ``"sinusoidal"`` or ``"none"``.
        dropout: dropout on the residual branches and the embedding.
        attn_dropout: dropout on the softmax attention weights (softmax only; the other
            kernels have no weight matrix to drop from).
        activation: ``"gelu"`` or ``"relu"`` in the MLP.
        padding_idx: token id used for padding (its embedding row stays zero), or None.
        embed_std: standard deviation of the initial token embeddings, learned positions and
            CLS vector, i.e. the scale the residual stream starts at (0.02, GPT-2's; the LRA
            reference code initialises token embeddings at 1.0). NAM attention has no
            normaliser, so its output's size relative to this stream depends on it.
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
    causal: bool = False
    gates: tuple[str, ...] = ()
    chunk_size: int = 64
    embed_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("d_model", "num_layers", "num_heads", "d_ff", "max_len", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of d_model={self.d_model}, got {self.num_heads}"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")
        if not isinstance(self.causal, bool):
            raise ValueError(f"causal: expected a bool, got {self.causal!r}")
        if self.attention == "nam-tied" and not self.causal:
            raise ValueError(
                "attention: 'nam-tied' (erase tied to write) needs causal=True, got causal=False"
            )
        if isinstance(self.gates, str):
            self.gates = (self.gates,)
        self.gates = tuple(self.gates)
        if self.gates and not self.attention.startswith("nam"):
            raise ValueError(
                f"gates: only NAM attention has gates, got gates={self.gates} with "
                f"attention={self.attention!r}"
            )
        if self.positional not in POSITIONS:
            raise ValueError(f"positional: expected one of {POSITIONS}, got {self.positional!r}")
        std = self.embed_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < math.inf:
            raise ValueError(f"embed_std: expected a positive finite float, got {std!r}")
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


def _nam_attention(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Non-causal NAM attention kernel (functional core) for `[B, T, H, d]` inputs."""
    return nam_attention(q, k, v, key_padding_mask=key_padding_mask)


def build_attention(cfg: TransformerConfig) -> nn.Module:
    """The attention layer of one block: same projections for every kind."""
    D, H = cfg.d_model, cfg.num_heads
    if cfg.attention == "softmax":
        return SoftmaxAttention(D, H, causal=cfg.causal, attn_dropout=cfg.attn_dropout)
    if cfg.attention == "linear":
        return LinearAttention(D, H, causal=cfg.causal, chunk_size=cfg.chunk_size)
    if cfg.attention == "nam-tied":
        gates = tuple(g for g in cfg.gates if g != "erase")
        gates = gates if "write" in gates else ("write", *gates)
        return NAMAttention(
            D, H, causal=True, gates=gates, tie_erase=True, chunk_size=cfg.chunk_size
        )
    return NAMAttention(D, H, causal=cfg.causal, gates=cfg.gates, chunk_size=cfg.chunk_size)


class EncoderBlock(nn.Module):
    """``x += Drop(Attn(LN x)); x += Drop(MLP(LN x))``.

    ``forward(x [B, T, D], state=None, padding_mask=None) -> (x [B, T, D], attention state)``;
    ``step(x_t [B, D], state) -> (x_t [B, D], state)`` when causal.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = build_attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            act,
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_ff, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def init_state(self, batch: int, device=None, dtype=None):
        return self.attn.init_state(batch, device, dtype)

    def forward(
        self, x: Tensor, state: Any = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        a, state = self.attn(self.ln1(x), state, padding_mask)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.ln2(x))), state

    def step(self, x_t: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        a, state = self.attn.step(self.ln1(x_t), state)
        x_t = x_t + self.drop(a)
        return x_t + self.drop(self.mlp(self.ln2(x_t))), state


def sinusoidal_positions(length: int, dim: int, start: int = 0) -> Tensor:
    """The fixed sin/cos table of Vaswani et al. (2017): `[length, dim]` for positions
    ``start .. start + length - 1``."""
    pos = torch.arange(start, start + length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class TransformerState(NamedTuple):
    """State of a causal :class:`TransformerEncoder`.

    Attributes:
        layers: one attention state per block (:class:`~..layers.NAMAttentionState`,
            :class:`~..layers.LinearAttentionState` or :class:`~..layers.SoftmaxAttentionState`).
        position: `[B]` int64, the position of the next token (real tokens seen so far).
    """

    layers: tuple
    position: Tensor


class TransformerEncoder(nn.Module):
    """Pre-LN Transformer with NAM, NAM-tied, softmax or linear attention, causal or not.

    ``forward(x, state=None, padding_mask=None) -> (h, state)``: ``x`` is either integer tokens
    `[B, T]` (needs ``config.vocab_size``) or already-embedded inputs `[B, T, D]`; positions are
    added here. ``padding_mask`` is `[B, T]` bool, True = padding. ``h`` `[B, T, D]` are the hidden
    states after a final LayerNorm, zero at padded positions. A causal encoder takes and returns a
    :class:`TransformerState` (``None`` means empty) and can ``step``; a non-causal one returns
    ``None`` as its state and cannot step.
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
            nn.init.normal_(self.embed.weight, std=config.embed_std)
            if config.padding_idx is not None:
                with torch.no_grad():
                    self.embed.weight[config.padding_idx].zero_()
        if config.positional == "learned":
            self.pos = nn.Parameter(torch.randn(config.max_len, D) * config.embed_std)
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

    def init_state(self, batch: int, device=None, dtype=None) -> TransformerState:
        """Empty attention states for every block, position 0."""
        if not self.config.causal:
            raise NotImplementedError(
                "TransformerEncoder(causal=False) carries no state: every token attends to the "
                "whole sequence"
            )
        ref = self.ln_f.weight
        device = device or ref.device
        layers = tuple(b.init_state(batch, device, dtype or ref.dtype) for b in self.blocks)
        return TransformerState(layers, torch.zeros(batch, dtype=torch.long, device=device))

    def _positions(self, position: Tensor | None, T: int, like: Tensor) -> Tensor | None:
        """Position vectors `[B or 1, T, D]` for tokens ``position .. position + T - 1``."""
        if self.pos is None:
            return None
        if position is None:
            idx = torch.arange(T, device=like.device)[None]
        else:
            idx = position[:, None] + torch.arange(T, device=like.device)[None]
        top = int(idx.max())
        if top >= self.pos.shape[0]:
            if self.config.positional == "learned":
                raise ValueError(
                    f"x: expected positions < max_len = {self.config.max_len}, got up to {top}"
                )
            table = sinusoidal_positions(top + 1, self.config.d_model).to(like)
        else:
            table = self.pos
        return table[idx].to(like.dtype)

    def _check_state(self, state: object, B: int) -> TransformerState | None:
        if state is None:
            return None
        if not self.config.causal:
            raise ValueError("state: only a causal TransformerEncoder carries a state, got one")
        if not isinstance(state, TransformerState):
            raise TypeError(f"state: expected a TransformerState, got {type(state).__name__}")
        if len(state.layers) != len(self.blocks) or tuple(state.position.shape) != (B,):
            raise ValueError(
                f"state: expected {len(self.blocks)} layer states and position [{B}], got "
                f"{len(state.layers)} and {tuple(state.position.shape)}"
            )
        return state

    def _embed(self, x: object, rank: int) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            if x.dim() != rank - 1:
                raise ValueError(f"x: expected integer tokens of rank {rank - 1}, got {x.dim()}")
            x = self.embed_tokens(x if rank == 3 else x[:, None])
            return x if rank == 3 else x[:, 0]
        if x.dim() != rank or x.shape[-1] != self.config.d_model:
            want = "[B, T, D]" if rank == 3 else "[B, D]"
            raise ValueError(
                f"x: expected {want} with D = {self.config.d_model}, got {tuple(x.shape)}"
            )
        return x

    def forward(
        self, x: Tensor, state: TransformerState | None = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, TransformerState | None]:
        """``x`` tokens `[B, T]` or embedded `[B, T, D]` -> ``(h [B, T, D], state)``."""
        x = self._embed(x, 3)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("x: expected a non-empty sequence (T >= 1), got T = 0")
        if self.config.positional == "learned" and T > self.config.max_len:
            raise ValueError(f"x: expected length <= max_len = {self.config.max_len}, got {T}")
        padding_mask = check_padding_mask(padding_mask, B, T)
        state = self._check_state(state, B)
        if self.config.causal and state is None:
            state = self.init_state(B, x.device, x.dtype)
        pos = self._positions(None if state is None else state.position, T, x)
        if pos is not None:
            x = x + pos
        x = self.drop(x)
        new_layers = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state.layers[i], padding_mask)
            new_layers.append(s)
        h = zero_padded(self.ln_f(x), padding_mask)
        if state is None:
            return h, None
        real = T if padding_mask is None else (~padding_mask).sum(1)
        return h, TransformerState(tuple(new_layers), state.position + real)

    def step(
        self, x_t: Tensor, state: TransformerState | None = None
    ) -> tuple[Tensor, TransformerState]:
        """One token: ``x_t`` ids `[B]` or embedded `[B, D]` -> ``(h_t [B, D], new state)``."""
        if not self.config.causal:
            raise NotImplementedError(
                "TransformerEncoder(causal=False) cannot step: every token attends to the whole "
                "sequence"
            )
        x_t = self._embed(x_t, 2)
        state = self._check_state(state, x_t.shape[0])
        if state is None:
            state = self.init_state(x_t.shape[0], x_t.device, x_t.dtype)
        pos = self._positions(state.position, 1, x_t)
        if pos is not None:
            x_t = x_t + pos[:, 0]
        x_t = self.drop(x_t)
        new_layers = []
        for block, s in zip(self.blocks, state.layers, strict=True):
            x_t, s = block.step(x_t, s)
            new_layers.append(s)
        return self.ln_f(x_t), TransformerState(tuple(new_layers), state.position + 1)


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
            self.cls = nn.Parameter(torch.randn(config.d_model) * config.embed_std)
        self.head = _mlp_head(config.d_model, head_hidden or config.d_ff, num_classes)

    def encode(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Pooled representation `[B, D]`."""
        if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() != 2:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens: expected an integer tensor [B, T], got {got}")
        B, T = tokens.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        x = self.encoder.embed_tokens(tokens)
        if self.pooling == "cls":
            x = torch.cat([self.cls.expand(B, 1, -1), x], dim=1)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (1, 0), value=False)
            return self.encoder(x, padding_mask=padding_mask)[0][:, 0]
        h, _ = self.encoder(x, padding_mask=padding_mask)
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
