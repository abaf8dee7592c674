"""A causal language model on the project's Transformer: :class:`NAMConfig` + :class:`NAMForCausalLM`.

HF-style names and behaviour (like fla's ``XConfig`` / ``XForCausalLM``): a dataclass config,
``forward(input_ids) -> output with .logits``, ``generate``, ``save_pretrained`` /
``from_pretrained`` (``config.json`` + ``model.safetensors``) and :meth:`NAMForCausalLM.from_run`
for the model of a finished ``nam train`` run. Hugging Face ``transformers`` is optional: see
:mod:`.hf`.

Decoding uses :meth:`NAMForCausalLM.step`: with NAM or linear attention the state is a fixed-size
memory per layer and head, so every new token costs the same memory and time however long the
context; softmax attention keeps a key/value cache that grows with the context.

Example::

    import neural_attention_memory as nam
    model = nam.NAMForCausalLM(nam.NAMConfig(vocab_size=256, hidden_size=64, num_layers=2))
    out = model.generate(torch.tensor([[104, 105]]), max_new_tokens=20)   # [1, 22]
    model.save_pretrained("my-lm"); again = nam.NAMForCausalLM.from_pretrained("my-lm")
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._common import check_padding_mask
from .transformer import ATTENTIONS, TransformerConfig, TransformerEncoder, TransformerState

__all__ = ["CausalLMOutput", "NAMConfig", "NAMForCausalLM"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
IGNORE_INDEX = -100


@dataclass
class NAMConfig:
    """Hyper-parameters of :class:`NAMForCausalLM` (a pre-LN causal Transformer LM).

    Attributes:
        vocab_size: number of token ids ``V`` (256 for bytes).
        hidden_size: residual width ``D``.
        num_layers: number of blocks.
        num_heads: attention heads ``H`` (a divisor of ``hidden_size``).
        intermediate_size: MLP hidden width (None = ``4 * hidden_size``).
        attention: ``"nam"`` (write / erase / read gates), ``"nam-tied"`` (erase tied to write:
            the delta rule), ``"linear"`` or ``"softmax"``.
        gates: gates of the NAM kinds, a subset of ``("write", "erase", "read")`` (ignored by
            linear and softmax attention; ``"nam-tied"`` always writes and erases with one gate).
        chunk_size: chunk length of the chunk-parallel NAM / linear kernels.
        positional: ``"none"`` (order comes from causal attention itself; any length),
            ``"sinusoidal"`` (any length) or ``"learned"`` (up to ``max_position``).
        max_position: size of the learned position table.
        dropout: dropout on the embedding and residual branches.
        activation: ``"gelu"`` or ``"relu"``.
        tie_word_embeddings: the output projection shares the embedding matrix.
        pad_token_id: id whose embedding is zero (or None).
    """

    vocab_size: int = 256
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None
    attention: str = "nam"
    gates: tuple[str, ...] = ("write", "erase", "read")
    chunk_size: int = 64
    positional: str = "none"
    max_position: int = 2048
    dropout: float = 0.0
    activation: str = "gelu"
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    model_type: str = field(default="nam", init=False)

    def __post_init__(self) -> None:
        if isinstance(self.gates, str):
            self.gates = (self.gates,)
        self.gates = tuple(self.gates)
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(
                f"tie_word_embeddings: expected a bool, got {self.tie_word_embeddings!r}"
            )
        self.transformer_config()  # validates every other field with one set of messages

    def transformer_config(self) -> TransformerConfig:
        """The :class:`TransformerConfig` of the backbone."""
        return TransformerConfig(
            d_model=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_ff=self.intermediate_size or 4 * self.hidden_size,
            attention=self.attention,
            vocab_size=self.vocab_size,
            max_len=self.max_position,
            positional=self.positional,
            dropout=self.dropout,
            activation=self.activation,
            padding_idx=self.pad_token_id,
            causal=True,
            gates=self.gates if self.attention.startswith("nam") else (),
            chunk_size=self.chunk_size,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gates"] = list(self.gates)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NAMConfig:
        """Build from a mapping; ``model_type`` must be ``"nam"`` if present, unknown keys fail."""
        d = dict(d)
        model_type = d.pop("model_type", "nam")
        if model_type != "nam":
            raise ValueError(f"model_type: expected 'nam', got {model_type!r}")
        names = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown}; valid: {sorted(names)}")
        return cls(**d)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` into ``save_directory`` (created); return its path."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        out = path / CONFIG_NAME
        out.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> NAMConfig:
        """Read ``config.json`` from a folder (or the file itself)."""
        p = Path(path)
        p = p / CONFIG_NAME if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"path: expected a folder holding {CONFIG_NAME}, got {path}")
        d = json.loads(p.read_text())
        if "transformers_version" in d:  # written by transformers: drop its bookkeeping keys
            names = {f.name for f in fields(cls)}
            d = {k: v for k, v in d.items() if k in names}
        return cls.from_dict(d)


class CausalLMOutput(NamedTuple):
    """What :meth:`NAMForCausalLM.forward` returns.

    Attributes:
        logits: `[B, T, V]` next-token logits.
        state: the :class:`~.transformer.TransformerState` after the last token (feed it back to
            continue the sequence).
        loss: mean next-token cross-entropy in nats when ``labels`` were given, else None.
    """

    logits: Tensor
    state: TransformerState
    loss: Tensor | None = None


def _check_ids(ids: object, name: str, rank: int, vocab: int) -> Tensor:
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32, torch.uint8):
        got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
        raise TypeError(f"{name}: expected an integer tensor of token ids, got {got}")
    if ids.dim() != rank:
        want = "[B, T]" if rank == 2 else "[B]"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(ids.shape)}")
    if rank == 2 and ids.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty sequence (T >= 1), got T = 0")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{name}: expected ids in [0, {vocab}), got values in [{lo}, {hi}]")
    return ids.long()


class NAMForCausalLM(nn.Module):
    """Causal language model: token embedding, causal Transformer blocks, tied output projection.

    ``forward(input_ids [B, T], state=None, padding_mask=None, labels=None)`` returns a
    :class:`CausalLMOutput` (``.logits`` `[B, T, V]`, ``.state``, ``.loss``); its first item is the
    logits. ``step(ids [B], state) -> (logits [B, V], state)`` decodes one token;
    ``generate(...)`` decodes many.
    """

    def __init__(self, config: NAMConfig) -> None:
        super().__init__()
        if not isinstance(config, NAMConfig):
            raise TypeError(f"config: expected a NAMConfig, got {type(config).__name__}")
        self.config = config
        self.model = TransformerEncoder(config.transformer_config())
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed.weight

    # ------------------------------------------------------------------ protocol
    def init_state(self, batch: int, device=None, dtype=None) -> TransformerState:
        """Empty per-layer attention states, position 0."""
        return self.model.init_state(batch, device, dtype)

    def forward(
        self,
        input_ids: Tensor,
        state: TransformerState | None = None,
        padding_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> CausalLMOutput:
        """Logits for every position of ``input_ids`` `[B, T]`.

        Args:
            state: the state after earlier tokens (None = start of the text).
            padding_mask: `[B, T]` bool, True = padding (changes no state, logits from a zero
                hidden vector, excluded from the loss).
            labels: `[B, T]` target ids, aligned with ``input_ids`` (shifted inside, as in
                Hugging Face); ``-100`` = ignore.
        """
        input_ids = _check_ids(input_ids, "input_ids", 2, self.config.vocab_size)
        padding_mask = check_padding_mask(padding_mask, *input_ids.shape)
        h, state = self.model(input_ids, state, padding_mask)
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.shape != input_ids.shape:
                got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
                raise ValueError(
                    f"labels: expected a tensor of shape {tuple(input_ids.shape)}, got {got}"
                )
            target = labels[:, 1:].long()
            if padding_mask is not None:
                target = target.masked_fill(padding_mask[:, 1:], IGNORE_INDEX)
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                target.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return CausalLMOutput(logits, state, loss)

    def step(
        self, input_ids: Tensor, state: TransformerState | None = None
    ) -> tuple[Tensor, TransformerState]:
        """One token per sequence: ``input_ids`` `[B]` -> ``(logits [B, V], new state)``."""
        input_ids = _check_ids(input_ids, "input_ids", 1, self.config.vocab_size)
        h, state = self.model.step(input_ids, state)
        return self.lm_head(h), state

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``input_ids`` `[B, T]` by ``max_new_tokens`` tokens -> `[B, T + new]`.

        The prompt is read in one chunk-parallel ``forward``; every new token is one ``step``.
        Greedy (``do_sample=False``) picks the argmax, which equals the argmax of a full forward
        over each prefix. Sampling draws from ``softmax(logits / temperature)`` restricted to the
        ``top_k`` most likely tokens (all when None), from ``generator`` when given.
        """
        input_ids = _check_ids(input_ids, "input_ids", 2, self.config.vocab_size)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TypeError(f"max_new_tokens: expected an int, got {max_new_tokens!r}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens}")
        if do_sample and not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"top_k: expected None or a positive int, got {top_k!r}")
        if max_new_tokens == 0:
            return input_ids.clone()
        out = self(input_ids)
        logits, state = out.logits[:, -1], out.state
        new = []
        for i in range(max_new_tokens):
            nxt = self._pick(logits, do_sample, temperature, top_k, generator)
            new.append(nxt)
            if i + 1 < max_new_tokens:
                logits, state = self.step(nxt, state)
        return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)

    @staticmethod
    def _pick(
        logits: Tensor,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        if not do_sample:
            return logits.argmax(dim=-1)
        logits = logits.float() / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``save_directory``."""
        from safetensors.torch import save_model

        path = Path(save_directory)
        self.config.save_pretrained(path)
        save_model(self, str(path / WEIGHTS_NAME))
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> NAMForCausalLM:
        """Load a folder written by :meth:`save_pretrained` (same outputs as before saving), or
        the model of a finished ``nam train`` run folder (see :meth:`from_run`)."""
        from safetensors.torch import load_model

        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"path: expected a folder, got {path}")
        if not (p / WEIGHTS_NAME).is_file() and (p / "config.yaml").is_file():
            return cls.from_run(p, map_location=map_location)
        if not (p / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"path: expected {CONFIG_NAME} and {WEIGHTS_NAME} (or a nam train run folder) "
                f"in {p}"
            )
        model = cls(NAMConfig.from_pretrained(p))
        load_model(model, str(p / WEIGHTS_NAME), device=str(map_location))
        return model.eval()

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        checkpoint: str = "best",
        map_location: str | torch.device = "cpu",
    ) -> NAMForCausalLM:
        """The model of a ``nam train lm-pysource`` run: config from ``config.yaml``, weights from
        ``checkpoints/<checkpoint>.ckpt`` (``"best"`` or ``"last"``), in eval mode."""
        import yaml

        run = Path(run_dir)
        cfg_file, ckpt = run / "config.yaml", run / "checkpoints" / f"{checkpoint}.ckpt"
        if not cfg_file.is_file() or not ckpt.is_file():
            raise FileNotFoundError(
                f"run_dir: expected config.yaml and checkpoints/{checkpoint}.ckpt in {run}"
            )
        config = yaml.safe_load(cfg_file.read_text())
        mcfg = dict(config.get("model") or {})
        if mcfg.get("name") not in ATTENTIONS:
            raise ValueError(
                f"run_dir: {run} is not a language-model run (model.name {mcfg.get('name')!r} is "
                f"not one of {ATTENTIONS})"
            )
        # The run's model section is the NAMConfig with the attention kind as its name.
        mcfg["attention"] = mcfg.pop("name")
        model = cls(NAMConfig.from_dict(mcfg))
        blob = torch.load(ckpt, map_location=map_location, weights_only=False)
        prefix = "model."  # Lightning saves the wrapped module's weights under this prefix
        weights = {
            k[len(prefix) :]: v for k, v in blob["state_dict"].items() if k.startswith(prefix)
        }
        model.load_state_dict(weights)
        return model.eval()

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())
