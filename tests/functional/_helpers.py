"""Shared builders for the attention tests."""

import torch

DT = torch.float64


def make_inputs(B=2, T=13, H=3, d_k=6, d_v=5, gates=True, dtype=DT, requires_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, fn=torch.randn):
        return fn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)

    q, k, v = rnd(B, T, H, d_k), rnd(B, T, H, d_k), rnd(B, T, H, d_v)
    p_w, p_e, p_r = (rnd(B, T, H, fn=torch.rand) if gates else None for _ in range(3))
    S0 = rnd(B, H, d_v, d_k)
    return q, k, v, p_w, p_e, p_r, S0


def grads_with_cotangents(out, state, inputs, seed=1):
    """Gradients of <out, dO> + <state, dS> with fixed random cotangents on both outputs."""
    g = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    if state is not None:
        loss = loss + (state * torch.randn(state.shape, generator=g, dtype=state.dtype)).sum()
    inputs = [x for x in inputs if x is not None]
    return torch.autograd.grad(loss, inputs, allow_unused=True)
