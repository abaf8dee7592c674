"""Tests of the swappable-attention Transformer encoder and its classifier heads."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_attention_memory.functional import unit_norm
from neural_attention_memory.models.transformer import (
    ATTENTIONS,
    DualEncoderClassifier,
    SequenceClassifier,
    TransformerConfig,
    TransformerEncoder,
    linear_attention,
    softmax_attention,
)
from neural_attention_memory.models.transformer import _nam_attention as nam_kernel

# (attention, causal): every kind in both forms where it exists ("nam-tied" is causal only).
KINDS = [(a, False) for a in ATTENTIONS if a != "nam-tied"] + [(a, True) for a in ATTENTIONS]
NON_CAUSAL = [a for a in ATTENTIONS if a != "nam-tied"]


def _cfg(attention: str, **kw) -> TransformerConfig:
    base = dict(
        d_model=16,
        num_layers=2,
        num_heads=2,
        d_ff=32,
        attention=attention,
        vocab_size=11,
        max_len=40,
        dropout=0.0,
    )
    base.update(kw)
    return TransformerConfig(**base)


def _qkv(B=2, T=7, H=2, d=4, dtype=torch.float64):
    return (torch.randn(B, T, H, d, dtype=dtype) for _ in range(3))


def test_nam_kernel_matches_definition() -> None:
    # out_j = sum_s cos(q_j, k_s) v_s  (docs/paper.md §2), written as explicit loops.
    q, k, v = _qkv()
    out = nam_kernel(q, k, v, None)
    qn, kn = unit_norm(q), unit_norm(k)
    ref = torch.zeros_like(v)
    for b in range(2):
        for h in range(2):
            for j in range(7):
                for s in range(7):
                    ref[b, j, h] += (qn[b, j, h] @ kn[b, s, h]) * v[b, s, h]
    torch.testing.assert_close(out, ref)


def test_linear_kernel_matches_definition() -> None:
    q, k, v = _qkv()
    out = linear_attention(q, k, v, eps=0.0)
    pq, pk = F.elu(q) + 1, F.elu(k) + 1
    scores = torch.einsum("bthd,bshd->bhts", pq, pk)
    ref = torch.einsum("bhts,bshv->bthv", scores / scores.sum(-1, keepdim=True), v)
    torch.testing.assert_close(out, ref)


def test_softmax_kernel_matches_definition() -> None:
    q, k, v = _qkv()
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True
    out = softmax_attention(q, k, v, mask)
    s = torch.einsum("bthd,bshd->bhts", q, k) / 2.0  # sqrt(d = 4)
    s = s.masked_fill(mask[:, None, None, :], float("-inf"))
    ref = torch.einsum("bhts,bshv->bthv", s.softmax(-1), v).masked_fill(mask[:, :, None, None], 0)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("kernel", [nam_kernel, softmax_attention, linear_attention])
def test_kernels_ignore_padding(kernel) -> None:
    q, k, v = _qkv(B=1, T=5)
    pad = 3
    mask = torch.zeros(1, 5 + pad, dtype=torch.bool)
    mask[0, 5:] = True
    junk = [torch.randn(1, pad, 2, 4, dtype=torch.float64) * 100 for _ in range(3)]
    qp, kp, vp = (torch.cat([a, j], 1) for a, j in zip((q, k, v), junk, strict=True))
    full = kernel(qp, kp, vp, mask)
    torch.testing.assert_close(full[:, :5], kernel(q, k, v, None))
    assert torch.all(full[:, 5:] == 0)


@pytest.mark.parametrize(("attention", "causal"), KINDS)
@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_encoder_outputs_unchanged_by_extra_padding(
    attention: str, causal: bool, positional: str
) -> None:
    enc = TransformerEncoder(_cfg(attention, positional=positional, causal=causal)).eval()
    lengths = [6, 9]
    T = max(lengths)
    tokens = torch.randint(1, 11, (2, T))
    alone = [enc(tokens[i : i + 1, :n])[0] for i, n in enumerate(lengths)]
    for extra in (0, 13):
        padded = torch.zeros(2, T + extra, dtype=torch.long)
        mask = torch.ones(2, T + extra, dtype=torch.bool)
        for i, n in enumerate(lengths):
            padded[i, :n] = tokens[i, :n]
            mask[i, :n] = False
        out, _ = enc(padded, padding_mask=mask)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(out[i, :n], alone[i][0], atol=1e-5, rtol=1e-5)
        assert torch.all(out[mask] == 0)


@pytest.mark.parametrize("attention", NON_CAUSAL)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_logits_unchanged_by_padding_and_trains(attention: str, pooling: str) -> None:
    model = SequenceClassifier(_cfg(attention), num_classes=3, pooling=pooling).eval()
    tokens = torch.randint(1, 11, (1, 8))
    padded = torch.cat([tokens, torch.zeros(1, 5, dtype=torch.long)], 1)
    mask = padded == 0
    torch.testing.assert_close(model(padded, mask), model(tokens), atol=1e-5, rtol=1e-5)
    # A few optimisation steps on a tiny batch lower the loss of that batch.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(1, 11, (4, 10))
    y = torch.tensor([0, 1, 2, 1])
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("attention", NON_CAUSAL)
def test_dual_encoder_shapes_and_symmetric_features(attention: str) -> None:
    model = DualEncoderClassifier(_cfg(attention), num_classes=2).eval()
    a, b = torch.randint(1, 11, (3, 9)), torch.randint(1, 11, (3, 12))
    ma, mb = torch.zeros_like(a, dtype=torch.bool), torch.zeros_like(b, dtype=torch.bool)
    out = model(a, ma, b, mb)
    assert out.shape == (3, 2)
    # The tower is shared: encoding a document does not depend on which side it is on.
    torch.testing.assert_close(model.tower.encode(a, ma), model.tower.encode(a, None))
    out.sum().backward()


def test_embedded_input_and_validation() -> None:
    enc = TransformerEncoder(_cfg("nam", vocab_size=None))
    out, state = enc(torch.randn(2, 5, 16))
    assert out.shape == (2, 5, 16) and state is None
    with pytest.raises(ValueError, match="vocab_size"):
        enc(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected"):
        enc(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.randn(1, 41, 16))
    with pytest.raises(TypeError, match="padding_mask"):
        enc(torch.randn(2, 5, 16), padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="padding_mask"):
        enc(torch.randn(2, 5, 16), padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(NotImplementedError, match="causal=False"):
        enc.step(torch.randn(2, 16))
    with pytest.raises(ValueError, match="'nam-tied' .* needs causal=True"):
        TransformerConfig(attention="nam-tied")
    with pytest.raises(ValueError, match="gates: only NAM attention has gates"):
        TransformerConfig(attention="linear", gates=("write",))
    with pytest.raises(ValueError, match="attention"):
        TransformerConfig(attention="performer")
    with pytest.raises(ValueError, match="num_heads"):
        TransformerConfig(d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(_cfg("nam"), 2, pooling="max")
    cfg = TransformerConfig.from_dict({"name": "nam-transformer", "d_model": 8, "num_heads": 2})
    assert cfg.d_model == 8 and TransformerConfig(**cfg.to_dict()) == cfg


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    extra=st.integers(0, 7),
    heads=st.sampled_from([1, 2, 4]),
)
def test_padding_invariance_property(kind, lengths, extra, heads) -> None:
    torch.manual_seed(len(lengths) * 31 + extra)
    attention, causal = kind
    enc = TransformerEncoder(_cfg(attention, num_heads=heads, num_layers=1, causal=causal)).eval()
    T = max(lengths) + extra
    tokens = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.ones(len(lengths), T, dtype=torch.bool)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(1, 11, (n,))
        mask[i, :n] = False
    out, _ = enc(tokens, padding_mask=mask)
    for i, n in enumerate(lengths):
        alone, _ = enc(tokens[i : i + 1, :n])
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("positional", ["none", "learned", "sinusoidal"])
def test_causal_encoder_step_and_split_equal_one_pass(attention: str, positional: str) -> None:
    torch.manual_seed(0)
    gates = ("write", "read") if attention.startswith("nam") else ()
    cfg = _cfg(attention, causal=True, positional=positional, gates=gates)
    enc = TransformerEncoder(cfg).double().eval()
    tokens = torch.randint(1, 11, (2, 11))
    full, state = enc(tokens)
    # Causal: a prefix's outputs do not depend on what follows.
    torch.testing.assert_close(enc(tokens[:, :6])[0], full[:, :6])
    a, s = enc(tokens[:, :4])
    b, s = enc(tokens[:, 4:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    s, outs = None, []
    for t in range(11):
        o, s = enc.step(tokens[:, t], s)
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), full)
    assert torch.equal(s.position, state.position) and int(state.position[0]) == 11


def test_embed_std_sets_the_initial_scale_of_embeddings_positions_and_cls() -> None:
    # The default is the 0.02 the encoder always used: the same draws give the same weights.
    torch.manual_seed(0)
    ref = SequenceClassifier(_cfg("nam", vocab_size=50, max_len=400), 3)
    torch.manual_seed(0)
    same = SequenceClassifier(_cfg("nam", vocab_size=50, max_len=400, embed_std=0.02), 3)
    for a, b in zip(ref.parameters(), same.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(0)
    wide = SequenceClassifier(_cfg("nam", vocab_size=50, max_len=400, embed_std=1.0), 3)
    enc = wide.encoder
    assert enc.embed is not None and torch.count_nonzero(enc.embed.weight[0]) == 0  # padding row
    for tensor in (enc.embed.weight[1:], enc.pos):
        assert 0.9 < float(tensor.std()) < 1.1
    torch.testing.assert_close(wide.cls, ref.cls / 0.02)
    for bad in (0.0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="embed_std: expected a positive finite float"):
            TransformerConfig(embed_std=bad)
