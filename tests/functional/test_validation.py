"""Bad input to the attention entry points gives errors naming the argument, expected and given."""

import pytest
import torch

import neural_attention_memory.functional as F

ALL = [
    F.nam_attention,
    F.naive_nam_attention,
    F.naive_causal_nam_attention,
    F.recurrent_causal_nam_attention,
    F.chunk_causal_nam_attention,
]
CAUSAL = ALL[2:]


def qkv(B=2, T=5, H=3, d_k=4, d_v=6, dtype=torch.float32):
    return (
        torch.randn(B, T, H, d_k, dtype=dtype),
        torch.randn(B, T, H, d_k, dtype=dtype),
        torch.randn(B, T, H, d_v, dtype=dtype),
    )


@pytest.mark.parametrize("fn", ALL)
def test_wrong_rank(fn):
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"q: expected a rank-4 tensor, got shape \(2, 5, 12\)"):
        fn(q.flatten(2), k, v)


@pytest.mark.parametrize("fn", ALL)
def test_mismatched_shapes_and_heads(fn):
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"k: expected the shape of q"):
        fn(q, k[..., :3], v)
    with pytest.raises(
        ValueError, match=r"v: expected \[B, T, H\] = \(2, 5, 3\).*got shape \(2, 5, 2, 6\)"
    ):
        fn(q, k, v[:, :, :2])


@pytest.mark.parametrize("fn", ALL)
def test_empty_sequence_and_integer_dtype(fn):
    q, k, v = qkv(T=0)
    with pytest.raises(ValueError, match=r"non-empty sequence"):
        fn(q, k, v)
    q, k, v = qkv()
    with pytest.raises(
        TypeError, match=r"q: expected a floating-point tensor, got dtype torch.int64"
    ):
        fn(q.long(), k, v)
    with pytest.raises(TypeError, match=r"q, k, v: expected one dtype"):
        fn(q, k.double(), v)


@pytest.mark.parametrize("fn", ALL)
def test_gates_wrong_shape_or_range(fn):
    q, k, v = qkv()
    with pytest.raises(
        ValueError, match=r"p_w: expected shape \[B, T, H\] = \(2, 5, 3\), got \(2, 5\)"
    ):
        fn(q, k, v, torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"p_w: expected probabilities in \[0, 1\], got values in"):
        fn(q, k, v, torch.rand(2, 5, 3) + 1.0)
    with pytest.raises(TypeError, match=r"p_w: expected None or a tensor"):
        fn(q, k, v, 0.5)


@pytest.mark.parametrize("fn", CAUSAL)
def test_causal_specific_arguments(fn):
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"p_e: expected probabilities in \[0, 1\]"):
        fn(q, k, v, None, -torch.rand(2, 5, 3))
    with pytest.raises(
        ValueError, match=r"initial_state: expected shape \[B, H, d_v, d_k\] = \(2, 3, 6, 4\)"
    ):
        fn(q, k, v, initial_state=torch.zeros(2, 3, 4, 6))


@pytest.mark.parametrize("fn", ALL)
def test_padding_mask_checked(fn):
    q, k, v = qkv()
    with pytest.raises(
        TypeError, match=r"key_padding_mask: expected a bool tensor .* got dtype torch.float32"
    ):
        fn(q, k, v, key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(
        ValueError, match=r"key_padding_mask: expected shape \[B, T\] = \(2, 5\), got \(5, 2\)"
    ):
        fn(q, k, v, key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))


def test_chunk_size_and_dtype():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"chunk_size: expected a positive int, got 0"):
        F.chunk_causal_nam_attention(q, k, v, chunk_size=0)
    with pytest.raises(
        TypeError, match=r"p_w: expected dtype torch.bfloat16 or torch.float32 \(same as q\)"
    ):
        F.chunk_causal_nam_attention(
            q.bfloat16(), k.bfloat16(), v.bfloat16(), torch.rand(2, 5, 3, dtype=torch.float64)
        )
    with pytest.raises(TypeError, match=r"p_w: expected dtype torch.float32 \(same as q\)"):
        F.chunk_causal_nam_attention(q, k, v, torch.rand(2, 5, 3).bfloat16())


@pytest.mark.parametrize("fn", ALL)
def test_nan_gates_rejected_with_a_named_error(fn):
    q, k, v = qkv()
    p = torch.rand(2, 5, 3)
    p[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"p_w: expected probabilities in \[0, 1\], got .* 1 NaN"):
        fn(q, k, v, p)
    p[:] = float("nan")
    with pytest.raises(ValueError, match=r"p_r: expected probabilities in \[0, 1\], got only NaN"):
        fn(q, k, v, p_r=p)
