"""NAM-TM, the NAM Turing Machine (PAPER.md §4).

A tape of ``L`` cells is a NAM memory whose keys are positions, ``T = sum_i v_i e_i^T`` `[d, L]`.
Per tape a read head ``H_r`` and a write head ``H_w`` (soft positions `[L]`, one-hot at cell 0 at the
start) move by a mix of NO-OP / LEFT / RIGHT (circular shift by one cell) / JUMP (a key-tape look-up).
Per step and tape, in the order of the authors' released code::

    h_w, h_r = mu(H_w), mu(H_r)                    # heads are unit keys
    T  <- WR(T, h_w, v, p_w, p_e)                  # value tape, v = W_v x
    r   = RD(T, h_r, p_r)                          # read (after the write)
    K  <- WR(K, h_w, mu(W_k x), p_w, p_e)          # key tape, written alongside
    H_jump = RD(K^T, q_jump, 1)                    # K^T is a jump table: key -> position
    H  <- a_noop H + a_left roll^-1(H) + a_right roll(H) + a_jump H_jump   (each head)

The controller is a unidirectional LSTM over the input only (it never sees reads), so every gate,
action, value, key and jump query is computed for all steps before the tape loop. The output is a
projection of the reads of all tapes.

Fast path (:meth:`NAMTuringMachine.forward`): batch and tapes are folded into one batch dim; the
value and key tapes are one tensor `[B*N, 2d, L]` so both writes are one mat-vec (``T h_w``) and one
in-place rank-1 update; head moves are one ``cat`` (circular padding by one cell) and one small
matmul over the three shift windows; read gates are applied after the loop. The tape loop is an
``autograd.Function`` (:class:`_TapeScan`) whose backward rebuilds each previous tape from the next
one, so no per-step tape is stored. :meth:`NAMTuringMachine.forward_reference` is the slow twin: the
controller stepped token by token, a Python loop over tapes, :func:`nam_write` / :func:`nam_read`
and ``torch.roll`` line by line, differentiated by autograd.

Shapes: ``B`` batch, ``T`` time, ``N`` tapes, ``d`` head (cell) size, ``L`` tape length, ``A``
actions. Value/key tapes `[B, N, d, L]`, heads `[B, N, 2, L]` (index 0 = read head, 1 = write head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..functional import nam_read, nam_write, unit_norm
from ._checks import check_padding_mask

__all__ = ["ACTIONS", "NAMTMState", "NAMTMStepState", "NAMTuringMachine"]

ACTIONS: tuple[str, ...] = ("noop", "left", "right", "jump")

NAMTMState = tuple[Tensor, Tensor, Tensor]
"""``(tape [B, N, d, L], key_tape [B, N, d, L], heads [B, N, 2, L])``."""

NAMTMStepState = tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]
"""``(tape, key_tape, heads, (h, c))``: the tapes, heads and the controller LSTM's state."""

_EPS = 1e-6


class _Plan:
    """Everything that does not depend on the tape, for all steps (`[B, T, N, ...]`)."""

    __slots__ = ("a", "k", "p_e", "p_r", "p_w", "q", "v")

    def __init__(self, **kw: Tensor | None) -> None:
        for name in self.__slots__:
            setattr(self, name, kw.get(name))


def _shift_windows(H: Tensor) -> Tensor:
    """`[BN, 2, L]` -> `[BN, 2, L, 3]`: for cell j the circular window (H[j-1], H[j], H[j+1])."""
    return torch.cat([H[..., -1:], H, H[..., :1]], dim=-1).unfold(-1, 3, 1)


