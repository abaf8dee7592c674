"""Baselines of the length-generalisation experiment: shapes, padding, training steps, DNC/Stack-RNN
mechanics and the factory."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from neural_attention_memory.models.baselines import (
    BASELINES,
    DNC,
    PAPER_PARAMS,
    DNCConfig,
    StackRNN,
    StackRNNConfig,
    all_model_names,
    build_tagger,
    count_parameters,
)
from neural_attention_memory.models.baselines.dnc import allocation_weighting

V, C = 20, 20
TINY = {
    "transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32},
    "ut": {"d_model": 16, "num_steps": 2, "num_heads": 2, "d_ff": 32},
    "lstm": {"d_embed": 8, "hidden": 16, "num_heads": 2},
    "dnc": {"d_embed": 8, "hidden": 16, "word_size": 8, "num_reads": 2},
    "stack-rnn": {"d_embed": 8, "hidden": 16, "num_stacks": 2, "stack_dim": 2},
    "lsam": {"hidden_size": 16, "num_heads": 2},
    "nam-tm": {"dim": 16, "num_tapes": 2, "head_dim": 8},
    "nam-tm-nojump": {"dim": 16, "num_tapes": 2, "head_dim": 8},
}


def tiny(name: str) -> torch.nn.Module:
    return build_tagger(name, V, C, "quick", **TINY[name])


def batch(B: int = 3, T: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, V, (B, T), generator=g)
    lengths = torch.tensor([T, T - 2, T - 4])[:B]
    mask = torch.arange(T)[None] >= lengths[:, None]
    tokens = tokens.masked_fill(mask, 0)
    targets = torch.randint(0, C, (B, T), generator=g).masked_fill(mask, -100)
    return tokens, mask, targets


MODELS = [n for n in TINY if n in all_model_names()]


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_and_shapes(name: str) -> None:
    model = tiny(name)
    tokens, mask, targets = batch()
    logits = model(tokens, mask)
    assert logits.shape == (3, 7, C)
    loss = F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1), ignore_index=-100)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("name", [n for n in BASELINES])
def test_a_few_steps_fit_a_fixed_batch(name: str) -> None:
    model = tiny(name)
    tokens, mask, targets = batch(B=3, T=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        logits = model(tokens, mask)
        loss = F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", [n for n in BASELINES])
def test_padding_does_not_change_real_positions(name: str) -> None:
    model = tiny(name).eval()
    tokens, mask, _ = batch()
    with torch.no_grad():
        together = model(tokens, mask)
        for b in range(3):
            n = int((~mask[b]).sum())
            alone = model(tokens[b : b + 1, :n], None)
            torch.testing.assert_close(together[b, :n], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["dnc", "stack-rnn", "ut"])
def test_runs_longer_than_anything_seen(name: str) -> None:
    model = tiny(name).eval()
    tokens = torch.randint(1, V, (2, 600))
    with torch.no_grad():
        out = model(tokens)
    assert out.shape == (2, 600, C) and torch.isfinite(out).all()


def test_allocation_weighting_matches_the_formula() -> None:
    torch.manual_seed(1)
    usage = torch.rand(4, 9).clamp_min(1e-6)
    got = allocation_weighting(usage)
    for b in range(4):
        order = sorted(range(9), key=lambda i: float(usage[b, i]))
        for j, slot in enumerate(order):
            prod = 1.0
            for i in order[:j]:
                prod *= float(usage[b, i])
            assert abs(float(got[b, slot]) - (1 - float(usage[b, slot])) * prod) < 1e-6
    assert (got.sum(-1) <= 1 + 1e-6).all()
    free = torch.tensor([[0.9, 1e-6, 0.5]])
    assert int(allocation_weighting(free).argmax()) == 1  # the unused slot is allocated


def test_dnc_writes_to_fresh_slots_and_links_them() -> None:
    torch.manual_seed(0)
    model = DNC(DNCConfig(V, C, d_embed=8, hidden=16, memory_size=6, word_size=4, num_reads=1))
    # Force full allocation-based writes: write gate and allocation gate on, nothing freed.
    with torch.no_grad():
        model.core.interface.weight.zero_()
        b = model.core.interface.bias
        b.zero_()
        R, W = 1, 4
        off = R * W + R + W + 1 + W + W  # start of free gates
        b[off : off + R] = -20.0  # free gates off
        b[off + R] = 20.0  # allocation gate on
        b[off + R + 1] = 20.0  # write gate on
    state = model.init_state(1)
    slots = []
    for t in range(4):
        with torch.no_grad():
            _, state = model.step(torch.tensor([t + 1]), state)
        slots.append(int(state.write_weights.argmax()))
        assert float(state.write_weights.max()) > 0.95
    assert len(set(slots)) == 4  # each write goes to a new slot
    for a, b in itertools.pairwise(slots):
        assert float(state.link[0, b, a]) > 0.9  # L[i, j]: i written right after j


@pytest.mark.parametrize("name", ["dnc"])
def test_dnc_trains_without_nans_short(name: str) -> None:
    model = tiny(name)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        tokens = torch.randint(1, V, (4, 24), generator=g)
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, C), tokens.flip(1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_dnc_trains_without_nans_long() -> None:
    model = build_tagger("dnc", V, C, "quick")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        T = 4 + step % 40
        tokens = torch.randint(1, V, (8, T), generator=g)
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, C), tokens.flip(1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        grads_ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        assert torch.isfinite(loss) and grads_ok, step
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def test_stack_rnn_push_and_pop() -> None:
    model = StackRNN(StackRNNConfig(V, C, d_embed=4, hidden=8, num_stacks=1, stack_dim=1))
    push_bias = torch.tensor([30.0, -30.0, -30.0])
    pop_bias = torch.tensor([-30.0, 30.0, -30.0])
    with torch.no_grad():
        model.core.A.weight.zero_()
    x = torch.zeros(1, 4)
    state = model.init_state(1, stack_depth=5)
    tops = []
    with torch.no_grad():
        model.core.A.bias.copy_(push_bias)
        for _ in range(3):
            _, state = model.step_embedded(x, state)
            tops.append(float(state[1][0, 0, 0, 0]))
        pushed = state[1][0, 0, :, 0].clone()
        assert torch.allclose(pushed[3:], torch.tensor([-1.0, -1.0]))  # empty below three pushes
        assert (pushed[:3] > 0).all() and (pushed[:3] < 1).all()
        model.core.A.bias.copy_(pop_bias)
        _, state = model.step_embedded(x, state)
        torch.testing.assert_close(state[1][0, 0, :4, 0], torch.cat([pushed[1:4], pushed[4:5]]))


def test_universal_transformer_shares_one_block() -> None:
    a = build_tagger("ut", V, C, "quick", **{**TINY["ut"], "num_steps": 2})
    b = build_tagger("ut", V, C, "quick", **{**TINY["ut"], "num_steps": 6})
    assert count_parameters(a) == count_parameters(b)


def test_factory_errors_list_choices() -> None:
    with pytest.raises(ValueError, match="valid choices: transformer, ut, lstm, dnc, stack-rnn"):
        build_tagger("gpt", V, C)
    with pytest.raises(ValueError, match="size"):
        build_tagger("lstm", V, C, "huge")
    with pytest.raises(ValueError, match="unknown field"):
        build_tagger("lstm", V, C, "quick", depth=3)
    model = tiny("lstm")
    with pytest.raises(TypeError, match="tokens: expected an int64/int32 tensor"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, "):
        model(torch.full((2, 3), V))
    with pytest.raises(ValueError, match="tokens: expected a non-empty"):
        model(torch.ones(2, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="padding_mask"):
        model(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="padding_mask"):
        model(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))


def test_quick_sizes_are_small() -> None:
    for name in all_model_names():
        assert count_parameters(build_tagger(name, 41, 41, "quick")) < 1_000_000, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(PAPER_PARAMS) & set(BASELINES)))
def test_paper_sizes_match_the_paper(name: str) -> None:
    n = count_parameters(build_tagger(name, 41, 41, "paper")) / 1e6
    assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.1, n


def test_one_token_validator_for_every_tagger() -> None:
    from neural_attention_memory.models import _checks, sequence
    from neural_attention_memory.models.baselines import _common

    assert _common.check_tokens is _checks.check_tokens is sequence.check_tokens


def test_transformer_tagger_embed_std_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    small = build_tagger("transformer", 41, 41, **TINY["transformer"])
    big = build_tagger("transformer", 41, 41, embed_std=1.0, **TINY["transformer"])
    s_small = small.encoder.embed.weight[1:].std().item()
    s_big = big.encoder.embed.weight[1:].std().item()
    assert 0.01 < s_small < 0.04 and 0.7 < s_big < 1.3
    with pytest.raises(ValueError, match="embed_std"):
        build_tagger("transformer", 41, 41, embed_std=0.0, **TINY["transformer"])
