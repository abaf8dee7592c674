"""The NAM-TM tape recurrence over all steps, with a hand-written backward (docs/paper.md §4).

Everything that does not depend on the tape (gates, actions, values, keys, jump queries) is computed
by the caller for every step; :func:`tape_scan` runs the sequential part. Batch and tapes are folded
into one batch dim ``BN``; inputs are time-major. Per step, for every ``bn``::

    h_r, h_w = H_r / |H_r|, H_w / |H_w|                  # unit heads (eps-guarded)
    u  = W_t - p_e (TT h_w)                              # TT: value rows [d, L] (+ key rows)
    TT = TT + u h_w^T                                    # WR at the write head
    r  = V h_r                                           # RD at the read head (p_r: caller)
    key_mode "position" (2022): key rows K = TT[d:] were written above;   j = K^T q
    key_mode "key" (2023):      KT [L, d] stores the raw write head H_w under the key k:
                                KT = KT + (p_w H_w - p_e KT k) k^T;        j = KT q
    H  = a_noop H + a_left roll(H, -1) + a_right roll(H, 1) + a_jump j   (each head)

``W_t`` is ``p_w`` times the written rows (values, then keys in "position" mode). Three
implementations share one ``autograd.Function``:

* the C kernel (:mod:`._tape_kernel`, compiled on first use: 16 ``bn`` side by side in vector
  lanes, every operation of a step one vertical vector operation on all of them) when it is
  available;
* a PyTorch loop of batched ops (the fallback, always available);
* :func:`tape_scan_autograd`, the same math out of place and differentiated by autograd. It is the
  twin the two fast paths are tested against, and it gives exact double backward: when a gradient
  of the gradient is asked for (``create_graph=True``) the Function's backward recomputes through it.

Both hand-written backwards keep per step only vectors (heads, their norms, ``TT h_w``, ``KT k``)
and rebuild each previous tape from the next one, ``TT_{t-1} = TT_t - u h_w^T``, so memory does not
grow with ``T * D * L``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _tape_kernel

__all__ = ["EPS", "tape_scan", "tape_scan_autograd"]

EPS = 1e-6


def _shift_windows(H: Tensor) -> Tensor:
    """`[BN, 2, L]` -> `[BN, 2, L, 3]`: for cell j the circular window (H[j-1], H[j], H[j+1])."""
    return torch.cat([H[..., -1:], H, H[..., :1]], dim=-1).unfold(-1, 3, 1)


def _moves(A: Tensor) -> Tensor:
    """Action weights `[..., 2, 4]` (noop, left, right, jump) -> shift weights `[..., 2, 3, 1]` in
    window order (RIGHT takes H[j-1], NO-OP H[j], LEFT H[j+1])."""
    return torch.stack([A[..., 2], A[..., 0], A[..., 1]], dim=-1).unsqueeze(-1)


def _torch_forward(W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode, shift):
    T, BN, D = W.shape
    L = H0.shape[-1]
    TT = TT0.clone()
    KT = None if KT0 is None else KT0.clone()
    H = H0
    MV = _moves(A) if shift else None
    AN = A[..., 0:1]  # [T, BN, 2, 1]
    AJ = A[..., 3:4]
    R = W.new_empty(T, BN, 1, d)
    HS = W.new_empty(T, BN, 2, L)
    NR = W.new_empty(T, BN, 2, 1)
    THW = None if NPE is None else W.new_empty(T, BN, 1, D)
    S = W.new_empty(T, BN, 1, L) if key_mode == "key" and NPE is not None else None
    J = None if key_mode is None else W.new_empty(T, BN, 1, L)
    for t in range(T):
        HS[t] = H
        nrm = torch.linalg.vector_norm(H, dim=-1, keepdim=True, out=NR[t])
        hn = H / nrm.clamp_min(EPS)
        hr, hw = hn[:, 0:1], hn[:, 1:2]  # [BN, 1, L] rows
        # Mat-vecs as row-vector @ matrix^T: several times faster than matrix @ column on CPU.
        if NPE is None:
            u = W[t]
        else:  # WR: T + (p_w w - p_e T h_w) h_w^T
            thw = torch.bmm(hw, TT.transpose(1, 2), out=THW[t])
            u = torch.addcmul(W[t], NPE[t], thw.squeeze(1))
        TT.addcmul_(u.unsqueeze(-1), hw)  # rank-1: elementwise beats bmm
        torch.bmm(hr, TT[:, :d].transpose(1, 2), out=R[t])
        if key_mode == "position":
            torch.bmm(Q[t], TT[:, d:], out=J[t])  # (K^T q)^T  [BN, 1, L]
        elif key_mode == "key":
            u2 = H[:, 1:2] if PWK is None else H[:, 1:2] * PWK[t].unsqueeze(-1)  # [BN, 1, L]
            if NPE is not None:
                s = torch.bmm(KK[t], KT.transpose(1, 2), out=S[t])  # (KT k)^T
                u2 = torch.addcmul(u2, NPE[t].unsqueeze(-1), s)
            KT.addcmul_(u2.transpose(1, 2), KK[t])
            torch.bmm(Q[t], KT.transpose(1, 2), out=J[t])  # (KT q)^T
        if shift:
            Hn = torch.matmul(_shift_windows(H), MV[t]).squeeze(-1)
        else:
            Hn = H * AN[t]
        if J is not None:
            Hn.addcmul_(AJ[t], J[t])
        H = Hn
    return R, TT, KT, H, (HS, NR, THW, S, J)


def _torch_backward(saved, dR, dTT_T, dKT_T, dH_T, d, key_mode, shift):
    W, NPE, Q, A, KK, PWK, TT_T, KT_T, (HS, NR, THW, S, J) = saved
    T = W.shape[0]
    TT = TT_T.clone()
    dTT = dTT_T.clone()
    KT = None if KT_T is None else KT_T.clone()
    dKT = None if KT_T is None else dKT_T.clone()
    MV = _moves(A) if shift else None
    AN, AJ = A[..., 0:1], A[..., 3:4]
    dH = dH_T
    dW = torch.empty_like(W)
    dNPE = None if NPE is None else torch.empty_like(NPE)
    dQ = None if Q is None else torch.empty_like(Q)
    dKK = None if KK is None else torch.empty_like(KK)
    dPWK = None if PWK is None else torch.empty_like(PWK)
    dA = torch.zeros_like(A)
    for t in range(T - 1, -1, -1):
        H, nrm = HS[t], NR[t]
        hn = H / nrm.clamp_min(EPS)
        hr, hw = hn[:, 0:1], hn[:, 1:2]
        # H' = moves(H) + a_jump j
        if shift:
            # d weights = <dH', windows(H)>; dH = windows(dH') . (LEFT, NO-OP, RIGHT) weights
            dmv = torch.matmul(dH.unsqueeze(-2), _shift_windows(H)).squeeze(-2)  # [BN, 2, 3]
            dA[t, :, :, 2], dA[t, :, :, 0], dA[t, :, :, 1] = dmv.unbind(-1)
            dH_prev = torch.matmul(_shift_windows(dH), MV[t].flip(-2)).squeeze(-1)
        else:
            dA[t, :, :, 0] = (dH * H).sum(-1)
            dH_prev = dH * AN[t]
        if key_mode is not None:
            dA[t, :, :, 3] = (dH * J[t]).sum(-1)
            dj = (dH * AJ[t]).sum(1, keepdim=True)  # [BN, 1, L]
        if key_mode == "position":  # j = q K^T, K after this step's write
            dQ[t] = torch.bmm(dj, TT[:, d:].transpose(1, 2))
            dTT[:, d:].addcmul_(Q[t].transpose(1, 2), dj)
        elif key_mode == "key":  # j = q KT^T; KT_t = KT_{t-1} + u2^T k, u2 = p_w w - p_e s
            dQ[t] = torch.bmm(dj, KT)
            dKT.addcmul_(dj.transpose(1, 2), Q[t])
            w = H[:, 1:2]
            u2 = w if PWK is None else w * PWK[t].unsqueeze(-1)
            if NPE is not None:
                u2 = torch.addcmul(u2, NPE[t].unsqueeze(-1), S[t])
            du2 = torch.bmm(KK[t], dKT.transpose(1, 2))  # [BN, 1, L]
            dk = torch.bmm(u2, dKT)  # [BN, 1, d]
            KT.addcmul_(u2.transpose(1, 2), KK[t], value=-1)  # rebuild KT_{t-1}
            if PWK is not None:
                dPWK[t] = (du2 * w).sum(-1)
                dH_prev[:, 1:2] += du2 * PWK[t].unsqueeze(-1)
            else:
                dH_prev[:, 1:2] += du2
            if NPE is not None:
                npe_key = (du2 * S[t]).sum(-1)  # [BN, 1]
                ds = du2 * NPE[t].unsqueeze(-1)
                dKT.addcmul_(ds.transpose(1, 2), KK[t])
                dk = dk + torch.bmm(ds, KT)
            dKK[t] = dk
        # r = h_r V^T (V = value rows after this step's write)
        dhr = torch.bmm(dR[t], TT[:, :d])
        dTT[:, :d].addcmul_(dR[t].transpose(1, 2), hr)
        # TT_t = TT_{t-1} + u h_w^T, u = W + (-p_e) TT_{t-1} h_w
        u = W[t] if NPE is None else torch.addcmul(W[t], NPE[t], THW[t].squeeze(1))
        du = torch.bmm(hw, dTT.transpose(1, 2))  # [BN, 1, D]
        dhw = torch.bmm(u.unsqueeze(1), dTT)  # [BN, 1, L]
        TT.addcmul_(u.unsqueeze(-1), hw, value=-1)  # rebuild TT_{t-1}
        dW[t] = du.squeeze(1)
        if NPE is not None:
            dNPE[t] = (du * THW[t]).sum(-1)
            if key_mode == "key":
                dNPE[t] += npe_key
            dthw = du * NPE[t].unsqueeze(-1)  # [BN, 1, D]
            dhw = dhw + torch.bmm(dthw, TT)
            dTT.addcmul_(dthw.transpose(1, 2), hw)
        # unit heads: h = H / max(|H|, eps)
        dhn = torch.cat([dhr, dhw], 1)
        dot = (dhn * hn).sum(-1, keepdim=True) * (nrm > EPS)
        dH = dH_prev + (dhn - hn * dot) / nrm.clamp_min(EPS)
    return dW, dNPE, dQ, dA, dKK, dPWK, dTT, dKT, dH


def tape_scan_autograd(W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode, shift):
    """The tape recurrence out of place, differentiated by autograd (any order).

    Same arguments and results as :func:`tape_scan` (``shift`` is ignored: absent moves have zero
    weight in ``A``). ``KT`` is None when ``key_mode != "key"``.
    """
    T = W.shape[0]
    TT, KT, H = TT0, KT0, H0
    reads = []
    for t in range(T):
        hn = H / torch.linalg.vector_norm(H, dim=-1, keepdim=True).clamp_min(EPS)
        hr, hw = hn[:, 0:1], hn[:, 1:2]
        thw = torch.matmul(hw, TT.transpose(1, 2)).squeeze(1)  # [BN, D]
        u = W[t] if NPE is None else W[t] + NPE[t] * thw
        TT = TT + u.unsqueeze(-1) * hw
        reads.append(torch.matmul(hr, TT[:, :d].transpose(1, 2)))
        j = None
        if key_mode == "position":
            j = torch.matmul(Q[t], TT[:, d:])
        elif key_mode == "key":
            w = H[:, 1:2]
            u2 = w if PWK is None else w * PWK[t].unsqueeze(-1)
            if NPE is not None:
                u2 = u2 + NPE[t].unsqueeze(-1) * torch.matmul(KK[t], KT.transpose(1, 2))
            KT = KT + u2.transpose(1, 2) * KK[t]
            j = torch.matmul(Q[t], KT.transpose(1, 2))
        a = A[t]  # [BN, 2, 4]
        Hn = (
            a[..., 0:1] * H
            + a[..., 1:2] * torch.roll(H, -1, dims=-1)
            + a[..., 2:3] * torch.roll(H, 1, dims=-1)
        )
        if j is not None:
            Hn = Hn + a[..., 3:4] * j
        H = Hn
    return torch.stack(reads), TT, KT, H


class _TapeScan(torch.autograd.Function):
    """:func:`tape_scan` as an autograd Function (see the module docstring)."""

    @staticmethod
    def forward(ctx, W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode, shift, use_kernel):
        kernel = _tape_kernel.get() if use_kernel else None
        if kernel is not None and kernel.supports(W):
            R, TT, KT, H, aux = kernel.forward(W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode)
        else:
            kernel = None
            R, TT, KT, H, aux = _torch_forward(
                W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode, shift
            )
        ctx.save_for_backward(W, NPE, Q, A, KK, PWK, TT0, KT0, H0, TT, KT, *aux)
        ctx.static = (d, key_mode, shift, kernel, len(aux))
        if KT is None:
            return R, TT, H
        return R, TT, KT, H

    @staticmethod
    def backward(ctx, dR, dTT, *rest):
        d, key_mode, shift, kernel, _ = ctx.static
        saved = ctx.saved_tensors
        W, NPE, Q, A, KK, PWK, TT0, KT0, H0, TT, KT = saved[:11]
        aux = saved[11:]
        dKT, dH = (rest[0], rest[1]) if KT is not None else (None, rest[0])
        # Undefined output gradients arrive as None: zeros keep one code path.
        dR = W.new_zeros(W.shape[0], W.shape[1], 1, d) if dR is None else dR
        dTT = torch.zeros_like(TT) if dTT is None else dTT
        dH = torch.zeros_like(H0) if dH is None else dH
        if KT is not None and dKT is None:
            dKT = torch.zeros_like(KT)
        inputs = (W, NPE, Q, A, KK, PWK, TT0, KT0, H0)
        if torch.is_grad_enabled():
            # create_graph=True: the gradient must itself be differentiable. Recompute through the
            # autograd twin, whose graph is exact to any order (no silent first-order shortcut).
            return (
                *_double_backward(inputs, (dR, dTT, dKT, dH), d, key_mode),
                None,
                None,
                None,
                None,
            )
        if kernel is not None:
            grads = kernel.backward(inputs, TT, KT, aux, dR, dTT, dKT, dH, d, key_mode)
        else:
            grads = _torch_backward(
                (W, NPE, Q, A, KK, PWK, TT, KT, aux), dR, dTT, dKT, dH, d, key_mode, shift
            )
        dW, dNPE, dQ, dA, dKK, dPWK, dTT0, dKT0, dH0 = grads
        return dW, dNPE, dQ, dA, dKK, dPWK, dTT0, dKT0, dH0, None, None, None, None


def _double_backward(inputs, grad_outputs, d, key_mode):
    with torch.enable_grad():
        need = [x for x in inputs if x is not None and x.requires_grad]
        outs = tape_scan_autograd(*inputs, d, key_mode, True)
        pairs = [(o, g) for o, g in zip(outs, grad_outputs) if o is not None and o.requires_grad]
        grads = torch.autograd.grad(
            [o for o, _ in pairs], need, [g for _, g in pairs], create_graph=True, allow_unused=True
        )
    found = iter(grads)
    return tuple(None if x is None or not x.requires_grad else next(found) for x in inputs)


def tape_scan(
    W: Tensor,
    NPE: Tensor | None,
    Q: Tensor | None,
    A: Tensor,
    KK: Tensor | None,
    PWK: Tensor | None,
    TT0: Tensor,
    KT0: Tensor | None,
    H0: Tensor,
    d: int,
    key_mode: str | None,
    shift: bool,
    use_kernel: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Run the tape recurrence (fast path).

    Args:
        W: `[T, BN, D]` written rows, ``p_w`` times (values ``[d]``, then keys ``[d]`` in
            "position" mode, ``D = 2d``).
        NPE: `[T, BN, 1]` ``-p_e`` or None (no erase).
        Q: `[T, BN, 1, d]` unit jump queries, or None (no jump: ``key_mode`` None).
        A: `[T, BN, 2, 4]` action weights (NO-OP, LEFT, RIGHT, JUMP) of the (read, write) heads;
            absent actions have weight 0.
        KK: `[T, BN, 1, d]` unit keys ("key" mode only).
        PWK: `[T, BN, 1]` ``p_w`` of the key-tape write ("key" mode; None = 1).
        TT0: `[BN, D, L]` value rows (then key rows in "position" mode).
        KT0: `[BN, L, d]` key tape of "key" mode, else None.
        H0: `[BN, 2, L]` (read, write) heads.
        d: cell size. key_mode: None, "position" (2022) or "key" (2023). shift: LEFT/RIGHT exist.
        use_kernel: use the C kernel when available (False = the PyTorch loop).
    Returns:
        raw reads `[T, BN, 1, d]` (``p_r`` not applied), final ``TT``, final ``KT`` (None unless
        "key" mode) and final heads.
    """
    outs = _TapeScan.apply(W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode, shift, use_kernel)
    if KT0 is None:
        R, TT, H = outs
        return R, TT, None, H
    return outs
