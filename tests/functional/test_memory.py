"""The memory primitives and the paper's theorems."""

import pytest
import torch

from neural_attention_memory.functional import nam_read, nam_write, unit_norm

DT = torch.float64


def test_unit_norm_unit_length_and_zero_vector():
    x = torch.randn(5, 7, dtype=DT)
    assert torch.allclose(unit_norm(x).norm(dim=-1), torch.ones(5, dtype=DT))
    z = torch.zeros(3, 4, dtype=DT, requires_grad=True)
    out = unit_norm(z)
    assert torch.equal(out, torch.zeros_like(z))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_theorem_1_orthonormal_keys_read_back_their_values():
    d_k, d_v, S = 8, 5, 6
    keys = torch.linalg.qr(torch.randn(d_k, d_k, dtype=DT))[0][:, :S].T  # S orthonormal rows
    values = torch.randn(S, d_v, dtype=DT)
    M = torch.zeros(d_v, d_k, dtype=DT)
    for i in range(S):
        M = nam_write(M, keys[i], values[i])  # p_w = 1, no erase: M = sum v_i k_i^T
    assert torch.allclose(M, values.T @ keys)
    for i in range(S):
        assert torch.allclose(nam_read(M, keys[i], 1.0), values[i])


def test_theorem_2_full_write_with_full_erase_reads_back_last_value():
    M = torch.randn(4, 3, 5, 7, dtype=DT)  # any memory
    k = unit_norm(torch.randn(4, 3, 7, dtype=DT))
    v = torch.randn(4, 3, 5, dtype=DT)
    assert torch.allclose(nam_read(nam_write(M, k, v, 1.0, 1.0), k, 1.0), v)
    # Repeated writes under one key: the last one wins.
    M2 = nam_write(nam_write(M, k, -v, 1.0, 1.0), k, v, 1.0, 1.0)
    assert torch.allclose(nam_read(M2, k), v)


def test_write_with_zero_gates_is_identity():
    M = torch.randn(2, 5, 7, dtype=DT)
    k, v = unit_norm(torch.randn(2, 7, dtype=DT)), torch.randn(2, 5, dtype=DT)
    assert torch.equal(nam_write(M, k, v, 0.0, 0.0), M)
    assert torch.equal(nam_write(M, k, v, torch.zeros(2, dtype=DT), torch.zeros(2, dtype=DT)), M)


def test_primitives_match_the_formulas_with_per_memory_gates():
    M = torch.randn(3, 5, 7, dtype=DT)
    k, q = torch.randn(3, 7, dtype=DT), torch.randn(3, 7, dtype=DT)
    v = torch.randn(3, 5, dtype=DT)
    p_w, p_e, p_r = (torch.rand(3, dtype=DT) for _ in range(3))
    expect = torch.stack(
        [
            M[i] + p_w[i] * torch.outer(v[i], k[i]) - p_e[i] * torch.outer(M[i] @ k[i], k[i])
            for i in range(3)
        ]
    )
    assert torch.allclose(nam_write(M, k, v, p_w, p_e), expect)
    assert torch.allclose(
        nam_read(M, q, p_r), torch.stack([p_r[i] * M[i] @ q[i] for i in range(3)])
    )
    assert torch.allclose(nam_read(M, q), (M @ q.unsqueeze(-1)).squeeze(-1))


def test_gradcheck_primitives():
    M = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k, q = (torch.randn(2, 4, dtype=DT, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 3, dtype=DT, requires_grad=True)
    p_w, p_e, p_r = (torch.rand(2, dtype=DT, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(nam_write, (M, k, v, p_w, p_e))
    assert torch.autograd.gradcheck(nam_read, (M, q, p_r))
    assert torch.autograd.gradcheck(unit_norm, (q,))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: nam_read(torch.randn(3, 4), torch.randn(5)), r"q: expected shape \(4,\)"),
        (lambda: nam_read(torch.randn(4), torch.randn(4)), r"M: expected at least 2 dims"),
        (lambda: nam_read(torch.randn(3, 4), torch.randn(4), 1.5), r"p_r: expected a probability"),
        (
            lambda: nam_write(torch.randn(3, 4), torch.randn(4), torch.randn(4)),
            r"v: expected shape \(3,\)",
        ),
        (
            lambda: nam_write(
                torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(2, 3), torch.rand(3)
            ),
            r"p_w: expected a scalar or shape \(2,\)",
        ),
        (
            lambda: nam_write(
                torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(2, 3), None, -torch.rand(2)
            ),
            r"p_e: expected probabilities in \[0, 1\]",
        ),
        (lambda: unit_norm(torch.randn(3), eps=0.0), r"eps: expected a positive float"),
    ],
)
def test_bad_input_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_input_type_errors():
    with pytest.raises(
        TypeError, match="M: expected a floating-point tensor, got dtype torch.int64"
    ):
        nam_read(torch.ones(3, 4, dtype=torch.long), torch.randn(4))
    with pytest.raises(TypeError, match="q: expected a torch.Tensor, got list"):
        nam_read(torch.randn(3, 4), [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(TypeError, match="p_w: expected None, a float or a tensor, got str"):
        nam_write(torch.randn(3, 4), torch.randn(4), torch.randn(3), "1")
