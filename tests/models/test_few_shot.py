"""Few-shot heads: shapes, gradients, batched vs sequential writes, Theorem-2 memorisation."""

import pytest
import torch
import torch.nn.functional as F

from neural_attention_memory.functional import nam_read, nam_write, unit_norm
from neural_attention_memory.models.convnet import ConvNet, ConvNetConfig
from neural_attention_memory.models.few_shot import (
    ConstantGate,
    CosineClassifier,
    FewShotHeadConfig,
    NAMFewShotClassifier,
    build_head,
    one_shot_memorize,
)

D, NB, N, K = 16, 7, 3, 2


def _support(n=N, k=K, d=D):
    f = torch.randn(n * k, d)
    labels = torch.arange(n).repeat_interleave(k)
    return f, labels


def _orthogonal_support(n=N, k=K, d=D, dtype=torch.float64):
    # Mutually orthogonal keys (rows of a random orthogonal matrix, random positive lengths).
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=dtype))
    f = q[: n * k] * torch.rand(n * k, 1, dtype=dtype).add(0.5)
    return f, torch.arange(n).repeat_interleave(k)


@pytest.mark.parametrize(
    "head",
    [
        lambda: CosineClassifier(NB, D),
        lambda: CosineClassifier(NB, D, generator="att"),
        lambda: NAMFewShotClassifier(NB, D),
        lambda: NAMFewShotClassifier(NB, D, write_mode="sequential"),
        lambda: NAMFewShotClassifier(NB, D, gate="tied"),
    ],
)
def test_shapes_and_gradients(head):
    h = head()
    q = torch.randn(5, D)
    assert h(q).shape == (5, NB)  # no episode: base classes only
    f, labels = _support()
    f.requires_grad_(True)
    base_ids = torch.tensor([0, 2, 3, 6])
    h.process_support_set(f, labels, base_ids=base_ids)
    scores = h(q)
    assert scores.shape == (5, 4 + N)
    loss = F.cross_entropy(scores, torch.tensor([0, 1, 4, 5, 6]))
    loss.backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in h.named_parameters() if p.requires_grad}
    for name, g in grads.items():
        assert g is not None and torch.isfinite(g).all(), name
    # Only the episode's base rows receive gradient.
    assert h.weight_base.grad[[1, 4, 5]].abs().sum() == 0
    assert h.weight_base.grad[base_ids].abs().sum() > 0
    if isinstance(h, NAMFewShotClassifier):
        gates = (h.gate,) if h.gate_mode == "tied" else (h.gate_w, h.gate_e)
        for gate in gates:
            assert gate.net[2].weight.grad.abs().sum() > 0
    h.reset_episode()
    assert h(q).shape == (5, NB)


def test_cosine_scores_formula():
    h = CosineClassifier(NB, D, scale=5.0)
    with torch.no_grad():
        h.beta.fill_(0.25)
    f, labels = _support()
    h.process_support_set(f, labels)
    q = torch.randn(4, D)
    w_novel = torch.stack([unit_norm(f[labels == c]).mean(0) for c in range(N)])
    w = torch.cat([h.weight_base, w_novel])
    ref = 5.0 * (F.cosine_similarity(q.unsqueeze(1), w.unsqueeze(0), dim=-1) + 0.25)
    torch.testing.assert_close(h(q), ref)


def test_nam_without_episode_equals_cosine():
    cos, nam = CosineClassifier(NB, D), NAMFewShotClassifier(NB, D)
    nam.load_state_dict(cos.state_dict(), strict=False)
    q = torch.randn(6, D)
    torch.testing.assert_close(nam(q), cos(q))


def test_nam_read_matches_functional_nam_read():
    h = NAMFewShotClassifier(NB, D)
    f, labels = _support()
    M = h.process_support_set(f, labels)
    q = torch.randn(3, D)
    ref = torch.stack([nam_read(M, unit_norm(q[i])) for i in range(3)])
    torch.testing.assert_close(h.read(q), ref)


def test_nam_batched_formula():
    h = NAMFewShotClassifier(NB, D, value_scale="one").double()
    f, labels = _support()
    f = f.double()
    M = h.process_support_set(f, labels, write_mode="batched")
    k = unit_norm(f)
    p_w, p_e = h.gates(k)
    m_b = unit_norm(h.weight_base)
    for n in range(k.shape[0]):
        m_b = m_b - p_e[n] * torch.outer(unit_norm(h.weight_base) @ k[n], k[n])
    m_n = torch.zeros(N, D, dtype=torch.float64)
    for n in range(k.shape[0]):
        m_n[labels[n]] += p_w[n] * k[n]
    torch.testing.assert_close(M, torch.cat([m_b, m_n]))


