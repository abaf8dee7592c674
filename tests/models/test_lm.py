"""NAMForCausalLM: logits, greedy == argmax of full forward on every prefix, step == forward,
constant-size decoding state, save/load round trip, errors."""

import json

import pytest
import torch

import neural_attention_memory as nam
from neural_attention_memory.models.lm import CausalLMOutput, NAMConfig, NAMForCausalLM

KINDS = ("nam", "nam-tied", "linear", "softmax")


def _model(attention="nam", **kw) -> NAMForCausalLM:
    torch.manual_seed(0)
    cfg = NAMConfig(
        vocab_size=31, hidden_size=16, num_layers=2, num_heads=2, attention=attention,
        chunk_size=4, **kw,
    )  # fmt: skip
    return NAMForCausalLM(cfg).double().eval()


def test_top_level_exports():
    assert nam.NAMConfig is NAMConfig and nam.NAMForCausalLM is NAMForCausalLM
    assert {"NAMConfig", "NAMForCausalLM", "NAMAttention"} <= set(nam.__all__)


@pytest.mark.parametrize("attention", KINDS)
def test_forward_shapes_loss_and_step_equals_forward(attention):
    m = _model(attention)
    ids = torch.randint(0, 31, (2, 10))
    out = m(ids, labels=ids)
    assert isinstance(out, CausalLMOutput) and out[0] is out.logits
    assert out.logits.shape == (2, 10, 31)
    ref = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 31), ids[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(out.loss, ref)
    s, rows = None, []
    for t in range(10):
        logits, s = m.step(ids[:, t], s)
        rows.append(logits)
    torch.testing.assert_close(torch.stack(rows, 1), out.logits)


@pytest.mark.parametrize("attention", KINDS)
def test_greedy_generation_equals_argmax_of_full_forward_on_every_prefix(attention):
    m = _model(attention)
    prompt = torch.randint(0, 31, (3, 5))
    seq = m.generate(prompt, max_new_tokens=12)
    assert seq.shape == (3, 17) and torch.equal(seq[:, :5], prompt)
    for t in range(5, 17):
        full = m(seq[:, :t]).logits[:, -1]
        assert torch.equal(full.argmax(-1), seq[:, t])


def test_decoding_state_has_constant_size_for_nam_and_linear():
    for attention in ("nam", "linear"):
        m = _model(attention)
        s = m(torch.randint(0, 31, (1, 3))).state
        sizes = {sum(t.numel() for t in _leaves(s))}
        for _ in range(20):
            _, s = m.step(torch.tensor([1]), s)
            sizes.add(sum(t.numel() for t in _leaves(s)))
        assert len(sizes) == 1, sizes


def _leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for part in state for t in _leaves(part)]


def test_sampling_is_seeded_and_top_k_restricts():
    m = _model()
    prompt = torch.randint(0, 31, (2, 4))
    a = m.generate(prompt, 8, do_sample=True, top_k=3, generator=torch.Generator().manual_seed(1))
    b = m.generate(prompt, 8, do_sample=True, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    one = m.generate(prompt, 6, do_sample=True, top_k=1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(one, m.generate(prompt, 6))  # top-1 sampling is greedy


@pytest.mark.parametrize("attention", KINDS)
def test_save_pretrained_from_pretrained_identical_outputs(tmp_path, attention):
    m = _model(attention, positional="learned", max_position=64)
    m.save_pretrained(tmp_path / "lm")
    cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert cfg["model_type"] == "nam" and cfg["attention"] == attention
    again = NAMForCausalLM.from_pretrained(tmp_path / "lm").double()
    assert again.config == m.config
    assert again.lm_head.weight is again.model.embed.weight  # still tied
    ids = torch.randint(0, 31, (2, 9))
    assert torch.equal(again(ids).logits, m(ids).logits)


def test_padding_is_excluded_and_changes_no_state():
    m = _model()
    ids = torch.randint(1, 31, (2, 8))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[1, 5:] = True
    out = m(ids, padding_mask=mask, labels=ids)
    alone = m(ids[1:, :5])
    torch.testing.assert_close(out.logits[1:, :5], alone.logits)
    nxt = torch.randint(0, 31, (2, 3))
    torch.testing.assert_close(m(nxt, out.state).logits[1:], m(nxt[1:], alone.state).logits)


def test_errors():
    m = _model()
    with pytest.raises(TypeError, match="input_ids: expected an integer tensor"):
        m(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"input_ids: expected ids in \[0, 31\)"):
        m(torch.tensor([[0, 31]]))
    with pytest.raises(ValueError, match="max_new_tokens: expected an int >= 0"):
        m.generate(torch.tensor([[1]]), -1)
    with pytest.raises(ValueError, match="top_k: expected None or a positive int"):
        m.generate(torch.tensor([[1]]), 2, do_sample=True, top_k=0)
    with pytest.raises(ValueError, match="attention: expected one of"):
        NAMConfig(attention="rnn")
    with pytest.raises(ValueError, match=r"config: unknown key\(s\) \['hidden'\]"):
        NAMConfig.from_dict({"hidden": 3})
    with pytest.raises(FileNotFoundError, match="path: expected a folder"):
        NAMForCausalLM.from_pretrained("/nonexistent/lm")
