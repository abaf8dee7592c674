"""Optional Hugging Face ``transformers`` registration of the NAM language model.

With the ``hf`` extra installed (``pip install 'neural-attention-memory[hf]'``)::

    from neural_attention_memory.models.hf import register
    register()                       # AutoConfig / AutoModelForCausalLM now know "nam"
    model = AutoModelForCausalLM.from_pretrained("folder written by NAMForCausalLM.save_pretrained")

:class:`NAMHFForCausalLM` has the same parameter names as :class:`~.lm.NAMForCausalLM`, so the two
read each other's folders (``config.json`` + ``model.safetensors``). Importing this module without
``transformers`` raises ``ModuleNotFoundError``; nothing else in the library imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutput as HFCausalLMOutput

from .lm import NAMConfig, NAMForCausalLM
from .transformer import TransformerEncoder

__all__ = ["NAMHFConfig", "NAMHFForCausalLM", "register"]

_NAM_FIELDS = [f for f in NAMConfig.__dataclass_fields__ if f != "model_type"]


class NAMHFConfig(PretrainedConfig):
    """:class:`~.lm.NAMConfig` as a ``transformers`` config (``model_type = "nam"``)."""

    model_type = "nam"
    attribute_map: ClassVar[dict[str, str]] = {
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
    }

    def __init__(self, **kwargs: Any) -> None:
        defaults = NAMConfig()
        own = {k: kwargs.pop(k, getattr(defaults, k)) for k in _NAM_FIELDS}
        own["gates"] = list(own["gates"])
        NAMConfig(**own)  # validate with the library's messages
        for k, v in own.items():
            setattr(self, k, v)
        kwargs.setdefault("tie_word_embeddings", own["tie_word_embeddings"])
        super().__init__(**kwargs)

    def to_nam_config(self) -> NAMConfig:
        return NAMConfig(**{k: getattr(self, k) for k in _NAM_FIELDS})


class NAMHFForCausalLM(PreTrainedModel, GenerationMixin):
    """``transformers`` wrapper: same modules and weights as :class:`~.lm.NAMForCausalLM`.

    ``forward(input_ids, labels=None, attention_mask=None)`` returns a ``transformers``
    ``CausalLMOutput`` (``.logits`` `[B, T, V]`, ``.loss``); ``attention_mask`` (1 = keep) is the
    complement of the library's ``padding_mask``. ``generate`` is Hugging Face's, recomputing the
    prefix every token; for constant-memory decoding use :class:`~.lm.NAMForCausalLM`.
    """

    config_class = NAMHFConfig
    base_model_prefix = "model"
    _tied_weights_keys: ClassVar[dict[str, str]] = {
        "lm_head.weight": "model.embed.weight"
    }  # transformers >= 5 form

    def __init__(self, config: NAMHFConfig) -> None:
        super().__init__(config)
        nam_config = config.to_nam_config()
        self.model = TransformerEncoder(nam_config.transformer_config())
        self.lm_head = nn.Linear(nam_config.hidden_size, nam_config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # the library's modules initialise themselves

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        attention_mask: Tensor | None = None,
        **kwargs: Any,
    ) -> HFCausalLMOutput:
        padding_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            padding_mask = attention_mask == 0
        out = NAMForCausalLM.forward(self, input_ids, None, padding_mask, labels)
        return HFCausalLMOutput(loss=out.loss, logits=out.logits)

    def prepare_inputs_for_generation(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return {"input_ids": input_ids, "attention_mask": attention_mask}


_registered = False


def register() -> None:
    """Register ``"nam"`` with ``AutoConfig`` and ``AutoModelForCausalLM`` (idempotent)."""
    global _registered
    if _registered:
        return
    AutoConfig.register("nam", NAMHFConfig, exist_ok=True)
    AutoModelForCausalLM.register(NAMHFConfig, NAMHFForCausalLM, exist_ok=True)
    _registered = True


def to_nam(model: NAMHFForCausalLM) -> NAMForCausalLM:
    """The same weights in a :class:`~.lm.NAMForCausalLM` (constant-memory ``generate``)."""
    out = NAMForCausalLM(model.config.to_nam_config())
    out.load_state_dict(model.state_dict())
    return out.to(next(model.parameters()).device)
