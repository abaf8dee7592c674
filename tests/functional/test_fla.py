"""The mapping onto flash-linear-attention (fla), checked on the CPU in float64 against fla's own
pure-PyTorch reference recurrences (its Triton kernels need a GPU; ``import fla.ops`` needs
triton, so the reference files are loaded by path). Skipped when fla-core is not installed
(``pip install --no-deps fla-core einops``, or the ``fla`` extra)."""

import importlib.util
from pathlib import Path

import pytest
import torch

import neural_attention_memory.functional as F
from neural_attention_memory.functional import _fla

from ._helpers import grads_with_cotangents, make_inputs

_SPEC = importlib.util.find_spec("fla")
pytestmark = pytest.mark.skipif(
    _SPEC is None or importlib.util.find_spec("einops") is None,
    reason="fla-core (flash-linear-attention) and einops not installed",
)


def _load(rel: str):
    path = Path(_SPEC.submodule_search_locations[0]) / rel
    spec = importlib.util.spec_from_file_location("fla_ref_" + path.parent.name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def references(monkeypatch):
    """fla's reference recurrences behind the Triton kernels' signature and `[B, T, H, *]` layout."""
    # The references call .float() on their inputs; keep float64 so they can be compared at 1e-12.
    monkeypatch.setattr(torch.Tensor, "float", lambda self: self)
    dplr_ref = _load("ops/generalized_delta_rule/dplr/naive.py").dplr_recurrence
    delta_ref = _load("ops/delta_rule/naive.py").delta_rule_recurrence
    calls = []

    def t(x):
        return x.transpose(1, 2)

    def dplr(q, k, v, a, b, gk, scale, initial_state, output_final_state):
        calls.append("dplr")
        q = q * (scale * q.shape[-1] ** 0.5)  # the reference scales q by d_k^-1/2 itself
        o, S = dplr_ref(t(q), t(k), t(v), t(a), t(b), t(gk), initial_state, output_final_state)
        return t(o), S

    def delta(q, k, v, beta, scale, initial_state, output_final_state):
        calls.append("delta")
        q = q * (scale * q.shape[-1] ** 0.5)
        o, S = delta_ref(t(q), t(k), t(v), t(beta), initial_state, output_final_state)
        return t(o), S

    return dplr, delta, calls


def _run(fn, inputs, mask):
    q, k, v, p_w, p_e, p_r, S0 = inputs
    out, state = fn(q, k, v, p_w, p_e, p_r, S0, mask)
    used = [x for x in (q, k, v, p_w, p_e, p_r, S0) if x is not None]
    return out, state, grads_with_cotangents(out, state, used)


@pytest.mark.parametrize("gates", ["separate", "tied", "write-only", "none"])
def test_mapping_matches_naive_in_float64(gates, references):
    dplr, delta, calls = references
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=19, H=2, d_k=5, d_v=4)
    if gates == "tied":
        p_e = p_w
    elif gates == "write-only":
        p_e = p_r = None
    elif gates == "none":
        p_w = p_e = p_r = None
    mask = torch.zeros(2, 19, dtype=torch.bool)
    mask[1, 11:] = True
    mask[0, 4] = True
    inputs = (q, k, v, p_w, p_e, p_r, S0)

    def fla(*a):
        return _fla.fla_causal_nam_attention(*a, dplr, delta)

    def naive(q, k, v, w, e, r, s, m):
        return F.naive_causal_nam_attention(
            q, k, v, w, e, r, initial_state=s, output_final_state=True, key_padding_mask=m
        )

    got, ref = _run(fla, inputs, mask), _run(naive, inputs, mask)
    assert calls == ["delta" if gates == "tied" else "dplr"]
    torch.testing.assert_close(got[0], ref[0], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(got[1], ref[1], atol=1e-12, rtol=1e-10)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_non_finite_handling_matches_the_cpu_chunk_form(references):
    dplr, delta, _ = references
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=16, H=1, d_k=4, d_v=3, requires_grad=False)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 12:] = True
    k[0, 13] = float("nan")  # at padding: harmless
    v[1, 6, 0, 1] = float("inf")  # a real token: marks sequence 1 from t = 6 on
    o, S = _fla.fla_causal_nam_attention(q, k, v, p_w, p_e, p_r, S0, mask, dplr, delta)
    o_ref, S_ref = F.chunk_causal_nam_attention(
        q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True,
        key_padding_mask=mask, chunk_size=4,
    )  # fmt: skip
    torch.testing.assert_close(o, o_ref, equal_nan=True)
    torch.testing.assert_close(S, S_ref, equal_nan=True)
    assert torch.isfinite(o[1, :6]).all() and torch.isnan(o[1, 6:]).all()


def test_chunk_form_dispatches_to_fla_for_accelerator_inputs(references, monkeypatch):
    dplr, delta, calls = references
    monkeypatch.setattr(_fla, "use_fla", lambda q: True)  # as for CUDA tensors with fla present
    monkeypatch.setattr(_fla, "fla_kernels", lambda: (dplr, delta))
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=30, H=2, d_k=5, d_v=4, requires_grad=False)
    got = F.chunk_causal_nam_attention(q, k, v, p_w, p_e, p_r, initial_state=S0)
    assert calls == ["dplr"]
    monkeypatch.setattr(_fla, "use_fla", lambda q: False)
    ref = F.chunk_causal_nam_attention(q, k, v, p_w, p_e, p_r, initial_state=S0)
    torch.testing.assert_close(got[0], ref[0])
    assert got[1] is None and ref[1] is None


def test_use_fla_only_for_cuda_tensors():
    assert not _fla.use_fla(torch.zeros(1))
