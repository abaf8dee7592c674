"""The sequence models the length-generalisation experiment builds: names, sizes, shapes, padding."""

import pytest
import torch

from neural_attention_memory.models.nam_tm import NAMTuringMachine
from neural_attention_memory.models.sequence import (
    MEMORY_MODELS,
    build_memory_model,
    count_parameters,
    resolve_name,
)

VOCAB, CLASSES = 14, 12


@pytest.mark.parametrize("name", MEMORY_MODELS)
def test_shapes_and_dtype(name):
    model = build_memory_model(name, VOCAB, CLASSES, "quick")
    tokens = torch.randint(0, VOCAB, (3, 9))
    logits = model(tokens)
    assert logits.shape == (3, 9, CLASSES)
    assert logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_paper_sizes():
    # docs/paper.md §5: LSAM 25.8M parameters. The NAM-TMs use the released sizes (width 1024, 8 tapes
    # x 128): 18.0M for the 2022 model (the paper reports 23.3M), 12.7M for the 2023 one.
    lsam = count_parameters(build_memory_model("lsam", VOCAB, CLASSES, "paper"))
    assert abs(lsam - 25.8e6) / 25.8e6 < 0.05
    for name in ("nam-tm", "nam-tm-2022", "nam-tm-2023"):
        model = build_memory_model(name, VOCAB, CLASSES, "paper")
        layer = model.layers[0]
        assert (layer.dim, layer.num_tapes, layer.head_dim) == (1024, 8, 128)
    assert 17e6 < count_parameters(build_memory_model("nam-tm", VOCAB, CLASSES, "paper")) < 19e6
    for name in ("nam-tm-2022", "nam-tm-2023"):
        assert count_parameters(build_memory_model(name, VOCAB, CLASSES, "quick")) < 1e6


def test_variants_configure_their_ablation():
    def layers(name):
        return build_memory_model(name, VOCAB, CLASSES).layers

    for base, n_layers, controller, tied, key_tape in (
        ("nam-tm-2022", 2, "bigru", True, "position"),
        ("nam-tm-2023", 1, "lstm", False, "key"),
    ):
        full = layers(base)
        assert len(full) == n_layers
        full = full[0]
        assert full.actions == ("noop", "left", "right", "jump") and full.rw_prob and full.erase
        assert (full.controller_kind, full.tied_erase, full.key_tape) == (
            controller,
            tied,
            key_tape,
        )
        assert layers(f"{base}-nojump")[0].actions == ("noop", "left", "right")
        assert layers(f"{base}-onlyjump")[0].actions == ("noop", "jump")
        assert not layers(f"{base}-norw")[0].rw_prob
        assert not layers(f"{base}-noerase")[0].erase
    mix = build_memory_model("nam-tm-mix", VOCAB, CLASSES)
    assert mix.stack.handoff == "all" and mix.layers[0].key_tape == "position"
    assert build_memory_model("nam-tm-2022", VOCAB, CLASSES).stack.handoff == "tape"


def test_plain_nam_tm_is_the_2022_model():
    for suffix in ("", "-nojump", "-onlyjump", "-norw", "-noerase"):
        assert resolve_name(f"nam-tm{suffix}") == f"nam-tm-2022{suffix}"
        torch.manual_seed(0)
        a = build_memory_model(f"nam-tm{suffix}", VOCAB, CLASSES)
        torch.manual_seed(0)
        b = build_memory_model(f"nam-tm-2022{suffix}", VOCAB, CLASSES)
        assert a.config == b.config
        for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert na == nb and torch.equal(pa, pb)


def test_overrides_and_bad_names():
    model = build_memory_model("nam-tm", VOCAB, CLASSES, tape_length=7, num_layers=1)
    assert len(model.layers) == 1 and model.tape_length_for(100) == 7
    model = build_memory_model("nam-tm-2023", VOCAB, CLASSES, controller="bigru")
    assert model.layers[0].controller_kind == "bigru"
    assert build_memory_model("lsam", VOCAB, CLASSES, bidirectional=True).lsam.bidirectional
    with pytest.raises(ValueError, match="name: expected one of lsam, nam-tm"):
        build_memory_model("dnc", VOCAB, CLASSES)
    with pytest.raises(ValueError, match="size: expected one of quick, paper"):
        build_memory_model("lsam", VOCAB, CLASSES, "huge")
    with pytest.raises(ValueError, match="unknown field.*tapes"):
        build_memory_model("nam-tm", VOCAB, CLASSES, tapes=3)
    with pytest.raises(ValueError, match="vocab_size"):
        build_memory_model("lsam", 0, CLASSES)


def test_bad_tokens():
    model = build_memory_model("lsam", VOCAB, CLASSES)
    with pytest.raises(TypeError, match="tokens: expected an int64"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 14\)"):
        model(torch.full((2, 3), 14))
    with pytest.raises(ValueError, match="tokens: expected a non-empty"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"padding_mask: expected shape \[B, T\]"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))