class _TapeScan(torch.autograd.Function):
    """The per-step tape recurrence of NAM-TM with a hand-written backward.

    Inputs (time-major, batch and tapes folded into ``BN``): written rows ``W [T, BN, D]``
    (``p_w`` times values, then keys; ``D = d`` or ``2d``), ``-p_e`` `[T, BN, 1]` or None, unit jump
    queries `[T, BN, 1, d]` or None, head moves (shift weights `[T, BN, 2, 3, 1]` for
    (RIGHT, NO-OP, LEFT), or NO-OP weights `[T, BN, 2, 1]`), JUMP weights `[T, BN, 2, 1]` or None,
    tapes `[BN, D, L]` (value rows then key rows), heads `[BN, 2, L]`.
    Outputs: raw reads `[T, BN, 1, d]` (``p_r`` is applied by the caller), final tapes and heads.

    Forward keeps per step only vectors of size ``L`` or ``D`` (heads, their norms, ``T h_w``, the
    jump target); backward rebuilds each previous tape exactly from the next one,
    ``T_{t-1} = T_t - u h_w^T``, so autograd memory does not grow with ``T * D * L``.
    """

    @staticmethod
    def forward(ctx, W, NPE, Q, MV, AJ, TT0, H0, d):
        T, BN, D = W.shape
        shift = MV.dim() == 5
        TT = TT0.clone()
        H = H0
        R = W.new_empty(T, BN, 1, d)
        HS = W.new_empty(T, BN, 2, H0.shape[-1])
        NR = W.new_empty(T, BN, 2, 1)
        THW = None if NPE is None else W.new_empty(T, BN, 1, D)
        J = None if Q is None else W.new_empty(T, BN, 1, H0.shape[-1])
        for t in range(T):
            HS[t] = H
            nrm = torch.linalg.vector_norm(H, dim=-1, keepdim=True, out=NR[t])
            hn = H / nrm.clamp_min(_EPS)
            hr, hw = hn[:, 0:1], hn[:, 1:2]  # [BN, 1, L] rows
            # Mat-vecs as row-vector @ matrix^T: several times faster than matrix @ column on CPU.
            if NPE is None:
                u = W[t]
            else:  # WR: T + (p_w w - p_e T h_w) h_w^T
                thw = torch.bmm(hw, TT.transpose(1, 2), out=THW[t])
                u = torch.addcmul(W[t], NPE[t], thw.squeeze(1))
            TT.addcmul_(u.unsqueeze(-1), hw)  # rank-1: elementwise beats bmm
            torch.bmm(hr, TT[:, :d].transpose(1, 2), out=R[t])
            if shift:
                Hn = torch.matmul(_shift_windows(H), MV[t]).squeeze(-1)
            else:
                Hn = H * MV[t]
            if Q is not None:
                j = torch.bmm(Q[t], TT[:, d:], out=J[t])  # (K^T q)^T  [BN, 1, L]
                Hn.addcmul_(AJ[t], j)
            H = Hn
        ctx.save_for_backward(W, NPE, Q, MV, AJ, TT, HS, NR, THW, J)
        ctx.d = d
        return R, TT, H

    @staticmethod
    @once_differentiable  # first-order only: a double backward raises instead of lying
    def backward(ctx, dR, dTT_T, dH_T):
        W, NPE, Q, MV, AJ, TT_T, HS, NR, THW, J = ctx.saved_tensors
        d = ctx.d
        T = W.shape[0]
        shift = MV.dim() == 5
        TT = TT_T.clone()
        dTT = dTT_T.clone()
        dH = dH_T
        dW = torch.empty_like(W)
        dNPE = None if NPE is None else torch.empty_like(NPE)
        dQ = None if Q is None else torch.empty_like(Q)
        dMV = torch.empty_like(MV)
        dAJ = None if AJ is None else torch.empty_like(AJ)
        for t in range(T - 1, -1, -1):
            H, nrm = HS[t], NR[t]
            hn = H / nrm.clamp_min(_EPS)
            hr, hw = hn[:, 0:1], hn[:, 1:2]
            # H' = moves(H) + a_jump j, j = q K^T (K after this step's write)
            if Q is not None:
                dAJ[t] = (dH * J[t]).sum(-1, keepdim=True)
                dj = (dH * AJ[t]).sum(1, keepdim=True)  # [BN, 1, L]
                dQ[t] = torch.bmm(dj, TT[:, d:].transpose(1, 2))
                dTT[:, d:].addcmul_(Q[t].transpose(1, 2), dj)
            if shift:
                # d weights = <dH', windows(H)>; dH = windows(dH') . (LEFT, NO-OP, RIGHT) weights
                dMV[t] = torch.matmul(dH.unsqueeze(-2), _shift_windows(H)).transpose(-1, -2)
                dH_prev = torch.matmul(_shift_windows(dH), MV[t].flip(-2)).squeeze(-1)
            else:
                dMV[t] = (dH * H).sum(-1, keepdim=True)
                dH_prev = dH * MV[t]
            # r = h_r V^T (V = value rows after this step's write)
            dhr = torch.bmm(dR[t], TT[:, :d])
            dTT[:, :d].addcmul_(dR[t].transpose(1, 2), hr)
            # T_t = T_{t-1} + u h_w^T, u = W + (-p_e) T_{t-1} h_w
            u = W[t] if NPE is None else torch.addcmul(W[t], NPE[t], THW[t].squeeze(1))
            du = torch.bmm(hw, dTT.transpose(1, 2))  # [BN, 1, D]
            dhw = torch.bmm(u.unsqueeze(1), dTT)  # [BN, 1, L]
            TT.addcmul_(u.unsqueeze(-1), hw, value=-1)  # rebuild T_{t-1}
            dW[t] = du.squeeze(1)
            if NPE is not None:
                dNPE[t] = (du * THW[t]).sum(-1)
                dthw = du * NPE[t].unsqueeze(-1)  # [BN, 1, D]
                dhw = dhw + torch.bmm(dthw, TT)
                dTT.addcmul_(dthw.transpose(1, 2), hw)
            # unit heads: h = H / max(|H|, eps)
            dhn = torch.cat([dhr, dhw], 1)
            dot = (dhn * hn).sum(-1, keepdim=True) * (nrm > _EPS)
            dH = dH_prev + (dhn - hn * dot) / nrm.clamp_min(_EPS)
        return dW, dNPE, dQ, dMV, dAJ, dTT, dH, None


