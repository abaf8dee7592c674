"""Hugging Face registration (runs only when the optional ``transformers`` is installed)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from neural_attention_memory.models.hf import (  # noqa: E402
    NAMHFConfig,
    NAMHFForCausalLM,
    register,
    to_nam,
)
from neural_attention_memory.models.lm import NAMConfig, NAMForCausalLM  # noqa: E402


def test_auto_classes_load_a_library_folder_with_identical_logits(tmp_path):
    register()
    torch.manual_seed(0)
    lib = NAMForCausalLM(NAMConfig(vocab_size=40, hidden_size=16, num_heads=2)).eval()
    lib.save_pretrained(tmp_path / "m")
    cfg = transformers.AutoConfig.from_pretrained(tmp_path / "m")
    assert isinstance(cfg, NAMHFConfig) and cfg.hidden_size == 16
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert isinstance(hf, NAMHFForCausalLM)
    ids = torch.randint(0, 40, (2, 7))
    out = hf(ids, labels=ids)
    torch.testing.assert_close(out.logits, lib(ids).logits)
    torch.testing.assert_close(out.loss, lib(ids, labels=ids).loss)
    # And back: a folder written through transformers loads in the library.
    hf.save_pretrained(tmp_path / "h")
    again = NAMForCausalLM.from_pretrained(tmp_path / "h")
    torch.testing.assert_close(again(ids).logits, lib(ids).logits)
    torch.testing.assert_close(to_nam(hf).eval()(ids).logits, lib(ids).logits)


def test_auto_model_from_config_and_greedy_generate_matches_library():
    register()
    cfg = transformers.AutoConfig.for_model("nam", vocab_size=20, hidden_size=8, num_heads=2)
    torch.manual_seed(1)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    lib = to_nam(hf).eval()
    prompt = torch.randint(0, 20, (1, 4))
    ours = lib.generate(prompt, max_new_tokens=5)
    theirs = hf.generate(
        prompt, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None
    )
    assert torch.equal(theirs, ours)
