"""Sequence models for masked sequence completion: Embedding -> LSAM | NAM-TM layers -> classifier.

The length-generalisation experiment (docs/paper.md §5) builds its models through
:func:`build_memory_model`; every model maps ``tokens [B, T]`` (plus an optional right-padding mask)
to per-position logits ``[B, T, num_classes]``.

Model names and what they are (docs/paper.md §4 lists the two NAM-TMs):

=====================  ==================================================================
``lsam``               2 LSAM layers (docs/paper.md §3), erase tied to write.
``nam-tm-2022``        the model of the paper's Table 2: bidirectional GRU controller, erase
                       tied to write, keys stored at positions (``j = K^T q``), 2 layers, the
                       second starting from the first's value tape. Cannot step.
``nam-tm-2023``        the authors' latest release: LSTM controller, separate ``p_r, p_w,
                       p_e``, the raw write head stored under the key (``j = K q``), 1 layer.
``<base>-nojump``      actions NO-OP/LEFT/RIGHT (no key tape, no jump query).
``<base>-onlyjump``    actions NO-OP/JUMP. As in the authors' code this cannot move a head off
                       cell 0 (the key tape only stores visited positions): one register per tape.
``<base>-norw``        ``p_r = p_w = 1`` (no read/write probabilities; erase kept: with the
                       2022 model's tied erase that is ``p_e = 1``).
``<base>-noerase``     ``p_e = 0``.
``nam-tm``, ``nam-tm-*``  aliases of ``nam-tm-2022`` and its ablations (the Table 2 model).
``nam-tm-mix``         the earlier mix (LSTM controller, separate gates, keys at positions, 2
                       layers handing on value tape, key tape and heads), kept to reproduce
                       results measured with it.
=====================  ==================================================================

Sizes: ``quick`` trains a few thousand steps in minutes on one CPU thread; ``paper`` is close to
the paper's parameter counts (LSAM 25.8M, NAM-TM 23.3M) or, for ``nam-tm-2023``, the released
sizes. NAM-TM's ``tape_length="auto"`` gives
every forward call a tape of ``T + 1`` cells (``T`` = sequence length) so heads never wrap round a
circular tape onto written cells when moving one way; the released code used a fixed 32 cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from torch import Tensor, nn

from ._checks import check_choice, check_tokens
from ._params import count_parameters
from .lsam import LSAM
from .nam_tm import ACTIONS, NAMTMStack

__all__ = [
    "MEMORY_MODELS",
    "NAMTM_ALIASES",
    "LSAMSequenceConfig",
    "LSAMSequenceModel",
    "NAMTMSequenceConfig",
    "NAMTMSequenceModel",
    "build_memory_model",
    "count_parameters",
    "resolve_name",
]


# -- LSAM -----------------------------------------------------------------------------------------


@dataclass
class LSAMSequenceConfig:
    """Hyper-parameters of :class:`LSAMSequenceModel` (``hidden_size`` is also the embedding size)."""

    hidden_size: int = 256
    num_heads: int = 8
    num_layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.0
    separate_erase: bool = False


class LSAMSequenceModel(nn.Module):
    """``tokens [B, T] -> logits [B, T, num_classes]`` through an LSAM stack."""

    def __init__(self, vocab_size: int, num_classes: int, config: LSAMSequenceConfig) -> None:
        super().__init__()
        self.vocab_size, self.num_classes, self.config = vocab_size, num_classes, config
        self.embedding = nn.Embedding(vocab_size, config.hidden_size)
        self.lsam = LSAM(
            config.hidden_size,
            config.hidden_size,
            config.num_heads,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            separate_erase=config.separate_erase,
        )
        self.classifier = nn.Linear(config.hidden_size, num_classes)

    def forward(
        self,
        tokens: Tensor,
        padding_mask: Tensor | None = None,
        *,
        reference: bool = False,
        use_kernel: bool = True,
    ) -> Tensor:
        """`tokens [B, T]` int, `padding_mask [B, T]` bool (True = padding) -> `[B, T, C]`.

        ``reference=True`` runs the line-by-line :class:`LSAMCell` loop (tests and benchmarks);
        ``use_kernel=False`` runs the fast path's PyTorch loop instead of the compiled kernel.
        """
        pad = check_tokens(tokens, padding_mask, self.vocab_size)
        x = self.embedding(tokens.long())
        if reference:
            h, _ = self.lsam.forward_reference(x, padding_mask=pad)
        else:
            h, _ = self.lsam(x, padding_mask=pad, use_kernel=use_kernel)
        return self.classifier(h)


# -- NAM-TM ---------------------------------------------------------------------------------------


@dataclass
class NAMTMSequenceConfig:
    """Hyper-parameters of :class:`NAMTMSequenceModel` (``dim`` is also the embedding size).

    ``controller``, ``tied_erase``, ``key_tape`` are :class:`NAMTuringMachine`'s options and
    ``handoff``, ``layer_input`` :class:`NAMTMStack`'s; the defaults are the 2022 model (``nam-tm``).

    The task model around the stack: ``embed="plain"`` feeds the token embedding straight in;
    ``"proj"`` is the authors' task model (Embedding -> Linear -> Dropout(``embed_dropout``) ->
    LayerNorm). ``head="linear"`` classifies the stack's output with one linear layer; ``"mlp"`` is
    the authors' (LayerNorm -> Dropout(``head_dropout``) -> ReLU -> Linear). The NAM-TM's values
    are linear in its input and its output linear in its reads, so with ``"linear"`` the logits
    at a position are a gate-weighted sum of per-token vectors; the ``"mlp"`` head lets them
    depend non-linearly on what was read (e.g. the sum of two digits).
    """

    dim: int = 128
    num_tapes: int = 4
    head_dim: int = 32
    num_layers: int = 2
    tape_length: int | str = "auto"
    actions: tuple[str, ...] = ACTIONS
    rw_prob: bool = True
    erase: bool = True
    controller: str = "bigru"
    tied_erase: bool = True
    key_tape: str = "position"
    handoff: str = "tape"
    layer_input: str = "previous"
    embed: str = "plain"
    head: str = "linear"
    embed_dropout: float = 0.0
    head_dropout: float = 0.0


EMBEDS: tuple[str, ...] = ("plain", "proj")
HEADS: tuple[str, ...] = ("linear", "mlp")


def _check_dropout(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a float in [0, 1), got {value!r}")
    return float(value)


class NAMTMSequenceModel(nn.Module):
    """``tokens [B, T] -> logits [B, T, num_classes]`` through a :class:`NAMTMStack`.

    Layer ``l > 0`` reads layer ``l - 1``'s outputs and starts from its final tape
    (``config.handoff``).
    """

    def __init__(self, vocab_size: int, num_classes: int, config: NAMTMSequenceConfig) -> None:
        super().__init__()
        tl = config.tape_length
        if tl != "auto" and (isinstance(tl, bool) or not isinstance(tl, int) or tl < 1):
            raise ValueError(f"tape_length: expected 'auto' or an int >= 1, got {tl!r}")
        check_choice("embed", config.embed, EMBEDS)
        check_choice("head", config.head, HEADS)
        p_in = _check_dropout("embed_dropout", config.embed_dropout)
        p_out = _check_dropout("head_dropout", config.head_dropout)
        self.vocab_size, self.num_classes, self.config = vocab_size, num_classes, config
        self.embedding = nn.Embedding(vocab_size, config.dim)
        # Identity for "plain", so a plain model's parameters and outputs are unchanged.
        self.embed_proj: nn.Module = (
            nn.Sequential(
                nn.Linear(config.dim, config.dim), nn.Dropout(p_in), nn.LayerNorm(config.dim)
            )
            if config.embed == "proj"
            else nn.Identity()
        )
        self.stack = NAMTMStack(
            config.dim,
            config.num_tapes,
            config.head_dim,
            num_layers=config.num_layers,
            tape_length=32 if tl == "auto" else tl,
            handoff=config.handoff,
            layer_input=config.layer_input,
            actions=tuple(config.actions),
            rw_prob=config.rw_prob,
            erase=config.erase,
            controller=config.controller,
            tied_erase=config.tied_erase,
            key_tape=config.key_tape,
        )
        self.classifier: nn.Module = (
            nn.Sequential(
                nn.LayerNorm(config.dim),
                nn.Dropout(p_out),
                nn.ReLU(),
                nn.Linear(config.dim, num_classes),
            )
            if config.head == "mlp"
            else nn.Linear(config.dim, num_classes)
        )

    @property
    def layers(self) -> nn.ModuleList:
        return self.stack.layers

    def tape_length_for(self, seq_len: int) -> int:
        """Cells of the blank tape used for sequences of ``seq_len`` tokens."""
        tl = self.config.tape_length
        return seq_len + 1 if tl == "auto" else int(tl)

    def forward(
        self,
        tokens: Tensor,
        padding_mask: Tensor | None = None,
        *,
        reference: bool = False,
        use_kernel: bool = True,
        trace: list | None = None,
    ) -> Tensor:
        """`tokens [B, T]` int, `padding_mask [B, T]` bool (True = padding) -> `[B, T, C]`.

        ``reference=True`` runs every layer's slow twin (for tests and benchmarks);
        ``use_kernel=False`` runs the fast path's PyTorch loop instead of the compiled kernel;
        ``trace`` (a list, with ``reference=True`` only) receives each layer's per-step heads
        and gates (:meth:`.nam_tm.NAMTuringMachine.forward_reference`).
        """
        if trace is not None and not reference:
            raise ValueError("trace: only the slow twin records heads; pass reference=True")
        pad = check_tokens(tokens, padding_mask, self.vocab_size)
        h = self.embed_proj(self.embedding(tokens.long()))
        L = self.tape_length_for(tokens.shape[1])
        if reference:
            h, _ = self.stack.forward_reference(h, padding_mask=pad, tape_length=L, trace=trace)
        else:
            h, _ = self.stack(h, padding_mask=pad, tape_length=L, use_kernel=use_kernel)
        return self.classifier(h)


# -- the registry ---------------------------------------------------------------------------------

# The two NAM-TMs of docs/paper.md §4 and the earlier mix of both (kept to reproduce results measured
# with it before the two were separated).
_NAMTM_BASES: dict[str, dict[str, Any]] = {
    "nam-tm-2022": {
        "controller": "bigru",
        "tied_erase": True,
        "key_tape": "position",
        "num_layers": 2,
        "handoff": "tape",
    },
    "nam-tm-2023": {
        "controller": "lstm",
        "tied_erase": False,
        "key_tape": "key",
        "num_layers": 1,
        "handoff": "tape",
    },
    "nam-tm-mix": {
        "controller": "lstm",
        "tied_erase": False,
        "key_tape": "position",
        "num_layers": 2,
        "handoff": "all",
    },
}
_ABLATIONS: dict[str, dict[str, Any]] = {
    "": {},
    "-nojump": {"actions": ("noop", "left", "right")},
    "-onlyjump": {"actions": ("noop", "jump")},
    "-norw": {"rw_prob": False},
    "-noerase": {"erase": False},
}
_NAMTM_VARIANTS: dict[str, dict[str, Any]] = {
    f"{base}{suffix}": {**cfg, **abl}
    for base, cfg in _NAMTM_BASES.items()
    if base != "nam-tm-mix"
    for suffix, abl in _ABLATIONS.items()
}
_NAMTM_VARIANTS["nam-tm-mix"] = dict(_NAMTM_BASES["nam-tm-mix"])
# Plain ``nam-tm`` (and its ablations) is the 2022 model, the one behind the paper's Table 2.
NAMTM_ALIASES: dict[str, str] = {f"nam-tm{s}": f"nam-tm-2022{s}" for s in _ABLATIONS}

MEMORY_MODELS: tuple[str, ...] = ("lsam", *NAMTM_ALIASES, *_NAMTM_VARIANTS)

_SIZES: dict[str, dict[str, Any]] = {
    # quick: ~0.3-0.8M parameters, minutes on one CPU thread; paper: the paper's parameter budget.
    "lsam/quick": {"hidden_size": 256, "num_heads": 8},
    "lsam/paper": {"hidden_size": 1464, "num_heads": 8},
    "nam-tm-2022/quick": {"dim": 128, "num_tapes": 4, "head_dim": 32},
    "nam-tm-2022/paper": {"dim": 1024, "num_tapes": 8, "head_dim": 128},
    "nam-tm-2023/quick": {"dim": 128, "num_tapes": 4, "head_dim": 32},
    "nam-tm-2023/paper": {"dim": 1024, "num_tapes": 8, "head_dim": 128},
    "nam-tm-mix/quick": {"dim": 128, "num_tapes": 4, "head_dim": 32},
    "nam-tm-mix/paper": {"dim": 960, "num_tapes": 8, "head_dim": 128},
}


def resolve_name(name: str) -> str:
    """The canonical model name (``nam-tm*`` aliases resolve to the 2022 model)."""
    return NAMTM_ALIASES.get(name, name)


def build_memory_model(
    name: str, vocab_size: int, num_classes: int, size: str = "quick", **overrides: Any
) -> nn.Module:
    """Build a per-position classifier ``forward(tokens [B, T], padding_mask=None) -> [B, T, C]``.

    Args:
        name: one of :data:`MEMORY_MODELS` (``nam-tm`` = ``nam-tm-2022``, see the module doc).
        vocab_size: number of input token ids.
        num_classes: number of output classes per position.
        size: ``"quick"`` (CPU-sized) or ``"paper"`` (the paper's parameter budget).
        overrides: fields of :class:`LSAMSequenceConfig` (``lsam``) or
            :class:`NAMTMSequenceConfig` (``nam-tm*``), e.g. ``tape_length=32``.
    """
    if name not in MEMORY_MODELS:
        raise ValueError(f"name: expected one of {', '.join(MEMORY_MODELS)}, got {name!r}")
    if size not in ("quick", "paper"):
        raise ValueError(f"size: expected one of quick, paper, got {size!r}")
    for arg, value in (("vocab_size", vocab_size), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg}: expected an int >= 1, got {value!r}")
    name = resolve_name(name)
    family = "lsam" if name == "lsam" else "nam-tm"
    cls = LSAMSequenceConfig if family == "lsam" else NAMTMSequenceConfig
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"overrides: unknown field(s) {', '.join(unknown)} for {name!r}; valid: {', '.join(valid)}"
        )
    if family == "lsam":
        cfg = replace(cls(), **_SIZES[f"lsam/{size}"])
        return LSAMSequenceModel(vocab_size, num_classes, replace(cfg, **overrides))
    base = next(b for b in _NAMTM_BASES if name.startswith(b))
    cfg = replace(cls(), **_SIZES[f"{base}/{size}"], **_NAMTM_VARIANTS[name])
    return NAMTMSequenceModel(vocab_size, num_classes, replace(cfg, **overrides))


def model_config(model: nn.Module) -> dict[str, Any]:
    """The resolved hyper-parameters of a model built by :func:`build_memory_model`."""
    return asdict(model.config)