def test_auto_tape_follows_the_sequence_length(monkeypatch):
    model = build_memory_model("nam-tm", VOCAB, CLASSES)
    seen = []
    original = NAMTuringMachine.forward

    def spy(self, x, state=None, padding_mask=None, **kw):
        out, state = original(self, x, state, padding_mask, **kw)
        seen.append(state.tape.shape[-1])
        return out, state

    monkeypatch.setattr(NAMTuringMachine, "forward", spy)
    model(torch.randint(0, VOCAB, (2, 11)))
    assert seen == [12, 12]  # T + 1 cells, handed from layer 1 to layer 2


@pytest.mark.parametrize("name", ["lsam", "nam-tm-2022", "nam-tm-2023"])
def test_padded_batch_equals_each_sequence_alone(name):
    model = build_memory_model(name, VOCAB, CLASSES).double()
    tokens = torch.randint(0, VOCAB, (3, 8))
    lengths = [8, 5, 2]
    pad = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    if name.startswith("nam-tm"):
        # Same tape for the batch and the lone sequences: "auto" would size it by each length.
        model = build_memory_model(name, VOCAB, CLASSES, tape_length=9).double()
    batch = model(tokens, pad)
    for b, n in enumerate(lengths):
        alone = model(tokens[b : b + 1, :n])
        torch.testing.assert_close(batch[b : b + 1, :n], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", [n for n in MEMORY_MODELS if n.startswith("nam-tm")])
def test_namtm_fast_equals_reference_end_to_end(name):
    model = build_memory_model(name, VOCAB, CLASSES, dim=16, num_tapes=2, head_dim=4).double()
    tokens = torch.randint(0, VOCAB, (2, 6))
    pad = torch.tensor([[False] * 6, [True, False, False, False, True, True]])
    fast = model(tokens, pad)
    ref = model(tokens, pad, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


AUTHORS = {"embed": "proj", "head": "mlp", "layer_input": "source"}


def test_authors_task_model_wraps_the_stack():
    # The authors' task model: Embedding -> Linear -> Dropout -> LayerNorm, the NAM-TM(s), then
    # LayerNorm -> Dropout -> ReLU -> Linear; the plain model keeps one linear classifier.
    plain = build_memory_model("nam-tm", VOCAB, CLASSES)
    assert isinstance(plain.embed_proj, torch.nn.Identity)
    assert isinstance(plain.classifier, torch.nn.Linear)
    model = build_memory_model(
        "nam-tm", VOCAB, CLASSES, embed_dropout=0.2, head_dropout=0.1, **AUTHORS
    )
    kinds = [type(m).__name__ for m in model.embed_proj]
    assert kinds == ["Linear", "Dropout", "LayerNorm"] and model.embed_proj[1].p == 0.2
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["LayerNorm", "Dropout", "ReLU", "Linear"] and model.classifier[1].p == 0.1
    assert model.stack.layer_input == "source"
    # only layer 1's output projection is unused (its outputs are not read)
    tokens = torch.randint(0, VOCAB, (3, 9))
    model(tokens).sum().backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == {"stack.layers.0.out_proj.weight", "stack.layers.0.out_proj.bias"}


@pytest.mark.parametrize("name", ["nam-tm-2022", "nam-tm-2023", "nam-tm-2022-nojump"])
def test_authors_task_model_fast_equals_reference_outputs_and_gradients(name):
    kw = {"dim": 16, "num_tapes": 2, "head_dim": 4, "embed_dropout": 0.2, "head_dropout": 0.1}
    model = build_memory_model(name, VOCAB, CLASSES, **kw, **AUTHORS).double().eval()
    tokens = torch.randint(0, VOCAB, (2, 7))
    pad = torch.tensor([[False] * 7, [True, False, False, False, False, True, True]])
    fast = model(tokens, pad)
    grads = torch.autograd.grad(fast.square().sum(), list(model.parameters()), allow_unused=True)
    ref = model(tokens, pad, reference=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10)


def test_authors_task_model_padded_batch_equals_each_sequence_alone():
    model = build_memory_model("nam-tm", VOCAB, CLASSES, tape_length=9, **AUTHORS).double().eval()
    tokens = torch.randint(0, VOCAB, (3, 8))
    lengths = [8, 5, 2]
    pad = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    batch = model(tokens, pad)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(
            batch[b : b + 1, :n], model(tokens[b : b + 1, :n]), rtol=1e-10, atol=1e-10
        )


def test_authors_task_model_dropout_only_in_training():
    model = build_memory_model(
        "nam-tm", VOCAB, CLASSES, embed_dropout=0.5, head_dropout=0.5, **AUTHORS
    )
    tokens = torch.randint(0, VOCAB, (2, 6))
    model.eval()
    torch.testing.assert_close(model(tokens), model(tokens))
    model.train()
    torch.manual_seed(0)
    a = model(tokens)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(tokens))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("embed", "mlp", "embed: expected one of plain, proj, got 'mlp'"),
        ("head", "proj", "head: expected one of linear, mlp, got 'proj'"),
        ("embed_dropout", 1.0, r"embed_dropout: expected a float in \[0, 1\), got 1.0"),
        ("head_dropout", -0.1, r"head_dropout: expected a float in \[0, 1\), got -0.1"),
        ("layer_input", "outputs", "layer_input: expected one of previous, source"),
    ],
)
def test_authors_task_model_bad_options(field, value, message):
    with pytest.raises(ValueError, match=message):
        build_memory_model("nam-tm", VOCAB, CLASSES, **{field: value})
