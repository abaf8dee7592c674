"""The sequence models the length-generalisation experiment builds: names, sizes, shapes, padding."""

import pytest
import torch

from neural_attention_memory.models.nam_tm import NAMTuringMachine
from neural_attention_memory.models.sequence import (
    MEMORY_MODELS,
    build_memory_model,
    count_parameters,
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


def test_paper_sizes_match_the_paper_budget():
    # PAPER.md §5: LSAM 25.8M, NAM-TM 23.3M parameters.
    lsam = count_parameters(build_memory_model("lsam", VOCAB, CLASSES, "paper"))
    namtm = count_parameters(build_memory_model("nam-tm", VOCAB, CLASSES, "paper"))
    assert abs(lsam - 25.8e6) / 25.8e6 < 0.05
    assert abs(namtm - 23.3e6) / 23.3e6 < 0.05
    quick = count_parameters(build_memory_model("nam-tm", VOCAB, CLASSES, "quick"))
    assert quick < 2e6


def test_variants_configure_their_ablation():
    def layer(name):
        model = build_memory_model(name, VOCAB, CLASSES)
        assert len(model.layers) == 2
        return model.layers[0]

    full = layer("nam-tm")
    assert full.actions == ("noop", "left", "right", "jump") and full.rw_prob and full.erase
    assert layer("nam-tm-nojump").actions == ("noop", "left", "right")
    assert layer("nam-tm-onlyjump").actions == ("noop", "jump")
    assert not layer("nam-tm-norw").rw_prob
    assert not layer("nam-tm-noerase").erase


def test_overrides_and_bad_names():
    model = build_memory_model("nam-tm", VOCAB, CLASSES, tape_length=7, num_layers=1)
    assert len(model.layers) == 1 and model.tape_length_for(100) == 7
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
    with pytest.raises(ValueError, match="padding_mask: expected the shape of tokens"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))


def test_auto_tape_follows_the_sequence_length(monkeypatch):
    model = build_memory_model("nam-tm", VOCAB, CLASSES)
    seen = []
    original = NAMTuringMachine.forward

    def spy(self, x, tape=None, heads=None, padding_mask=None, tape_length=None):
        out, state = original(self, x, tape, heads, padding_mask, tape_length)
        seen.append(state[0].shape[-1])
        return out, state

    monkeypatch.setattr(NAMTuringMachine, "forward", spy)
    model(torch.randint(0, VOCAB, (2, 11)))
    assert seen == [12, 12]  # T + 1 cells, handed from layer 1 to layer 2


@pytest.mark.parametrize("name", ["lsam", "nam-tm"])
def test_padded_batch_equals_each_sequence_alone(name):
    model = build_memory_model(name, VOCAB, CLASSES).double()
    tokens = torch.randint(0, VOCAB, (3, 8))
    lengths = [8, 5, 2]
    pad = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    if name == "nam-tm":
        # Same tape for the batch and the lone sequences: "auto" would size it by each length.
        model = build_memory_model(name, VOCAB, CLASSES, tape_length=9).double()
    batch = model(tokens, pad)
    for b, n in enumerate(lengths):
        alone = model(tokens[b : b + 1, :n])
        torch.testing.assert_close(batch[b : b + 1, :n], alone, rtol=1e-10, atol=1e-10)


def test_namtm_fast_equals_reference_end_to_end():
    model = build_memory_model("nam-tm", VOCAB, CLASSES, dim=16, num_tapes=2, head_dim=4).double()
    tokens = torch.randint(0, VOCAB, (2, 6))
    fast = model(tokens)
    ref = model(tokens, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