class NAMTuringMachine(nn.Module):
    """One NAM-TM layer: ``x [B, T, dim] -> outputs [B, T, dim]`` plus the final tapes and heads.

    Args:
        dim: input/output width and the controller LSTM's hidden size.
        num_tapes: tapes ``N`` running in parallel (the paper's "heads").
        head_dim: cell size ``d`` of every tape (values, keys and jump queries).
        tape_length: default number of cells ``L`` (no parameter depends on it: change the
            attribute, or pass ``tape_length=`` or tapes of another length to :meth:`forward`).
        actions: head actions, a subset of ``("noop", "left", "right", "jump")`` containing
            ``"noop"`` (used to freeze heads on padding). The paper's ablations: no JUMP =
            ``("noop", "left", "right")``; only JUMP = ``("noop", "jump")``.
        rw_prob: learn read/write probabilities; False fixes ``p_r = p_w = 1`` (ablation).
        erase: learn an erase probability ``p_e``; False fixes ``p_e = 0`` (ablation).
    """

    def __init__(
        self,
        dim: int,
        num_tapes: int,
        head_dim: int,
        tape_length: int = 32,
        actions: tuple[str, ...] | list[str] = ACTIONS,
        rw_prob: bool = True,
        erase: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_tapes", num_tapes), ("head_dim", head_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        self._check_tape_length(tape_length)
        actions = tuple(actions) if isinstance(actions, (tuple, list)) else actions
        if (
            not isinstance(actions, tuple)
            or not actions
            or any(a not in ACTIONS for a in actions)
            or len(set(actions)) != len(actions)
            or "noop" not in actions
        ):
            raise ValueError(
                f"actions: expected distinct names from {ACTIONS} including 'noop', got {actions!r}"
            )
        self.dim, self.num_tapes, self.head_dim = dim, num_tapes, head_dim
        self.tape_length = tape_length
        self.actions = tuple(a for a in ACTIONS if a in actions)  # canonical order
        self.rw_prob, self.erase = bool(rw_prob), bool(erase)
        self.jump = "jump" in self.actions
        self.shift = "left" in self.actions or "right" in self.actions
        N, d, A = num_tapes, head_dim, len(self.actions)
        self.num_gates = 2 * self.rw_prob + self.erase
        # Per tape the controller emits [gates (G) : read-head actions (A) : write-head actions (A)
        # : jump query (d, only with JUMP)].
        self.ctrl_size = self.num_gates + 2 * A + (d if self.jump else 0)
        self.controller = nn.LSTM(dim, dim, batch_first=True)
        self.ctrl_proj = nn.Linear(dim, N * self.ctrl_size)
        self.value_proj = nn.Linear(dim, N * d)
        # Keys only feed the JUMP look-up: without JUMP there is no key tape to write.
        self.key_proj = nn.Linear(dim, N * d) if self.jump else None
        self.out_proj = nn.Linear(N * d, dim)

    # -- state ------------------------------------------------------------------------------------

    @staticmethod
    def _check_tape_length(tape_length: object) -> int:
        if isinstance(tape_length, bool) or not isinstance(tape_length, int) or tape_length < 1:
            raise ValueError(f"tape_length: expected an int >= 1, got {tape_length!r}")
        return tape_length

    def init_state(
        self, batch: int, tape_length: int | None = None, *, dtype=None, device=None
    ) -> NAMTMState:
        """Blank tapes `[B, N, d, L]` and both heads one-hot at cell 0 `[B, N, 2, L]`."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
        L = self._check_tape_length(self.tape_length if tape_length is None else tape_length)
        p = self.out_proj.weight
        dtype, device = dtype or p.dtype, device or p.device
        N, d = self.num_tapes, self.head_dim
        tape = torch.zeros(batch, N, d, L, dtype=dtype, device=device)
        heads = torch.zeros(batch, N, 2, L, dtype=dtype, device=device)
        heads[..., 0] = 1.0
        return tape, tape.clone(), heads

    def _check_inputs(
        self, x: object, tape: object, heads: object, padding_mask: object, tape_length: object
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 3 or x.shape[2] != self.dim:
            raise ValueError(f"x: expected shape [B, T, dim={self.dim}], got {tuple(x.shape)}")
        B, T = x.shape[:2]
        if B == 0 or T == 0:
            raise ValueError(f"x: expected a non-empty batch and sequence, got {tuple(x.shape)}")
        N, d = self.num_tapes, self.head_dim
        if tape is None:
            L = self.tape_length if tape_length is None else tape_length
            vt, kt, h0 = self.init_state(B, L, dtype=x.dtype, device=x.device)
        else:
            if not (isinstance(tape, tuple) and len(tape) == 2):
                raise TypeError(
                    f"tape: expected a tuple (tape, key_tape) or None, got {type(tape).__name__}"
                )
            vt, kt = tape
            for name, t in (("tape[0]", vt), ("tape[1]", kt)):
                if not isinstance(t, Tensor) or t.dim() != 4 or tuple(t.shape[:3]) != (B, N, d):
                    got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                    raise ValueError(
                        f"{name}: expected shape [B, N, d, L] = ({B}, {N}, {d}, L), got {got}"
                    )
                if t.dtype != x.dtype:
                    raise TypeError(f"{name}: expected dtype {x.dtype} (same as x), got {t.dtype}")
            if kt.shape != vt.shape:
                raise ValueError(
                    f"tape[1]: expected the shape of tape[0] {tuple(vt.shape)}, got {tuple(kt.shape)}"
                )
            L = vt.shape[-1]
            if tape_length is not None and tape_length != L:
                raise ValueError(
                    f"tape_length: expected None or {L} (the given tapes' length), got {tape_length}"
                )
            h0 = None
        if heads is None:
            if h0 is None:
                h0 = self.init_state(B, L, dtype=x.dtype, device=x.device)[2]
        else:
            if not isinstance(heads, Tensor) or tuple(heads.shape) != (B, N, 2, L):
                got = tuple(heads.shape) if isinstance(heads, Tensor) else type(heads).__name__
                raise ValueError(f"heads: expected shape [B, N, 2, L] = {(B, N, 2, L)}, got {got}")
            if heads.dtype != x.dtype:
                raise TypeError(f"heads: expected dtype {x.dtype} (same as x), got {heads.dtype}")
            h0 = heads
        pad = check_padding_mask(padding_mask, B, T)
        return x, vt, kt, h0, pad

    # -- what does not depend on the tape ---------------------------------------------------------

    def _gates_actions(self, c: Tensor, x: Tensor, pad: Tensor | None) -> _Plan:
        """Controller outputs `c [B, T, dim]` and inputs `x` -> per-step plan `[B, T, N, ...]`."""
        B, T = c.shape[:2]
        N, d, A, G = self.num_tapes, self.head_dim, len(self.actions), self.num_gates
        z = self.ctrl_proj(c).view(B, T, N, self.ctrl_size)
        g = torch.sigmoid(z[..., :G])
        p_r = g[..., 0] if self.rw_prob else None
        p_w = g[..., 1] if self.rw_prob else None
        p_e = g[..., G - 1] if self.erase else None
        a = torch.softmax(z[..., G : G + 2 * A].view(B, T, N, 2, A), dim=-1)
        q = unit_norm(z[..., G + 2 * A :]) if self.jump else None
        v = self.value_proj(x).view(B, T, N, d)
        k = unit_norm(self.key_proj(x).view(B, T, N, d)) if self.key_proj is not None else None
        if pad is not None:
            keep = (~pad).to(c.dtype)[:, :, None]  # [B, T, 1]
            ones = torch.ones(B, T, N, dtype=c.dtype, device=c.device)
            p_r = (ones if p_r is None else p_r) * keep
            p_w = (ones if p_w is None else p_w) * keep
            p_e = None if p_e is None else p_e * keep
            # Padded steps: heads do NO-OP (actions are in canonical order, "noop" first).
            noop = torch.zeros(A, dtype=c.dtype, device=c.device)
            noop[0] = 1.0
            a = torch.where(pad[:, :, None, None, None], noop, a)
        return _Plan(a=a, k=k, p_e=p_e, p_r=p_r, p_w=p_w, q=q, v=v)

    # -- forward ----------------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        tape: tuple[Tensor, Tensor] | None = None,
        heads: Tensor | None = None,
        padding_mask: Tensor | None = None,
        tape_length: int | None = None,
        *,
        controller_state: tuple[Tensor, Tensor] | None = None,
        return_controller_state: bool = False,
    ) -> tuple[Tensor, NAMTMState] | tuple[Tensor, NAMTMState, tuple[Tensor, Tensor]]:
        """Run the sequence (fast path).

        Args:
            x: `[B, T, dim]`.
            tape: ``(tape, key_tape)`` `[B, N, d, L]` each, e.g. a previous layer's final tapes
                (stacked layers hand the tape on); None = blank tapes of ``tape_length`` cells.
            heads: `[B, N, 2, L]` (read, write) or None (one-hot at cell 0).
            padding_mask: `[B, T]` bool, True = padding (anywhere): padded steps read, write and
                move nothing and do not advance the controller; their outputs are to be ignored.
            tape_length: cells of blank tapes (default ``self.tape_length``).
            controller_state: the controller LSTM's ``(h, c)`` `[1, B, dim]` each, to continue a
                sequence split in pieces (see :meth:`step`); None = zeros.
            return_controller_state: also return the controller's final ``(h, c)``.
        Returns:
            ``outputs [B, T, dim]`` and ``(tape, key_tape, heads)`` after the last step (after each
            sequence's last real token), then ``(h, c)`` if ``return_controller_state``.
        """
        x, vt, kt, H0, pad = self._check_inputs(x, tape, heads, padding_mask, tape_length)
        B, T = x.shape[:2]
        N, d, L = self.num_tapes, self.head_dim, vt.shape[-1]
        BN = B * N
        order = None
        if pad is not None and bool((pad[:, :-1] & ~pad[:, 1:]).any()):
            # Padding before a real token: padded steps are no-ops, so move the real tokens to the
            # front (stable) and run right-padded; outputs go back to their positions at the end.
            order = torch.sort(pad.to(torch.uint8), dim=1, stable=True).indices
            x = x.gather(1, order.unsqueeze(-1).expand_as(x))
            pad = pad.gather(1, order)
        c, hc = self._control(x, pad, controller_state)
        plan = self._gates_actions(c, x, pad)

        def tm(t: Tensor | None, *tail: int) -> Tensor | None:
            # [B, T, N, ...] -> time-major [T, B*N, ...], contiguous for cheap per-step slices.
            return None if t is None else t.transpose(0, 1).reshape(T, BN, *tail)

        # Written rows: values, then keys (only with JUMP), pre-scaled by p_w.
        w = plan.v if not self.jump else torch.cat([plan.v, plan.k], dim=-1)
        if plan.p_w is not None:
            w = w * plan.p_w.unsqueeze(-1)
        W = tm(w, w.shape[-1])  # [T, BN, D]
        neg_pe = None if plan.p_e is None else tm(-plan.p_e, 1)  # [T, BN, 1]
        Q = tm(plan.q, 1, d)  # [T, BN, 1, d]
        a = plan.a  # [B, T, N, 2, A]
        idx = {name: i for i, name in enumerate(self.actions)}
        zero = a.new_zeros(a.shape[:-1])
        if self.shift:
            # Windows of the circularly padded head are (H[j-1], H[j], H[j+1]), i.e. the sources of
            # RIGHT, NO-OP and LEFT for cell j.
            ws = torch.stack(
                [a[..., idx[n]] if n in idx else zero for n in ("right", "noop", "left")], dim=-1
            )
            WS = tm(ws, 2, 3, 1)  # [T, BN, 2, 3, 1]
        else:
            AN = tm(a[..., idx["noop"]], 2, 1)  # [T, BN, 2, 1]
        AJ = tm(a[..., idx["jump"]], 2, 1) if self.jump else None  # [T, BN, 2, 1]

        tapes = torch.cat([vt, kt], dim=-2) if self.jump else vt  # [B, N, D, L]
        moves = WS if self.shift else AN
        R, TT, Hd = _TapeScan.apply(
            W, neg_pe, Q, moves, AJ, tapes.reshape(BN, -1, L), H0.reshape(BN, 2, L), d
        )
        r = R.view(T, B, N, d).transpose(0, 1)  # [B, T, N, d]
        if plan.p_r is not None:
            r = r * plan.p_r.unsqueeze(-1)
        out = self.out_proj(r.reshape(B, T, N * d))
        if order is not None:
            out = out.gather(1, order.argsort(dim=1).unsqueeze(-1).expand_as(out))
        TT = TT.view(B, N, -1, L)
        vt_out = TT[:, :, :d]
        kt_out = TT[:, :, d:] if self.jump else kt
        state = (vt_out, kt_out, Hd.view(B, N, 2, L))
        return (out, state, hc) if return_controller_state else (out, state)

    def forward_reference(
        self,
        x: Tensor,
        tape: tuple[Tensor, Tensor] | None = None,
        heads: Tensor | None = None,
        padding_mask: Tensor | None = None,
        tape_length: int | None = None,
        *,
        controller_state: tuple[Tensor, Tensor] | None = None,
        return_controller_state: bool = False,
    ) -> tuple[Tensor, NAMTMState] | tuple[Tensor, NAMTMState, tuple[Tensor, Tensor]]:
        """The slow twin of :meth:`forward`: same arguments, same results, line by line."""
        x, vt, kt, H0, pad = self._check_inputs(x, tape, heads, padding_mask, tape_length)
        hc = self._check_controller_state(controller_state, x)
        if hc is None:
            hc = (x.new_zeros(1, x.shape[0], self.dim), x.new_zeros(1, x.shape[0], self.dim))
        B, T = x.shape[:2]
        N = self.num_tapes
        tapes = [vt[:, n] for n in range(N)]  # [B, d, L] each
        keys = [kt[:, n] for n in range(N)]
        Hr = [H0[:, n, 0] for n in range(N)]  # [B, L] each
        Hw = [H0[:, n, 1] for n in range(N)]
        reads = []
        for t in range(T):
            c_t, hc_t = self.controller(x[:, t : t + 1], hc)  # the controller, one token at a time
            hc = (
                hc_t
                if pad is None
                else tuple(torch.where(pad[None, :, t, None], a, b) for a, b in zip(hc, hc_t))
            )
            p = self._gates_actions(
                c_t, x[:, t : t + 1], None if pad is None else pad[:, t : t + 1]
            )
            r_t = []
            for n in range(N):
                p_r = None if p.p_r is None else p.p_r[:, 0, n]
                p_w = None if p.p_w is None else p.p_w[:, 0, n]
                p_e = None if p.p_e is None else p.p_e[:, 0, n]
                hw, hr = unit_norm(Hw[n]), unit_norm(Hr[n])
                tapes[n] = nam_write(tapes[n], hw, p.v[:, 0, n], p_w, p_e)
                r_t.append(nam_read(tapes[n], hr, p_r))
                new = []
                if self.jump:
                    keys[n] = nam_write(keys[n], hw, p.k[:, 0, n], p_w, p_e)
                    h_jump = nam_read(keys[n].transpose(-1, -2), p.q[:, 0, n])
                for head, H in enumerate((Hr[n], Hw[n])):
                    a = {name: p.a[:, 0, n, head, i : i + 1] for i, name in enumerate(self.actions)}
                    H_new = a["noop"] * H
                    if "left" in a:
                        H_new = H_new + a["left"] * torch.roll(H, -1, dims=-1)
                    if "right" in a:
                        H_new = H_new + a["right"] * torch.roll(H, 1, dims=-1)
                    if "jump" in a:
                        H_new = H_new + a["jump"] * h_jump
                    new.append(H_new)
                Hr[n], Hw[n] = new
            reads.append(torch.stack(r_t, dim=1))  # [B, N, d]
        r = torch.stack(reads, dim=1)  # [B, T, N, d]
        out = self.out_proj(r.reshape(B, T, -1))
        heads_out = torch.stack([torch.stack([Hr[n], Hw[n]], dim=1) for n in range(N)], dim=1)
        state = (torch.stack(tapes, dim=1), torch.stack(keys, dim=1), heads_out)
        return (out, state, hc) if return_controller_state else (out, state)

    def step(
        self, x_t: Tensor, state: NAMTMStepState | None = None
    ) -> tuple[Tensor, NAMTMStepState]:
        """One token: ``x_t [B, dim]``, ``state = (tape, key_tape, heads, (h, c))`` or None.

        Returns ``out_t [B, dim]`` and the new state; stepping token by token equals :meth:`forward`.
        """
        if not isinstance(x_t, Tensor) or x_t.dim() != 2:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t: expected shape [B, dim={self.dim}], got {got}")
        if state is None:
            out, st, hc = self.forward(x_t[:, None], return_controller_state=True)
        else:
            if not (isinstance(state, tuple) and len(state) == 4):
                raise TypeError(
                    "state: expected None or (tape, key_tape, heads, (h, c)), "
                    f"got {type(state).__name__}"
                )
            vt, kt, heads, hc = state
            out, st, hc = self.forward(
                x_t[:, None], (vt, kt), heads, controller_state=hc, return_controller_state=True
            )
        return out[:, 0], (*st, hc)

    def _check_controller_state(self, hc: object, x: Tensor) -> tuple[Tensor, Tensor] | None:
        if hc is None:
            return None
        want = (1, x.shape[0], self.dim)
        if not (isinstance(hc, tuple) and len(hc) == 2) or any(
            not isinstance(t, Tensor) or tuple(t.shape) != want for t in hc
        ):
            raise ValueError(f"controller_state: expected a tuple (h, c) of shape {want} each")
        if hc[0].dtype != x.dtype or hc[1].dtype != x.dtype:
            raise TypeError(f"controller_state: expected dtype {x.dtype} (same as x)")
        return hc

    def _control(
        self, x: Tensor, pad: Tensor | None, hc: object
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The controller LSTM over all steps at once (right padding: its final state is taken after
        each sequence's last real token)."""
        hc = self._check_controller_state(hc, x)
        if pad is None:
            return self.controller(x, hc)
        lengths = (~pad).sum(1)
        if bool((lengths == 0).any()):
            # An all-padding row: pack_padded_sequence needs length >= 1; the row's state must not
            # move, so run it with length 1 and restore the state below.
            lengths = lengths.clamp_min(1)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        c, (h, cc) = self.controller(packed, hc)
        c, _ = nn.utils.rnn.pad_packed_sequence(c, batch_first=True, total_length=x.shape[1])
        empty = pad.all(1)
        if bool(empty.any()):
            h0, c0 = hc if hc is not None else (torch.zeros_like(h), torch.zeros_like(cc))
            h = torch.where(empty[None, :, None], h0, h)
            cc = torch.where(empty[None, :, None], c0, cc)
        return c, (h, cc)