@pytest.mark.parametrize("value_scale", ["mean", "one"])
def test_batched_equals_sequential_when_writes_commute(value_scale):
    h = NAMFewShotClassifier(NB, D, value_scale=value_scale, p_e_init=0.7).double()
    # Make the gates depend on the key so the test is not about constants.
    with torch.no_grad():
        for gate in (h.gate_w, h.gate_e):
            gate.net[2].weight.normal_()
    f, labels = _orthogonal_support()
    base_ids = torch.tensor([1, 3, 4, 5])
    Mb = h.process_support_set(f, labels, base_ids=base_ids, write_mode="batched")
    Ms = h.process_support_set(f, labels, base_ids=base_ids, write_mode="sequential")
    torch.testing.assert_close(Mb, Ms)
    # Parameter gradients agree too (at orthogonal keys the cross terms of the sequential product
    # vanish, and so do their derivatives with respect to the gates and the base weights).
    cot = torch.randn_like(Mb)
    params = [h.weight_base, *h.gate_w.parameters(), *h.gate_e.parameters()]
    grads = {}
    for mode in ("batched", "sequential"):
        out = h.process_support_set(f, labels, base_ids=base_ids, write_mode=mode)
        grads[mode] = torch.autograd.grad((out * cot).sum(), params)
    for g_b, g_s in zip(grads["batched"], grads["sequential"], strict=True):
        torch.testing.assert_close(g_b, g_s)


def test_batched_differs_from_sequential_for_correlated_keys():
    # Not a bug: the paper's batched erase computes every erase from the starting memory.
    h = NAMFewShotClassifier(NB, D, p_e_init=0.7).double()
    f = torch.randn(1, D, dtype=torch.float64).repeat(2, 1) + 0.1 * torch.randn(
        2, D, dtype=torch.float64
    )
    labels = torch.tensor([0, 1])
    Mb = h.process_support_set(f, labels, write_mode="batched")
    Ms = h.process_support_set(f, labels, write_mode="sequential")
    assert not torch.allclose(Mb[:NB], Ms[:NB])
    torch.testing.assert_close(Mb[NB:], Ms[NB:])  # novel writes are additive: always commute


def test_erase_removes_novel_direction_from_base_rows():
    h = NAMFewShotClassifier(NB, D, p_e_init=0.999).double()
    f = torch.randn(1, D, dtype=torch.float64)
    M = h.process_support_set(f, torch.tensor([0]))
    k = unit_norm(f[0])
    before = unit_norm(h.weight_base) @ k
    after = M[:NB] @ k
    assert (after.abs() < 0.01 * before.abs() + 1e-9).all()


def _tied(**kw):
    h = NAMFewShotClassifier(NB, D, gate="tied", value_scale="one", **kw).double()
    with torch.no_grad():  # key-dependent gate, so the tests are not about a constant
        h.gate.net[2].weight.normal_()
    return h


def test_tied_gate_is_one_network():
    h = _tied(p_init=0.3)
    assert not hasattr(h, "gate_w") and not hasattr(h, "gate_e")
    k = unit_norm(torch.randn(5, D, dtype=torch.float64))
    p_w, p_e = h.gates(k)
    assert p_w is p_e and p_w.shape == (5,)
    assert not torch.allclose(p_w, p_w[:1].expand(5))  # depends on the key
    fresh = NAMFewShotClassifier(NB, D, gate="tied", p_init=0.3)
    torch.testing.assert_close(fresh.gates(k.float())[0], torch.full((5,), 0.3))
    with pytest.raises(ValueError, match="gate"):
        NAMFewShotClassifier(NB, D, gate="bogus")


def test_tied_batched_formula_novel_rows_not_erased():
    # The authors' head: one gate p_n; base rows erased from the episode's starting memory,
    # novel rows only written (never erased), checked against a per-support loop.
    h = _tied()
    f, labels = _support()
    f = f.double()
    base_ids = torch.tensor([0, 2, 5])
    M = h.process_support_set(f, labels, base_ids=base_ids, write_mode="batched")
    k = unit_norm(f)
    p = h.gate(k)
    m0 = unit_norm(h.weight_base[base_ids])
    m_b = m0.clone()
    m_n = torch.zeros(N, D, dtype=torch.float64)
    for n in range(k.shape[0]):
        m_b = m_b - p[n] * torch.outer(m0 @ k[n], k[n])
        m_n[labels[n]] = m_n[labels[n]] + p[n] * k[n]
    torch.testing.assert_close(M, torch.cat([m_b, m_n]))


