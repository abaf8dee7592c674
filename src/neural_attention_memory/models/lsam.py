"""LSAM, Long Short-term Attention Memory (docs/paper.md §3): an LSTM whose cell is a NAM memory per head.

One step, with input ``x_t`` and previous hidden ``h_{t-1}``::

    [q : k : v] = W_qkv [x_t : h_{t-1}] + b_qkv
    (p_r, p_w)  = sigmoid(W_rw [x_t : h_{t-1}] + b_rw)      # one gate pair per head
    M_t         = WR(M_{t-1}, mu(k), v, p_w, p_e)            # p_e = p_w (tied) by default
    h_t         = RD(M_t, mu(q), p_r)                        # per head, heads concatenated

:class:`LSAMCell` is the line-by-line form built on :func:`nam_read` / :func:`nam_write` (it is the
reference the fast path is tested against). :class:`LSAM` follows the library's sequence protocol
(``forward(x, state=None, padding_mask=None) -> (y, LSAMState)``, ``step``, ``init_state``) and is
the fast path: the input half of every projection is one matmul over the whole sequence, and
each step does one ``addmm`` plus the per-head work (tied erase folds into one rank-1 update
``M + p_w (v - M k) k^T``), inside an ``autograd.Function`` (:class:`_LSAMScan`) whose
hand-written backward rebuilds each previous memory instead of storing one per step. The per-head
work of a step runs in one call of a compiled C kernel (:mod:`._lsam_kernel`, one pass over each
memory) when it is available, else in a PyTorch loop (``use_kernel=False``; same results).
:meth:`LSAM.forward_reference` steps the cells and is differentiated by autograd.

Shapes: ``B`` batch, ``T`` time, ``H`` heads, ``d = hidden_size / H`` head size, memories
``[B, H, d, d]`` (value rows, key columns).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import nam_read, nam_write, unit_norm
from . import _lsam_kernel
from ._checks import check_padding_mask

__all__ = ["LSAM", "LSAMCell", "LSAMState"]


class LSAMState(NamedTuple):
    """State of :class:`LSAM` (batch first; ``L`` layers, ``D`` directions, ``H`` heads).

    Fields:
        M: `[B, L*D, H/D, d, d]` memories (value rows, key columns), layer-major then direction.
        h: `[B, L*D, hidden/D]` hidden states.

    :class:`LSAMCell` uses the same type for one layer: ``M [B, H, d, d]``, ``h [B, hidden]``.
    """

    M: Tensor
    h: Tensor


_EPS = 1e-6


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


class LSAMCell(nn.Module):
    """One LSAM step: ``(x_t, (M, h)) -> (h_t, (M_t, h_t))``.

    Args:
        input_size: size of ``x_t``.
        hidden_size: size of ``h_t``; a multiple of ``num_heads`` (head size ``d``).
        num_heads: number of NAM memories ``H``, each ``[d, d]``.
        separate_erase: learn an erase gate ``p_e`` of its own instead of tying it to ``p_w``.
        bias: learn ``b_qkv`` and the gate biases.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_heads: int,
        separate_erase: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_int("input_size", input_size)
        _check_int("hidden_size", hidden_size)
        _check_int("num_heads", num_heads)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size: expected a multiple of num_heads={num_heads}, got {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.separate_erase = bool(separate_erase)
        self.num_gates = 3 if separate_erase else 2
        # Per head the projection emits [q (d) : k (d) : v (d) : gates (G)] contiguously, so one
        # view [B, H, 3d + G] slices every head's pieces without copies.
        self.proj_size = num_heads * (3 * self.head_dim + self.num_gates)
        self.input_proj = nn.Linear(input_size, self.proj_size, bias=bias)
        self.hidden_proj = nn.Linear(hidden_size, self.proj_size, bias=False)

    def init_state(self, batch: int, device=None, dtype=None) -> LSAMState:
        """Zero memories `[B, H, d, d]` and zero hidden `[B, hidden_size]`."""
        _check_int("batch", batch)
        p = self.input_proj.weight
        dtype, device = dtype or p.dtype, device or p.device
        M = torch.zeros(
            batch, self.num_heads, self.head_dim, self.head_dim, dtype=dtype, device=device
        )
        return LSAMState(M, torch.zeros(batch, self.hidden_size, dtype=dtype, device=device))

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """`[B, P]` -> q, k, v `[B, H, d]`, p_r, p_w `[B, H]`, p_e `[B, H]` or None."""
        d, H = self.head_dim, self.num_heads
        z = z.view(z.shape[0], H, 3 * d + self.num_gates)
        g = torch.sigmoid(z[..., 3 * d :])
        p_e = g[..., 2] if self.separate_erase else None
        return z[..., :d], z[..., d : 2 * d], z[..., 2 * d : 3 * d], g[..., 0], g[..., 1], p_e

    def forward(
        self, x_t: Tensor, state: LSAMState | None = None, pad_t: Tensor | None = None
    ) -> tuple[Tensor, LSAMState]:
        """One step, line by line with :func:`nam_write` and :func:`nam_read`.

        Args:
            x_t: `[B, input_size]`.
            state: ``(M [B, H, d, d], h [B, hidden_size])`` or None (zeros).
            pad_t: optional `[B]` bool, True where this step is padding: the state is kept and the
                output is zero.
        Returns:
            ``h_t [B, hidden_size]`` and the new state.
        """
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t: expected shape [B, {self.input_size}], got {got}")
        B = x_t.shape[0]
        M, h = self.init_state(B, dtype=x_t.dtype, device=x_t.device) if state is None else state
        if pad_t is not None:  # padded inputs are never read (not even a NaN times a zero gate)
            x_t = x_t.masked_fill(pad_t[:, None], 0)
        z = self.input_proj(x_t) + self.hidden_proj(h)
        q, k, v, p_r, p_w, p_e = self._split(z)
        if p_e is None:
            p_e = p_w  # the paper: erase tied to write
        if pad_t is not None:
            keep = (~pad_t).to(x_t.dtype)[:, None]
            p_r, p_w, p_e = p_r * keep, p_w * keep, p_e * keep
        M_t = nam_write(M, unit_norm(k), v, p_w, p_e)
        h_t = nam_read(M_t, unit_norm(q), p_r).reshape(B, self.hidden_size)
        h_carry = h_t if pad_t is None else torch.where(pad_t[:, None], h, h_t)
        return h_t, LSAMState(M_t, h_carry)


class _LSAMScan(torch.autograd.Function):
    """One direction of one LSAM layer over all steps, with a hand-written backward.

    Forward saves only per-step vectors (unit q/k, norms, gates, ``v - M k``, reads, previous
    hidden): `O(T B hidden)`, not a memory per step. Backward walks the steps in reverse and
    rebuilds each previous memory exactly from the next one, ``M_{t-1} = M_t - u k^T``, so
    training memory does not grow with ``T * d``. Every mat-vec is a row-vector @ matrix ``bmm``
    (several times faster on CPU BLAS than matrix @ column).
    """

    @staticmethod
    def forward(ctx, X, W, M0, h0, keep, H, d, G, reverse, kernel):
        # X [T, B, P] input projections, W [P, hidden], M0 [B, H, d, d], h0 [B, hidden],
        # keep [T, B] (1 = real token) or None, kernel: an LSAMKernel or None (PyTorch loop).
        ctx.shape = (X.shape[0], X.shape[1], H, d, G, reverse)
        ctx.kernel = kernel
        if kernel is not None:
            out, M, h, saved = _kernel_forward(kernel, X, W, M0, h0, keep, H, d, G, reverse)
            ctx.save_for_backward(X, M0, h0, W, keep, *saved)
            return out, M, h
        T, B, P = X.shape
        BH = B * H
        kh = _keep_heads(keep, H)
        M = M0.reshape(BH, d, d).clone()
        h = h0
        Wt = W.t()
        QK = X.new_empty(T, BH, 2, d)
        NRM = X.new_empty(T, BH, 2, 1)
        GR = X.new_empty(T, BH, 1, G)
        VV = X.new_empty(T, BH, 1, d)  # tied: v - M k; separate: v
        MK = X.new_empty(T, BH, 1, d) if G == 3 else None
        Y = X.new_empty(T, BH, 1, d)
        HP = X.new_empty(T, B, h0.shape[-1])
        out = X.new_empty(T, B, h0.shape[-1])
        for t in range(T - 1, -1, -1) if reverse else range(T):
            HP[t] = h
            z = torch.addmm(X[t], h, Wt).view(BH, 1, P // H)
            qk = z[..., : 2 * d].view(BH, 2, d)
            nrm = torch.linalg.vector_norm(qk, dim=-1, keepdim=True)
            NRM[t] = nrm
            qk = torch.div(qk, nrm.clamp_min_(_EPS), out=QK[t])
            q, k = qk[:, 0:1], qk[:, 1:2]
            g = torch.sigmoid(z[..., 3 * d :], out=GR[t])
            if kh is not None:
                g = g * kh[t]
            Mk = torch.bmm(k, M.transpose(1, 2))  # (M k)^T
            if G == 2:
                uraw = torch.sub(z[..., 2 * d : 3 * d], Mk, out=VV[t])
                u = uraw * g[..., 1:2]
            else:
                VV[t] = z[..., 2 * d : 3 * d]
                MK[t] = Mk
                u = VV[t] * g[..., 1:2] - Mk * g[..., 2:3]
            M.addcmul_(u.transpose(1, 2), k)  # M + u k^T (rank-1: elementwise beats bmm)
            y = torch.bmm(q, M.transpose(1, 2), out=Y[t])
            h_t = torch.mul(y, g[..., 0:1]).view(B, -1)
            out[t] = h_t
            h = h_t if kh is None else torch.where(kh[t].view(B, H)[:, :1] > 0, h_t, h)
        ctx.save_for_backward(X, M0, h0, W, keep, M, QK, NRM, GR, VV, MK, Y, HP)
        return out, M.view(B, H, d, d), h

    @staticmethod
    def backward(ctx, d_out, d_MT, d_hT):
        X, M0, h0, W, keep = ctx.saved_tensors[:5]
        saved = ctx.saved_tensors[5:]
        T, B, H, d, G, reverse = ctx.shape
        d_out = X.new_zeros(T, B, H * d) if d_out is None else d_out
        d_MT = torch.zeros_like(M0) if d_MT is None else d_MT
        d_hT = torch.zeros_like(h0) if d_hT is None else d_hT
        if torch.is_grad_enabled():
            # create_graph=True: the gradient must itself be differentiable. Recompute through the
            # autograd twin, whose graph is exact to any order.
            inputs = (X, W, M0, h0)
            with torch.enable_grad():
                outs = _lsam_scan_autograd(X, W, M0, h0, _keep_heads(keep, H), H, d, G, reverse)
                need = [t for t in inputs if t.requires_grad]
                grads = iter(
                    torch.autograd.grad(outs, need, (d_out, d_MT, d_hT), create_graph=True)
                )
            return (*(next(grads) if t.requires_grad else None for t in inputs), *[None] * 6)
        if ctx.kernel is not None:
            grads = _kernel_backward(
                ctx.kernel, W, keep, saved, d_out, d_MT, d_hT, H, d, G, reverse
            )
            return (*grads, *[None] * 6)
        M_T, QK, NRM, GR, VV, MK, Y, HP = saved
        keep = _keep_heads(keep, H)
        BH = B * H
        M = M_T.clone()
        dM = d_MT.reshape(BH, d, d).clone()
        dh = d_hT
        dZ = d_out.new_empty(T, B, W.shape[0])
        # Per-step factors computed once for all steps: sigmoid slopes, clamped norms, live norms.
        SLOPE = GR * (1 - GR)
        NRMC = NRM.clamp_min(_EPS)
        LIVE = (NRM > _EPS).to(NRM.dtype)
        for t in range(T) if reverse else range(T - 1, -1, -1):
            kb = None if keep is None else keep[t].view(B, H)[:, :1]  # [B, 1]
            dht = d_out[t] + (dh if kb is None else dh * kb)
            dpass = None if kb is None else dh * (1 - kb)  # padding: h_{t-1} carried through
            dht = dht.view(BH, 1, d)
            qk = QK[t]
            q, k = qk[:, 0:1], qk[:, 1:2]
            graw = GR[t]
            g = graw if keep is None else graw * keep[t]
            p_r, p_w = g[..., 0:1], g[..., 1:2]
            # h_t = p_r * y, y = (M_t q)^T
            dp_r = (dht * Y[t]).sum(-1, keepdim=True)
            dy = dht * p_r
            dq = torch.bmm(dy, M)
            dM.addcmul_(dy.transpose(1, 2), q)
            # M_t = M_{t-1} + u k^T
            if G == 2:
                u = VV[t] * p_w
            else:
                p_e = g[..., 2:3]
                u = VV[t] * p_w - MK[t] * p_e
            du = torch.bmm(k, dM.transpose(1, 2))
            dk = torch.bmm(u, dM)
            M.addcmul_(u.transpose(1, 2), k, value=-1)  # rebuild M_{t-1}
            dv = du * p_w
            if G == 2:  # u = p_w (v - M k)
                dgate = [dp_r, (du * VV[t]).sum(-1, keepdim=True)]
                dMk = -dv
            else:  # u = p_w v - p_e M k
                dgate = [
                    dp_r,
                    (du * VV[t]).sum(-1, keepdim=True),
                    -(du * MK[t]).sum(-1, keepdim=True),
                ]
                dMk = -p_e * du
            dM.addcmul_(dMk.transpose(1, 2), k)
            dk = torch.baddbmm(dk, dMk, M)
            # unit norm: a -> a / max(|a|, eps); written straight into this step's rows of dZ
            dz = dZ[t].view(BH, 1, -1)
            dqk = torch.cat([dq, dk], 1)
            dot = (dqk * qk).sum(-1, keepdim=True) * LIVE[t]
            torch.div(dqk - qk * dot, NRMC[t], out=dz[..., : 2 * d].view(BH, 2, d))
            dz[..., 2 * d : 3 * d] = dv
            dg = torch.cat(dgate, -1)
            if keep is not None:
                dg = dg * keep[t]
            torch.mul(dg, SLOPE[t], out=dz[..., 3 * d :])
            dh = dZ[t] @ W
            if dpass is not None:
                dh = dh + dpass
        dW = dZ.view(T * B, -1).t() @ HP.view(T * B, -1)
        return dZ, dW, dM.view(B, H, d, d), dh, *[None] * 6


def _lsam_scan_autograd(X, W, M0, h0, keep, H, d, G, reverse):
    """:class:`_LSAMScan`'s math out of place, differentiated by autograd (any order)."""
    T, B, P = X.shape
    BH = B * H
    M = M0.reshape(BH, d, d)
    h = h0
    outs: list[Tensor] = [X.new_empty(0)] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        z = (X[t] + h @ W.t()).view(BH, 1, P // H)
        qk = z[..., : 2 * d].view(BH, 2, d)
        qk = qk / torch.linalg.vector_norm(qk, dim=-1, keepdim=True).clamp_min(_EPS)
        q, k = qk[:, 0:1], qk[:, 1:2]
        g = torch.sigmoid(z[..., 3 * d :])
        if keep is not None:
            g = g * keep[t]
        Mk = k @ M.transpose(1, 2)
        v = z[..., 2 * d : 3 * d]
        u = (v - Mk) * g[..., 1:2] if G == 2 else v * g[..., 1:2] - Mk * g[..., 2:3]
        M = M + u.transpose(1, 2) * k
        h_t = ((q @ M.transpose(1, 2)) * g[..., 0:1]).view(B, -1)
        outs[t] = h_t
        h = h_t if keep is None else torch.where(keep[t].view(B, H)[:, :1] > 0, h_t, h)
    return torch.stack(outs), M.view(B, H, d, d), h


def _keep_heads(keep: Tensor | None, H: int) -> Tensor | None:
    """`[T, B]` -> `[T, B*H, 1, 1]` (the PyTorch loop's layout: one row per head)."""
    return None if keep is None else keep.repeat_interleave(H, dim=1)[..., None, None]


def _kernel_forward(kernel, X, W, M0, h0, keep, H, d, G, reverse):
    """:class:`_LSAMScan`'s forward with the per-head work of each step in C (``_lsam_kernel.c``).

    Per step: ``z = X_t + h_{t-1} W^T`` (one ``addmm``), then one C call that updates ``M`` and
    writes the step's output, the carried hidden state and the saved vectors straight into their
    `[T, ...]` buffers. ``HP [T + 1, B, hidden]`` holds every hidden state: ``HP[t]`` (forward;
    ``HP[t + 1]`` reversed) is the one before step ``t``.
    """
    T, B, P = X.shape
    BH, hid = B * H, H * d
    X = X.contiguous()
    M = M0.reshape(BH, d, d).clone(memory_format=torch.contiguous_format)
    new = X.new_empty
    QK, NRM, GR = new(T, BH, 2, d), new(T, BH, 2), new(T, BH, G)
    VV, MK, Y = new(T, BH, d), new(T, BH, d) if G == 3 else None, new(T, BH, d)
    HP, out, Z = new(T + 1, B, hid), new(T, B, hid), new(B, P)
    HP[T if reverse else 0] = h0
    Wt = W.t()
    fn = kernel.forward_step(X.dtype)
    es = X.element_size()

    def ptr(x, t, per):  # address of row block t of x (0 for a missing buffer)
        return 0 if x is None else x.data_ptr() + t * per * es

    step = BH * d
    for t in range(T - 1, -1, -1) if reverse else range(T):
        hi, ho = (t + 1, t) if reverse else (t, t + 1)  # HP rows before / after step t
        torch.addmm(X[t], HP[hi], Wt, out=Z)
        fn(BH, H, d, G, Z.data_ptr(), ptr(keep, t, B), M.data_ptr(),
           ptr(QK, t, 2 * step), ptr(NRM, t, 2 * BH), ptr(GR, t, G * BH), ptr(VV, t, step),
           ptr(MK, t, step), ptr(Y, t, step), ptr(out, t, step), ptr(HP, hi, step),
           ptr(HP, ho, step))  # fmt: skip
    h = HP[0] if reverse else HP[T]
    return out, M.view(B, H, d, d), h, (M, QK, NRM, GR, VV, MK, Y, HP)


def _kernel_backward(kernel, W, keep, saved, d_out, d_MT, d_hT, H, d, G, reverse):
    """Gradients of :func:`_kernel_forward` w.r.t. ``(X, W, M0, h0)``: per step (in reverse) one C
    call (rebuilds ``M_{t-1}``, accumulates ``dM``, writes ``dz`` into ``dZ[t]``), then
    ``dh_{t-1} = dz W`` (plus, on padded rows, the carried ``dh``)."""
    M_T, QK, NRM, GR, VV, MK, Y, HP = saved
    T, B, P = HP.shape[0] - 1, HP.shape[1], W.shape[0]
    BH = B * H
    M = M_T.clone()
    dM = d_MT.reshape(BH, d, d).clone(memory_format=torch.contiguous_format)
    dh = d_hT.clone(memory_format=torch.contiguous_format)
    d_out = d_out.contiguous()
    dZ = d_out.new_empty(T, B, P)
    dpass = None if keep is None else torch.empty_like(dh)
    fn = kernel.backward_step(d_out.dtype)
    es = d_out.element_size()

    def ptr(x, t, per):
        return 0 if x is None else x.data_ptr() + t * per * es

    step = BH * d
    for t in range(T) if reverse else range(T - 1, -1, -1):
        rc = fn(BH, H, d, G, ptr(keep, t, B), ptr(d_out, t, step), dh.data_ptr(),
                ptr(QK, t, 2 * step), ptr(NRM, t, 2 * BH), ptr(GR, t, G * BH), ptr(VV, t, step),
                ptr(MK, t, step), ptr(Y, t, step), M.data_ptr(), dM.data_ptr(), ptr(dZ, t, B * P),
                ptr(dpass, 0, 0))  # fmt: skip
        if rc:
            raise MemoryError("LSAM step kernel: out of memory for its scratch buffer")
        if dpass is None:
            torch.mm(dZ[t], W, out=dh)
        else:
            torch.addmm(dpass, dZ[t], W, out=dh)
    hs = HP[1:] if reverse else HP[:T]  # the hidden state each step read
    dW = dZ.view(T * B, P).t() @ hs.reshape(T * B, -1)
    return dZ, dW, dM.view(B, H, d, d), dh


def _fast_direction(
    cell: LSAMCell,
    X: Tensor,
    M: Tensor,
    h: Tensor,
    keep: Tensor | None,
    reverse: bool,
    use_kernel: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one direction of one layer over precomputed input projections.

    Args:
        X: `[T, B, P]` input projections (time-major, bias included).
        M: `[B, H, d, d]`; h: `[B, hidden]`.
        keep: `[T, B]` 1.0 on real tokens, 0.0 on padding, or None.
        use_kernel: run each step's per-head work in the C kernel when it is available (float32 /
            float64 CPU tensors), else the PyTorch loop.
    Returns:
        ``out [T, B, hidden]`` (zero on padding), final ``M``, final ``h``.
    """
    H, d, G = cell.num_heads, cell.head_dim, cell.num_gates
    keep = None if keep is None else keep.contiguous()  # the kernel indexes it as [T, B]
    kernel = _lsam_kernel.get() if use_kernel else None
    if kernel is not None and not all(kernel.supports(t) for t in (X, M, h)):
        kernel = None
    return _LSAMScan.apply(X, cell.hidden_proj.weight, M, h, keep, H, d, G, reverse, kernel)


class LSAM(nn.Module):
    """A stack of LSAM layers: ``forward(x, state=None, padding_mask=None) -> (y, LSAMState)``.

    Args:
        input_size: features of ``x``.
        hidden_size: output features; with ``bidirectional`` each direction gets half of the size
            and half of the heads (outputs are concatenated, so the output is still
            ``hidden_size``, unlike ``nn.LSTM``'s ``2 * hidden_size``).
        num_heads: heads per layer (over both directions).
        num_layers: stacked layers; layer ``l > 0`` reads layer ``l - 1``'s output.
        bidirectional: half the heads run backwards (docs/paper.md §3).
        batch_first: ``x`` is `[B, T, F]` (True) or `[T, B, F]` (False).
        dropout: dropout on the outputs of every layer but the last.
        separate_erase: learn a separate erase gate instead of tying it to the write gate.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_heads: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = True,
        dropout: float = 0.0,
        separate_erase: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_int("input_size", input_size)
        _check_int("hidden_size", hidden_size)
        _check_int("num_heads", num_heads)
        _check_int("num_layers", num_layers)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout}")
        D = 2 if bidirectional else 1
        if num_heads % D or hidden_size % num_heads:
            raise ValueError(
                f"num_heads, hidden_size: expected num_heads divisible by {D} (directions) and "
                f"hidden_size divisible by num_heads, got num_heads={num_heads}, "
                f"hidden_size={hidden_size}"
            )
        self.input_size, self.hidden_size, self.num_heads = input_size, hidden_size, num_heads
        self.num_layers, self.bidirectional, self.batch_first = (
            num_layers,
            bool(bidirectional),
            batch_first,
        )
        self.num_directions = D
        self.dropout = float(dropout)
        self.cells = nn.ModuleList(
            LSAMCell(
                input_size if layer == 0 else hidden_size,
                hidden_size // D,
                num_heads // D,
                separate_erase=separate_erase,
                bias=bias,
            )
            for layer in range(num_layers)
            for _ in range(D)
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def init_state(self, batch: int, device=None, dtype=None) -> LSAMState:
        """Zero state: ``M [B, L*D, H/D, d, d]``, ``h [B, L*D, hidden/D]``."""
        _check_int("batch", batch)
        p = self.cells[0].input_proj.weight
        dtype, device = dtype or p.dtype, device or p.device
        want_M, want_h = self._state_shapes(batch)
        return LSAMState(
            torch.zeros(want_M, dtype=dtype, device=device),
            torch.zeros(want_h, dtype=dtype, device=device),
        )

    # -- validation -------------------------------------------------------------------------------

    def _check_x(self, x: object, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
        layout = "[B, T, F]" if self.batch_first else "[T, B, F]"
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"{name}: expected shape {layout} with F = input_size = {self.input_size}, "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"{name}: expected a non-empty batch and sequence, got {tuple(x.shape)}"
            )
        return x

    def _check_state(self, state: object, B: int, ref: Tensor) -> LSAMState:
        if state is None:
            return self.init_state(B, ref.device, ref.dtype)
        if not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(
                f"state: expected an LSAMState (M, h) or None, got {type(state).__name__}"
            )
        M, h = state
        want_M, want_h = self._state_shapes(B)
        if not isinstance(M, Tensor) or tuple(M.shape) != want_M:
            got = tuple(M.shape) if isinstance(M, Tensor) else type(M).__name__
            raise ValueError(f"state.M: expected shape {want_M} ([B, L*D, H/D, d, d]), got {got}")
        if not isinstance(h, Tensor) or tuple(h.shape) != want_h:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"state.h: expected shape {want_h} ([B, L*D, hidden/D]), got {got}")
        if M.dtype != ref.dtype or h.dtype != ref.dtype:
            raise TypeError(
                f"state: expected dtype {ref.dtype} (same as x), got {M.dtype}, {h.dtype}"
            )
        return LSAMState(M, h)

    def _state_shapes(self, B: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        LD, D, d = self.num_layers * self.num_directions, self.num_directions, self.head_dim
        return (B, LD, self.num_heads // D, d, d), (B, LD, self.hidden_size // D)

    # -- forward ----------------------------------------------------------------------------------

    def _run(
        self, x: Tensor, state: object, padding_mask: object, reference: bool, use_kernel=True
    ):
        x = self._check_x(x)
        xs = x.transpose(0, 1) if self.batch_first else x  # [T, B, F]
        T, B = xs.shape[0], xs.shape[1]
        pad = check_padding_mask(padding_mask, B, T)
        M0, h0 = self._check_state(state, B, x)
        keep = None if pad is None else (~pad).t().to(x.dtype).contiguous()  # [T, B]
        if pad is not None:  # padded inputs are never read (not even a NaN times a zero gate)
            xs = xs.masked_fill(pad.t()[..., None], 0)
        D = self.num_directions
        Ms, hs = [], []
        inp = xs
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                i = layer * D + direction
                cell = self.cells[i]
                if reference:
                    st = LSAMState(M0[:, i], h0[:, i])
                    ys: list[Tensor] = [x.new_empty(0)] * T
                    for t in range(T - 1, -1, -1) if direction == 1 else range(T):
                        ys[t], st = cell(inp[t], st, None if pad is None else pad[:, t])
                    out, M, h = torch.stack(ys), st.M, st.h
                else:
                    X = cell.input_proj(inp)  # [T, B, P]: the input half for every step at once
                    out, M, h = _fast_direction(
                        cell, X, M0[:, i], h0[:, i], keep, direction == 1, use_kernel
                    )
                outs.append(out)
                Ms.append(M)
                hs.append(h)
            inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = nn.functional.dropout(inp, self.dropout, training=True)
        out = inp.transpose(0, 1) if self.batch_first else inp
        return out, LSAMState(torch.stack(Ms, 1), torch.stack(hs, 1))

    def forward(
        self,
        x: Tensor,
        state: LSAMState | None = None,
        padding_mask: Tensor | None = None,
        use_kernel: bool = True,
    ) -> tuple[Tensor, LSAMState]:
        """Run the whole sequence (fast path).

        Args:
            x: `[B, T, input_size]` (or `[T, B, input_size]` when ``batch_first=False``).
            state: an :class:`LSAMState` from a previous call or :meth:`init_state`; None = zeros.
            padding_mask: `[B, T]` bool, True = padding (anywhere in the sequence): padded steps
                write nothing, keep the state and output zeros.
            use_kernel: run each step's per-head work in the compiled C kernel
                (:mod:`._lsam_kernel`) when it is available; False runs the PyTorch loop (same
                results).
        Returns:
            ``output`` `[B, T, hidden_size]` (time-major if not ``batch_first``) and the final
            state (after each sequence's last real token).
        """
        return self._run(x, state, padding_mask, reference=False, use_kernel=use_kernel)

    def forward_reference(
        self, x: Tensor, state: LSAMState | None = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, LSAMState]:
        """The same as :meth:`forward`, stepping :class:`LSAMCell` line by line (the slow twin)."""
        return self._run(x, state, padding_mask, reference=True)

    def step(self, x_t: Tensor, state: LSAMState | None = None) -> tuple[Tensor, LSAMState]:
        """One token through every layer (unidirectional only).

        Args:
            x_t: `[B, input_size]`.
            state: an :class:`LSAMState` or None (zeros).
        Returns:
            ``out_t [B, hidden_size]`` and the new state.
        """
        if self.bidirectional:
            raise NotImplementedError(
                "LSAM(bidirectional=True).step: half of the heads read the sequence backwards "
                "from its end, so the model cannot run token by token"
            )
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t: expected shape [B, {self.input_size}], got {got}")
        M0, h0 = self._check_state(state, x_t.shape[0], x_t)
        Ms, hs = [], []
        inp = x_t
        for layer, cell in enumerate(self.cells):
            inp, (M, h) = cell(inp, LSAMState(M0[:, layer], h0[:, layer]))
            Ms.append(M)
            hs.append(h)
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = nn.functional.dropout(inp, self.dropout, training=True)
        return inp, LSAMState(torch.stack(Ms, 1), torch.stack(hs, 1))
