"""A bidirectional GRU for training on CPU: fused forward, hand-written backward.

``nn.GRU`` has no fused CPU training kernel (unlike ``nn.LSTM``): under autograd every step is a
dozen small ops forward and backward. Here each direction runs ``torch._VF.gru`` (the fused
inference kernel) under no-grad, and the backward is written out. Since the whole hidden sequence
is known after the forward, all gate activations and every coefficient of the gradient recurrence
are computed in a few batched ops; the only sequential part is, per step,
``dh_{t-1} = dh_t ⊙ z_t + (dh_t ⊙ C_t) W_hh`` (one ``addmm``). Weight gradients are single GEMMs
over all steps. Gradients of gradients (``create_graph=True``) recompute through ``_VF.gru`` under
autograd, so they are exact as well.

GRU (PyTorch's convention): ``r = σ(x W_ir + h W_hr + b_r)``, ``z = σ(x W_iz + h W_hz + b_z)``,
``n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import _tape_kernel

__all__ = ["bigru_forward", "gru_scan"]


def _gru(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """`x [B, T, F]`, `h0 [B, H]` -> outputs `[B, T, H]` (``_VF.gru``, differentiable by autograd)."""
    out, _ = torch._VF.gru(
        x, h0.unsqueeze(0), (w_ih, w_hh, b_ih, b_hh), True, 1, 0.0, False, False, True
    )
    return out


class _GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        out = _gru(x, h0, w_ih, w_hh, b_ih, b_hh)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out

    @staticmethod
    def backward(ctx, d_out):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the autograd graph instead
            with torch.enable_grad():
                inputs = (x, h0, w_ih, w_hh, b_ih, b_hh)
                need = [t for t in inputs if t.requires_grad]
                grads = iter(
                    torch.autograd.grad(
                        _gru(*inputs), need, d_out, create_graph=True, allow_unused=True
                    )
                )
                return tuple(next(grads) if t.requires_grad else None for t in inputs)
        B, T, _ = x.shape
        H = h0.shape[-1]
        h_prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)  # [B, T, H]
        gi = torch.addmm(b_ih, x.reshape(B * T, -1), w_ih.t()).view(B, T, 3, H)
        gh = torch.addmm(b_hh, h_prev.reshape(B * T, H), w_hh.t()).view(B, T, 3, H)
        r = torch.sigmoid(gi[:, :, 0] + gh[:, :, 0])
        z = torch.sigmoid(gi[:, :, 1] + gh[:, :, 1])
        n = torch.tanh(gi[:, :, 2] + r * gh[:, :, 2])
        # With g = dL/dh'_t: d pre_n = g (1 - z)(1 - n^2), d pre_r = d pre_n gh_n r (1 - r),
        # d pre_z = g (h - n) z (1 - z), d gh_n = d pre_n r.
        c_n = (1 - z) * (1 - n * n)
        c_r = c_n * gh[:, :, 2] * r * (1 - r)
        c_z = (h_prev - n) * z * (1 - z)
        C = torch.stack([c_r, c_z, c_n * r], 2).transpose(0, 1).contiguous()  # [T, B, 3, H] for gh
        zt = z.transpose(0, 1).contiguous()
        dout = d_out.transpose(0, 1)
        G = torch.empty_like(zt)  # dL/dh'_t, time-major
        carry = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            g = torch.add(dout[t], carry, out=G[t])
            dgh = (g.unsqueeze(1) * C[t]).view(B, 3 * H)
            carry = torch.addmm(g * zt[t], dgh, w_hh)
        G = G.transpose(0, 1)  # [B, T, H]
        dgh = (G.unsqueeze(2) * C.transpose(0, 1)).reshape(B * T, 3 * H)
        dgi = (G.unsqueeze(2) * torch.stack([c_r, c_z, c_n], 2)).reshape(B * T, 3 * H)
        dx = (dgi @ w_ih).view_as(x)
        d_w_ih = dgi.t() @ x.reshape(B * T, -1)
        d_w_hh = dgh.t() @ h_prev.reshape(B * T, H)
        return dx, carry, d_w_ih, d_w_hh, dgi.sum(0), dgh.sum(0)


def gru_scan(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> Tensor:
    """One GRU direction over `x [B, T, F]` from `h0 [B, H]` -> outputs `[B, T, H]`."""
    return _GRUScan.apply(x, h0, w_ih, w_hh, b_ih, b_hh)


def _weights(gru: nn.GRU) -> tuple[Tensor, ...]:
    """(w_ih, w_hh, b_ih, b_hh) of the forward direction, then of the backward one."""
    return (
        gru.weight_ih_l0,
        gru.weight_hh_l0,
        gru.bias_ih_l0,
        gru.bias_hh_l0,
        gru.weight_ih_l0_reverse,
        gru.weight_hh_l0_reverse,
        gru.bias_ih_l0_reverse,
        gru.bias_hh_l0_reverse,
    )


def _bigru_torch(x: Tensor, lengths: Tensor | None, weights: tuple[Tensor, ...]) -> Tensor:
    """The PyTorch path: one :func:`gru_scan` per direction, the backward one on each row's real
    tokens reversed in place. Outputs `[B, T, 2H]` (padded positions: unspecified)."""
    B, T, _ = x.shape
    h0 = x.new_zeros(B, weights[1].shape[1])
    fwd = gru_scan(x, h0, *weights[:4])
    # Reverse each row's real tokens in place (an involution), run forwards, reverse back.
    t = torch.arange(T, device=x.device)
    if lengths is None:
        rev = (T - 1 - t).expand(B, T)
    else:
        n = lengths.to(x.device).unsqueeze(1)
        rev = torch.where(t < n, n - 1 - t, t)
    idx = rev.unsqueeze(-1).expand_as(x)
    xr = x.gather(1, idx)
    bwd = gru_scan(xr, h0, *weights[4:])
    bwd = bwd.gather(1, rev.unsqueeze(-1).expand_as(bwd))
    return torch.cat([fwd, bwd], -1)


class _BiGRUKernel(torch.autograd.Function):
    """Both directions' recurrences in the C kernel (forward and backward, batch rows in vector
    lanes); the input projections and weight gradients are single GEMMs over all steps and both
    directions. Outputs (and gradients) are zero at padded positions."""

    @staticmethod
    def forward(ctx, kernel, x, lengths, *weights):
        B, T, F = x.shape
        H = weights[1].shape[1]
        w_ih = torch.cat([weights[0], weights[4]])  # [6H, F], both directions
        b_ih = torch.cat([weights[2], weights[6]])
        GI = torch.addmm(b_ih, x.reshape(B * T, F), w_ih.t()).view(B, T, 2, 3 * H)
        W = torch.stack([weights[1], weights[5]])  # [2, 3H, H]
        BH = torch.stack([weights[3], weights[7]])
        out, saved = kernel.bigru_forward(GI, lengths, W, BH)
        ctx.kernel = kernel
        ctx.save_for_backward(x, lengths, out, W, *saved, *weights)
        return out

    @staticmethod
    def backward(ctx, d_out):
        x, lengths, out, W, HL, GT, *weights = ctx.saved_tensors
        B, T, F = x.shape
        H = W.shape[-1]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the PyTorch path instead
            with torch.enable_grad():
                inputs = (x, *weights)
                need = [t for t in inputs if t.requires_grad]
                y = _bigru_torch(x, lengths, tuple(weights))
                if lengths is not None:  # the kernel's outputs are zero at padded positions
                    real = torch.arange(T, device=x.device) < lengths[:, None]
                    y = y * real.unsqueeze(-1)
                grads = iter(torch.autograd.grad(y, need, d_out, create_graph=True))
                res = [next(grads) if t.requires_grad else None for t in inputs]
                return None, res[0], None, *res[1:]
        dGI, dGH = ctx.kernel.bigru_backward(lengths, W, (HL, GT), d_out.contiguous())
        dgi = dGI.view(B * T, 6 * H)
        w_ih = torch.cat([weights[0], weights[4]])
        dx = (dgi @ w_ih).view(B, T, F)
        d_w_ih = dgi.t() @ x.reshape(B * T, F)  # [6H, F]
        d_b_ih = dgi.sum(0)
        # Previous hidden states: zero before each direction's first step; the outputs are zero at
        # padded positions, so the backward direction's last real step gets zeros too.
        zero = out.new_zeros(B, 1, H)
        h_prev = (
            torch.cat([zero, out[:, :-1, :H]], 1).view(B * T, H),
            torch.cat([out[:, 1:, H:], zero], 1).view(B * T, H),
        )
        dgh = dGH.view(B * T, 2, 3 * H)
        d_w_hh = [dgh[:, i].t() @ h_prev[i] for i in (0, 1)]
        d_b_hh = dGH.view(B * T, 6 * H).sum(0).view(2, 3 * H)
        return (
            None,
            dx,
            None,
            d_w_ih[: 3 * H],
            d_w_hh[0],
            d_b_ih[: 3 * H],
            d_b_hh[0],
            d_w_ih[3 * H :],
            d_w_hh[1],
            d_b_ih[3 * H :],
            d_b_hh[1],
        )


def bigru_forward(
    gru: nn.GRU, x: Tensor, lengths: Tensor | None = None, use_kernel: bool = True
) -> Tensor:
    """Outputs `[B, T, 2H]` of a one-layer bidirectional ``nn.GRU`` (``batch_first``) from zero states.

    ``lengths`` `[B]` (right padding): the backward direction starts at each row's last real
    token; outputs at padded positions are unspecified. Equals ``gru(x)`` /
    ``gru(pack_padded_sequence(x, lengths))`` on real positions, with a faster backward.
    ``use_kernel``: run both recurrences in the compiled kernel (:mod:`._tape_kernel`) when it is
    available, else (or with False) the PyTorch path (:func:`gru_scan` per direction).
    """
    weights = _weights(gru)
    kernel = _tape_kernel.get() if use_kernel else None
    if kernel is not None and kernel.supports(x) and all(w.dtype == x.dtype for w in weights):
        if lengths is not None:
            lengths = lengths.to(device=x.device, dtype=torch.long).contiguous()
        return _BiGRUKernel.apply(kernel, x.contiguous(), lengths, *weights)
    return _bigru_torch(x, lengths, weights)