def test_tied_batched_equals_sequential_when_writes_commute():
    h = _tied()
    f, labels = _orthogonal_support()
    Mb = h.process_support_set(f, labels, write_mode="batched")
    Ms = h.process_support_set(f, labels, write_mode="sequential")
    torch.testing.assert_close(Mb, Ms)
    cot = torch.randn_like(Mb)
    params = [h.weight_base, *h.gate.parameters()]
    grads = {}
    for mode in ("batched", "sequential"):
        out = h.process_support_set(f, labels, write_mode=mode)
        grads[mode] = torch.autograd.grad((out * cot).sum(), params)
    for g_b, g_s in zip(grads["batched"], grads["sequential"], strict=True):
        torch.testing.assert_close(g_b, g_s)


@pytest.mark.parametrize("gate", ["separate", "tied"])
def test_nam_head_gradcheck(gate):
    torch.manual_seed(0)
    h = NAMFewShotClassifier(4, 5, gate=gate, gate_hidden=3).double()
    with torch.no_grad():
        for p in h.parameters():
            p.add_(0.1 * torch.randn_like(p))
    f = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    q = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    # Base weights as an input too: swap the parameter for a plain leaf tensor (gradcheck
    # perturbs its inputs in place, so the head sees every perturbation).
    w = h.weight_base.detach().clone().requires_grad_(True)
    del h.weight_base
    h.weight_base = w

    def fn(f, q, w):
        return h.classify(q, f, labels, base_ids=torch.tensor([0, 2, 3]))

    assert torch.autograd.gradcheck(fn, (f, q, w))


def test_constant_gate():
    g = ConstantGate(0.0)
    assert torch.equal(g(torch.randn(3, D)), torch.zeros(3))
    assert torch.equal(ConstantGate(1.0)(torch.randn(2, 4, D)), torch.ones(2, 4))
    with pytest.raises(ValueError, match="p"):
        ConstantGate(1.5)


def test_theorem2_memorize_recalls_value():
    M = torch.randn(5, 8, dtype=torch.float64)
    x = torch.randn(8, dtype=torch.float64) * 3
    y = torch.randn(5, dtype=torch.float64)
    M2 = one_shot_memorize(M, x, y)
    torch.testing.assert_close(nam_read(M2, unit_norm(x), 1.0), y)
    # Paper §8: writing y / ||x|| makes the raw product recall y.
    M3 = one_shot_memorize(M, x, y / x.norm())
    torch.testing.assert_close(M3 @ x, y)


def test_memorize_mode_reads_back_one_hot_labels():
    h = NAMFewShotClassifier(NB, D).double()
    f, labels = _support()
    f = f.double()
    M = h.process_support_set(f, labels, write_mode="memorize")
    # The last support is recalled exactly whatever the earlier writes were (Theorem 2).
    read = h.read(f[-1:])[0]
    torch.testing.assert_close(read, F.one_hot(torch.tensor(NB + int(labels[-1])), NB + N).double())
    assert M.shape == (NB + N, D)
    # With orthogonal keys every support is recalled exactly.
    fo, lo = _orthogonal_support()
    h.process_support_set(fo, lo, write_mode="memorize")
    torch.testing.assert_close(h.read(fo), F.one_hot(lo + NB, NB + N).double())
    assert (h(fo).argmax(-1) == lo + NB).all()


def test_sequential_uses_nam_write():
    h = NAMFewShotClassifier(NB, D, value_scale="one").double()
    f, labels = _support()
    f = f.double()
    M = h.process_support_set(f, labels, write_mode="sequential")
    k = unit_norm(f)
    p_w, p_e = h.gates(k)
    m_b, m_n = unit_norm(h.weight_base), torch.zeros(N, D, dtype=torch.float64)
    for n in range(k.shape[0]):
        m_n = nam_write(m_n, k[n], F.one_hot(labels[n], N).double(), p_w[n])
        m_b = nam_write(m_b, k[n], torch.zeros(NB, dtype=torch.float64), None, p_e[n])
    torch.testing.assert_close(M, torch.cat([m_b, m_n]))


def test_input_validation():
    h = NAMFewShotClassifier(NB, D)
    f, labels = _support()
    with pytest.raises(ValueError, match="support_features"):
        h.process_support_set(torch.randn(4, D + 1), labels[:4])
    with pytest.raises(TypeError, match="support_labels"):
        h.process_support_set(f, labels.float())
    with pytest.raises(ValueError, match="support_labels"):
        h.process_support_set(f, torch.zeros(len(labels), dtype=torch.long) + 1)  # class 0 missing
    with pytest.raises(ValueError, match="base_ids"):
        h.process_support_set(f, labels, base_ids=torch.tensor([0, NB]))
    with pytest.raises(ValueError, match="write_mode"):
        NAMFewShotClassifier(NB, D, write_mode="bogus")
    with pytest.raises(ValueError, match="generator"):
        CosineClassifier(NB, D, generator="bogus")
    with pytest.raises(ValueError, match="head"):
        build_head(FewShotHeadConfig(head="bogus"))
    with pytest.raises(ValueError, match="query_features"):
        h(torch.randn(3, D - 1))


def test_build_head_and_convnet():
    assert isinstance(
        build_head(FewShotHeadConfig(head="nam", num_base=4, dim=8)), NAMFewShotClassifier
    )
    net = ConvNet(ConvNetConfig(in_channels=1, widths=(4, 8)))
    out = net(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 8) and net.out_dim == 8
    with pytest.raises(ValueError, match="x"):
        net(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="widths"):
        ConvNetConfig(widths=())


def _episodes(e=3, n=N, k=K, d=D, nb=NB):
    f = torch.randn(e, n * k, d, dtype=torch.float64)
    labels = torch.arange(n).repeat_interleave(k).expand(e, -1).clone()
    base_ids = torch.stack([torch.randperm(nb)[: nb - 2] for _ in range(e)])
    return f, labels, base_ids


@pytest.mark.parametrize(
    "make",
    [
        lambda: CosineClassifier(NB, D),
        lambda: CosineClassifier(NB, D, generator="att"),
        lambda: NAMFewShotClassifier(NB, D),
        lambda: NAMFewShotClassifier(NB, D, gate="tied"),
    ],
)
def test_batch_of_episodes_equals_one_at_a_time(make):
    h = make().double()
    f, labels, base_ids = _episodes()
    q = torch.randn(3, 4, D, dtype=torch.float64)
    params = [p for p in h.parameters() if p.requires_grad]
    W = h.process_support_sets(f, labels, base_ids=base_ids)
    scores = h(q)
    assert W.shape == (3, NB - 2 + N, D) and scores.shape == (3, 4, NB - 2 + N)
    with pytest.raises(ValueError, match="query_features"):
        h(q[0])  # a batch of episodes needs a batch of query sets
    cot = torch.randn_like(scores)
    g_batch = torch.autograd.grad((scores * cot).sum(), params, allow_unused=True)
    one = []
    for e in range(3):
        h.process_support_set(f[e], labels[e], base_ids=base_ids[e])
        one.append(h(q[e]))
    one = torch.stack(one)
    torch.testing.assert_close(scores, one)
    g_one = torch.autograd.grad((one * cot).sum(), params, allow_unused=True)
    for a, b in zip(g_batch, g_one, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_batch_mean_erase_quirk():
    # The authors' code: the batched erase is averaged over the episodes of a mini-batch.
    h = _tied(erase="batch_mean")
    f, labels, base_ids = _episodes()
    W = h.process_support_sets(f, labels, base_ids=base_ids)
    w0 = unit_norm(h.weight_base)
    erases = []
    for e in range(3):
        k = unit_norm(f[e])
        p = h.gate(k)
        erases.append(sum(p[n] * torch.outer(w0 @ k[n], k[n]) for n in range(k.shape[0])))
    w = w0 - torch.stack(erases).mean(0)
    episode = NAMFewShotClassifier(NB, D, gate="tied", value_scale="one").double()
    episode.load_state_dict(h.state_dict())
    for e in range(3):
        ref = episode.process_support_set(f[e], labels[e], base_ids=base_ids[e])
        torch.testing.assert_close(W[e, : NB - 2], w[base_ids[e]])
        torch.testing.assert_close(W[e, NB - 2 :], ref[NB - 2 :])  # novel rows: the episode's
        # Train/test mismatch: one episode at a time erases only its own keys.
        assert not torch.allclose(W[e, : NB - 2], ref[: NB - 2])
        torch.testing.assert_close(h.process_support_set(f[e], labels[e], base_ids[e]), ref)
    # A batch of one episode is that episode.
    torch.testing.assert_close(
        h.process_support_sets(f[:1], labels[:1], base_ids=base_ids[:1])[0],
        episode.process_support_set(f[0], labels[0], base_ids=base_ids[0]),
    )
    # Gradients reach the gate, the base weights and the support features.
    fg = f.clone().requires_grad_(True)
    h.process_support_sets(fg, labels, base_ids=base_ids)
    h(torch.randn(3, 2, D, dtype=torch.float64)).sum().backward()
    assert fg.grad.abs().sum() > 0 and h.gate.net[2].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="erase"):
        NAMFewShotClassifier(NB, D, erase="bogus")
    with pytest.raises(ValueError, match="write_mode"):
        NAMFewShotClassifier(NB, D, erase="batch_mean", write_mode="sequential")
    with pytest.raises(ValueError, match="support_labels"):
        h.process_support_sets(f, labels[:, :2])
    with pytest.raises(ValueError, match="base_ids"):
        h.process_support_sets(f, labels, base_ids=base_ids[:2])
