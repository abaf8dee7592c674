"""NAM-TM, the NAM Turing Machine (docs/paper.md §4), in the two versions the authors released.

A tape of ``L`` cells is a NAM memory whose keys are positions, ``T = sum_i v_i e_i^T`` `[d, L]`.
Per tape a read head ``H_r`` and a write head ``H_w`` (soft positions `[L]`, one-hot at cell 0 at
the start) move by a mix of NO-OP / LEFT / RIGHT (circular shift by one cell) / JUMP. Per step and
tape, in the order of the authors' code::

    h_w, h_r = mu(H_w), mu(H_r)                    # heads are unit keys
    T  <- WR(T, h_w, v, p_w, p_e)                  # value tape, v = W_v x
    r   = RD(T, h_r, p_r)                          # read (after the write)
    key tape, written alongside, then the jump target j:
      key_tape="position" (2022):  K <- WR(K, h_w, mu(W_k x), p_w, p_e);  j = K^T q    K [d, L]
      key_tape="key"      (2023):  K <- WR(K, mu(W_k x), H_w, p_w, p_e);  j = K q      K [L, d]
                                   (the raw write head stored under the key)
    H  <- a_noop H + a_left roll^-1(H) + a_right roll(H) + a_jump j   (each head)

The controller runs over the layer input only (it never sees reads), so every gate, action, value,
key and jump query is computed for all steps before the tape loop; the output is a projection of
the reads of all tapes.

The two named models (built by :func:`nam_tm_2022` / :func:`nam_tm_2023`):

* **2022** (the model of the paper's Table 2): bidirectional GRU controller (half the width per
  direction), gates ``p_r, p_w`` with erase tied to write (``p_e = p_w``: 10 logits per tape),
  keys stored at positions, two layers, the second starting from the first's value tape
  (:class:`NAMTMStack`). It cannot step (the controller reads the whole sequence).
* **2023** (the authors' latest release): unidirectional LSTM controller, separate ``p_r, p_w, p_e``
  (11 logits per tape), raw write-head positions stored under keys, one layer
  (:class:`NAMTuringMachine` with its defaults). It steps token by token.

Fast path: :meth:`NAMTuringMachine.forward`: the controller and the projections for all steps at
once; then, with the C kernel (:mod:`._tape_kernel`), :class:`_FusedLayer` computes the gates,
actions, unit keys and queries, runs the tape recurrence and scales the reads by ``p_r`` in C
(forward and backward); without it, the same plan in PyTorch and :func:`._tape_scan.tape_scan`'s
PyTorch loop. Slow twin: :meth:`NAMTuringMachine.forward_reference`, the
controller stepped token by token (or, bidirectional, run on each sequence alone), a Python loop over
steps and tapes with :func:`nam_write` / :func:`nam_read` / ``torch.roll``, differentiated by
autograd.

Shapes: ``B`` batch, ``T`` time, ``N`` tapes, ``d`` head (cell) size, ``L`` tape length, ``A``
actions. Value tapes `[B, N, d, L]`, heads `[B, N, 2, L]` (index 0 = read head, 1 = write head).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import nam_read, nam_write, unit_norm
from . import _tape_kernel
from ._checks import check_choice, check_padding_mask
from ._gru import bigru_forward
from ._tape_scan import EPS, tape_scan, tape_scan_autograd

__all__ = [
    "ACTIONS",
    "LAYER_INPUTS",
    "NAMTMStack",
    "NAMTMState",
    "NAMTuringMachine",
    "nam_tm_2022",
    "nam_tm_2023",
]

ACTIONS: tuple[str, ...] = ("noop", "left", "right", "jump")
CONTROLLERS: tuple[str, ...] = ("lstm", "bigru")
KEY_TAPES: tuple[str, ...] = ("position", "key")
#: What a stacked layer after the first reads (:class:`NAMTMStack`).
LAYER_INPUTS: tuple[str, ...] = ("previous", "source")


class NAMTMState(NamedTuple):
    """State of a NAM-TM layer (batch first).

    Fields:
        tape: `[B, N, d, L]` value tapes.
        key_tape: `[B, N, d, L]` (``key_tape="position"``: keys at positions) or `[B, N, L, d]`
            (``"key"``: positions under keys); unchanged zeros without JUMP.
        heads: `[B, N, 2, L]` (read, write) head positions.
        h: `[B, dim]` controller LSTM hidden state; `[B, 0]` for a bidirectional controller, which
            carries nothing from one call to the next.
        c: `[B, dim]` controller LSTM cell state (`[B, 0]` likewise).
    """

    tape: Tensor
    key_tape: Tensor
    heads: Tensor
    h: Tensor
    c: Tensor


class _Plan(NamedTuple):
    """Everything that does not depend on the tape, for all steps (`[B, T, N, ...]`)."""

    a: Tensor  # [B, T, N, 2, 4] weights of (noop, left, right, jump); absent actions 0
    k: Tensor | None  # unit keys [B, T, N, d]
    p_e: Tensor | None
    p_r: Tensor | None
    p_w: Tensor | None
    q: Tensor | None  # unit jump queries [B, T, N, d]
    v: Tensor  # values [B, T, N, d]


def _unit(x: Tensor) -> Tensor:
    """``x / max(|x|, eps)`` along the last dim."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(EPS)


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


class _FusedLayer(torch.autograd.Function):
    """A layer's plan, tape recurrence and ``p_r`` scaling in the C kernel (forward and backward):
    from controller logits `z [B, T, N, ctrl_size]` and the value / raw key projections
    `vk [B, T, N*d (+ N*d)]` to ``p_r`` times the reads `[B, T, N * d]` and the final tapes and
    heads (outputs as :meth:`NAMTuringMachine._scan`). The only layout changes are of the
    initial and final states; every per-step quantity is written straight into the kernel's lane
    layout and read back as rows. Gradients of gradients recompute through the PyTorch twin
    (:meth:`NAMTuringMachine._plan_rows` + ``tape_scan_autograd``)."""

    @staticmethod
    def forward(ctx, kernel, layer, z, vk, TT0, KT0, H0, pad):
        B, _, N, _ = z.shape
        d, BN = layer.head_dim, B * N
        G = -(-BN // _tape_kernel.LANES)
        key_mode = None if not layer.jump else layer.key_tape
        pad8 = None if pad is None else pad.to(torch.uint8).contiguous()
        cfg = layer._kernel_cfg()
        lanes, PR = kernel.plan(cfg, z, vk, pad8, G, d, key_mode, layer.erase)
        state = [None if t is None else kernel.pack(t, BN, G) for t in (TT0, KT0, H0)]
        R, aux = kernel.scan(*lanes, *state, d, key_mode)
        RP = kernel.post(R, PR, B, N)
        ctx.kernel, ctx.layer = kernel, layer
        ctx.save_for_backward(z, vk, TT0, KT0, H0, pad, pad8, cfg, R, PR, *lanes, *aux, *state)
        outs = [RP]
        for t, like in zip(state, (TT0, KT0, H0)):
            if t is not None:
                outs.append(kernel.unpack(t, BN, *like.shape))
        return tuple(outs)

    @staticmethod
    def backward(ctx, dRP, *d_state):
        z, vk, TT0, KT0, H0, pad, pad8, cfg, R, PR, *rest = ctx.saved_tensors
        lanes, aux, (TT, KT, _) = rest[:6], rest[6:-3], rest[-3:]
        layer, kernel = ctx.layer, ctx.kernel
        inits = [t for t in (TT0, KT0, H0) if t is not None]
        # Undefined output gradients arrive as None: zeros keep one code path.
        dRP = (
            torch.zeros(z.shape[:2] + (R.shape[2] * z.shape[2],), dtype=z.dtype)
            if dRP is None
            else dRP
        )
        if torch.is_grad_enabled():  # create_graph=True: differentiate the PyTorch twin
            with torch.enable_grad():
                inputs = (z, vk, *inits)
                d_state = [torch.zeros_like(t) if g is None else g for g, t in zip(d_state, inits)]
                need = [t for t in inputs if t.requires_grad]
                N, d = layer.num_tapes, layer.head_dim
                v = vk[..., : N * d].reshape(*z.shape[:3], d)
                k = vk[..., N * d :].reshape(*z.shape[:3], d) if layer.jump else None
                plan = layer._plan_rows(z, v, k, pad, _unit)
                outs = layer._scan(plan, TT0, KT0, H0, use_kernel=False, autograd=True)
                grads = iter(
                    torch.autograd.grad(
                        outs, need, (dRP, *d_state), create_graph=True, allow_unused=True
                    )
                )
                res = [next(grads) if t.requires_grad else None for t in inputs]
                dTT0, rest_g = res[2], res[3:]
                dKT0 = rest_g[0] if KT0 is not None else None
                return None, None, res[0], res[1], dTT0, dKT0, rest_g[-1], None
        B, _, N, _ = z.shape
        d, BN, G = layer.head_dim, B * N, R.shape[1]
        key_mode = None if not layer.jump else layer.key_tape
        dR, dPR = kernel.post_backward(R, PR, dRP.contiguous(), N)
        TT = TT.clone()  # rebuilt in place (a second backward must find the final tapes)
        KT = None if KT is None else KT.clone()
        # Gradients of the final state in lanes (undefined ones: zeros, packed without a copy).
        dl = [
            kernel.pack(t if g is None else g, BN, G, zero=g is None)
            for g, t in zip(d_state, inits)
        ]
        dTT, dH = dl[0], dl[-1]
        dKT = dl[1] if KT is not None else None
        grads = kernel.scan_backward(lanes, aux, TT, KT, dR, dTT, dKT, dH, d, key_mode)
        dZ, dVK = kernel.plan_backward(cfg, z, vk, pad8, grads, dPR, d)
        need = ctx.needs_input_grad[4:7]  # initial tapes and heads: rows only where asked for

        def back(t: Tensor | None, like: Tensor | None, needed: bool) -> Tensor | None:
            return kernel.unpack(t, BN, *like.shape) if t is not None and needed else None

        dTT0, dKT0, dH0 = (back(t, x, n) for t, x, n in zip((dTT, dKT, dH), (TT0, KT0, H0), need))
        return None, None, dZ, dVK, dTT0, dKT0, dH0, None


class NAMTuringMachine(nn.Module):
    """One NAM-TM layer: ``x [B, T, dim] -> (y [B, T, dim], NAMTMState)``.

    The defaults are the authors' 2023 release (:func:`nam_tm_2023`); the 2022 model's layers use
    ``controller="bigru", tied_erase=True, key_tape="position"`` (:func:`nam_tm_2022`).

    Args:
        dim: input/output width and the controller's width (a bidirectional controller gives each
            direction ``dim // 2``; ``dim`` must then be even).
        num_tapes: tapes ``N`` running in parallel (the paper's "heads").
        head_dim: cell size ``d`` of every tape (values, keys and jump queries).
        tape_length: default number of cells ``L`` (no parameter depends on it: pass
            ``tape_length=`` or a state of another length to :meth:`forward`).
        actions: head actions, a subset of ``("noop", "left", "right", "jump")`` containing
            ``"noop"`` (used to freeze heads on padding). The paper's ablations: no JUMP =
            ``("noop", "left", "right")``; only JUMP = ``("noop", "jump")``.
        rw_prob: learn read/write probabilities; False fixes ``p_r = p_w = 1`` (ablation).
        erase: erase at all; False fixes ``p_e = 0`` (ablation).
        controller: ``"lstm"`` (unidirectional, can step) or ``"bigru"`` (bidirectional GRU).
        tied_erase: ``p_e = p_w`` (2022) instead of a separate erase gate (2023).
        key_tape: ``"position"`` (2022: keys at positions, ``j = K^T q``) or ``"key"`` (2023: raw
            write-head positions under keys, ``j = K q``).
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
        controller: str = "lstm",
        tied_erase: bool = False,
        key_tape: str = "key",
    ) -> None:
        super().__init__()
        _check_int("dim", dim)
        _check_int("num_tapes", num_tapes)
        _check_int("head_dim", head_dim)
        _check_int("tape_length", tape_length)
        check_choice("controller", controller, CONTROLLERS)
        check_choice("key_tape", key_tape, KEY_TAPES)
        if controller == "bigru" and dim % 2:
            raise ValueError(f"dim: expected an even width for controller='bigru', got {dim}")
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
        self.controller_kind, self.tied_erase, self.key_tape = (
            controller,
            bool(tied_erase),
            key_tape,
        )
        self.jump = "jump" in self.actions
        self.shift = "left" in self.actions or "right" in self.actions
        N, d, A = num_tapes, head_dim, len(self.actions)
        self.num_gates = 2 * self.rw_prob + (self.erase and not self.tied_erase)
        # Per tape the controller emits [gates (G) : read-head actions (A) : write-head actions (A)
        # : jump query (d, only with JUMP)].
        self.ctrl_size = self.num_gates + 2 * A + (d if self.jump else 0)
        if controller == "lstm":
            self.controller: nn.LSTM | nn.GRU = nn.LSTM(dim, dim, batch_first=True)
        else:
            self.controller = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        self.ctrl_proj = nn.Linear(dim, N * self.ctrl_size)
        self.value_proj = nn.Linear(dim, N * d)
        # Keys only feed the JUMP look-up: without JUMP there is no key tape to write.
        self.key_proj = nn.Linear(dim, N * d) if self.jump else None
        self.out_proj = nn.Linear(N * d, dim)

    @property
    def can_step(self) -> bool:
        return self.controller_kind == "lstm"

    # -- state ------------------------------------------------------------------------------------

    def init_state(
        self, batch: int, device=None, dtype=None, *, tape_length: int | None = None
    ) -> NAMTMState:
        """Blank tapes, both heads one-hot at cell 0, zero controller state."""
        _check_int("batch", batch)
        L = _check_int("tape_length", self.tape_length if tape_length is None else tape_length)
        p = self.out_proj.weight
        dtype, device = dtype or p.dtype, device or p.device
        N, d = self.num_tapes, self.head_dim
        tape = torch.zeros(batch, N, d, L, dtype=dtype, device=device)
        key_shape = (batch, N, d, L) if self.key_tape == "position" else (batch, N, L, d)
        heads = torch.zeros(batch, N, 2, L, dtype=dtype, device=device)
        heads[..., 0] = 1.0
        width = self.dim if self.controller_kind == "lstm" else 0
        h = torch.zeros(batch, width, dtype=dtype, device=device)
        return NAMTMState(
            tape, torch.zeros(key_shape, dtype=dtype, device=device), heads, h, h.clone()
        )

    def _check_inputs(
        self, x: object, state: object, padding_mask: object, tape_length: object
    ) -> tuple[Tensor, NAMTMState, Tensor | None]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 3 or x.shape[2] != self.dim:
            raise ValueError(f"x: expected shape [B, T, dim={self.dim}], got {tuple(x.shape)}")
        B, T = x.shape[:2]
        if B == 0 or T == 0:
            raise ValueError(f"x: expected a non-empty batch and sequence, got {tuple(x.shape)}")
        pad = check_padding_mask(padding_mask, B, T)
        if state is None:
            L = self.tape_length if tape_length is None else tape_length
            return x, self.init_state(B, x.device, x.dtype, tape_length=L), pad
        if not (isinstance(state, tuple) and len(state) == 5):
            raise TypeError(
                "state: expected a NAMTMState (tape, key_tape, heads, h, c) or None, "
                f"got {type(state).__name__}"
            )
        if not isinstance(state[0], Tensor) or state[0].dim() != 4:
            got = tuple(state[0].shape) if isinstance(state[0], Tensor) else type(state[0]).__name__
            raise ValueError(f"state.tape: expected shape [B, N, d, L], got {got}")
        N, d, L = self.num_tapes, self.head_dim, state[0].shape[-1]
        if tape_length is not None and tape_length != L:
            raise ValueError(
                f"tape_length: expected None or {L} (the given state's length), got {tape_length}"
            )
        width = self.dim if self.controller_kind == "lstm" else 0
        want = {
            "tape": (B, N, d, L),
            "key_tape": (B, N, d, L) if self.key_tape == "position" else (B, N, L, d),
            "heads": (B, N, 2, L),
            "h": (B, width),
            "c": (B, width),
        }
        for (name, shape), t in zip(want.items(), state):
            if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"state.{name}: expected shape {shape}, got {got}")
            if t.dtype != x.dtype:
                raise TypeError(
                    f"state.{name}: expected dtype {x.dtype} (same as x), got {t.dtype}"
                )
        return x, NAMTMState(*state), pad

    # -- what does not depend on the tape ---------------------------------------------------------

    def _plan(self, c: Tensor, x: Tensor, pad: Tensor | None, fast: bool = False) -> _Plan:
        """Controller outputs `c [B, T, dim]` and inputs `x` -> per-step plan `[B, T, N, ...]`.

        ``fast``: normalise keys and queries as ``x / max(|x|, eps)`` directly (three ops) instead
        of :func:`unit_norm`'s overflow-safe form; they agree to rounding for the projections'
        finite outputs (the twin keeps :func:`unit_norm`)."""
        B, T = c.shape[:2]
        N, d = self.num_tapes, self.head_dim
        z = self.ctrl_proj(c).view(B, T, N, self.ctrl_size)
        v = self.value_proj(x).view(B, T, N, d)
        k = self.key_proj(x).view(B, T, N, d) if self.key_proj is not None else None
        return self._plan_rows(z, v, k, pad, _unit if fast else unit_norm)

    def _plan_rows(self, z: Tensor, v: Tensor, k: Tensor | None, pad: Tensor | None, mu) -> _Plan:
        """Controller logits `z [B, T, N, ctrl_size]`, values `v` and raw keys `k [B, T, N, d]`
        -> the plan (``mu``: the unit normalisation of keys and jump queries)."""
        B, T = z.shape[:2]
        N, A, G = self.num_tapes, len(self.actions), self.num_gates
        c = z
        g = torch.sigmoid(z[..., :G])
        p_r = g[..., 0] if self.rw_prob else None
        p_w = g[..., 1] if self.rw_prob else None
        if not self.erase:
            p_e = None
        elif self.tied_erase:
            p_e = p_w if p_w is not None else z.new_ones(B, T, N)  # p_e = p_w (= 1 without rw)
        else:
            p_e = g[..., G - 1]
        a = torch.softmax(z[..., G : G + 2 * A].view(B, T, N, 2, A), dim=-1)
        q = mu(z[..., G + 2 * A :]) if self.jump else None
        k = mu(k) if k is not None else None
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
        if A < len(ACTIONS):  # all four actions in ACTIONS order, absent ones with weight 0
            zero = a.new_zeros(a.shape[:-1])
            idx = {name: i for i, name in enumerate(self.actions)}
            a = torch.stack([a[..., idx[n]] if n in idx else zero for n in ACTIONS], dim=-1)
        return _Plan(a=a, k=k, p_e=p_e, p_r=p_r, p_w=p_w, q=q, v=v)

    def _control(
        self, x: Tensor, pad: Tensor | None, st: NAMTMState, use_kernel: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The controller over all steps at once -> outputs `[B, T, dim]` and the final ``h, c``
        (right padding: taken after each sequence's last real token)."""
        lstm = self.controller_kind == "lstm"
        if not lstm:  # C kernel or fused forward + hand-written backward (nn.GRU is op by op)
            lengths = None if pad is None else (~pad).sum(1)
            return (
                bigru_forward(self.controller, x, lengths, use_kernel),
                st.h,
                st.c,
            )
        hc = (st.h.unsqueeze(0).contiguous(), st.c.unsqueeze(0).contiguous())
        if pad is None:
            c, hn = self.controller(x, hc)
            return c, hn[0][0], hn[1][0]
        lengths = (~pad).sum(1)
        # An all-padding row: pack_padded_sequence needs length >= 1; the row's state must not
        # move, so run it with length 1 and restore the state below.
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        c, hn = self.controller(packed, hc)
        c, _ = nn.utils.rnn.pad_packed_sequence(c, batch_first=True, total_length=x.shape[1])
        empty = pad.all(1)[:, None]
        return c, torch.where(empty, st.h, hn[0][0]), torch.where(empty, st.c, hn[1][0])

    # -- forward ----------------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        state: NAMTMState | None = None,
        padding_mask: Tensor | None = None,
        *,
        tape_length: int | None = None,
        use_kernel: bool = True,
    ) -> tuple[Tensor, NAMTMState]:
        """Run the sequence (fast path).

        Args:
            x: `[B, T, dim]`.
            state: a :class:`NAMTMState` (e.g. from a previous call, or another layer's tapes),
                or None: blank tapes of ``tape_length`` cells.
            padding_mask: `[B, T]` bool, True = padding (anywhere): padded steps read, write and
                move nothing, do not advance the controller and output zeros.
            tape_length: cells of blank tapes (default ``self.tape_length``).
            use_kernel: use the compiled kernels (tape recurrence, bidirectional GRU) when
                available (False: the PyTorch paths).
        Returns:
            ``y [B, T, dim]`` and the state after each sequence's last real token.
        """
        x, st, pad = self._check_inputs(x, state, padding_mask, tape_length)
        B, T = x.shape[:2]
        N, d = self.num_tapes, self.head_dim
        order = None
        if pad is not None and bool((pad[:, :-1] & ~pad[:, 1:]).any()):
            # Padding before a real token: padded steps are no-ops, so move the real tokens to the
            # front (stable) and run right-padded; outputs go back to their positions at the end.
            order = torch.sort(pad.to(torch.uint8), dim=1, stable=True).indices
            x = x.gather(1, order.unsqueeze(-1).expand_as(x))
            pad = pad.gather(1, order)
        c, h, cc = self._control(x, pad, st, use_kernel)
        position = self.jump and self.key_tape == "position"
        keyed = self.jump and self.key_tape == "key"
        # Value rows, then key rows ("position" key tape): one tape tensor [B, N, D, L].
        TT0 = torch.cat([st.tape, st.key_tape], dim=-2) if position else st.tape
        KT0 = st.key_tape if keyed else None
        kernel = _tape_kernel.get() if use_kernel else None
        if kernel is not None and kernel.supports(x):
            z = self.ctrl_proj(c).view(B, T, N, self.ctrl_size)
            if self.key_proj is None:
                vk = self.value_proj(x)
            else:  # values and raw keys in one GEMM: [B, T, N*d (values) + N*d (keys)]
                w = torch.cat([self.value_proj.weight, self.key_proj.weight])
                vk = nn.functional.linear(
                    x, w, torch.cat([self.value_proj.bias, self.key_proj.bias])
                )
            outs = _FusedLayer.apply(kernel, self, z, vk, TT0, KT0, st.heads, pad)
        else:
            plan = self._plan(c, x, pad, fast=True)
            outs = self._scan(plan, TT0, KT0, st.heads, use_kernel=False)
        rp, TT = outs[0], outs[1]
        KT, H = (outs[2], outs[3]) if keyed else (None, outs[2])
        out = self.out_proj(rp)
        if pad is not None:
            out = out.masked_fill(pad.unsqueeze(-1), 0.0)
        if order is not None:
            out = out.gather(1, order.argsort(dim=1).unsqueeze(-1).expand_as(out))
        if position:
            key_tape = TT[:, :, d:]
        elif keyed:
            key_tape = KT
        else:
            key_tape = st.key_tape
        return out, NAMTMState(TT[:, :, :d], key_tape, H, h, cc)

    def _scan(
        self,
        plan: _Plan,
        TT0: Tensor,
        KT0: Tensor | None,
        H0: Tensor,
        use_kernel: bool,
        autograd: bool = False,
    ) -> tuple[Tensor, ...]:
        """The PyTorch side of the fast path: plan `[B, T, N, ...]` and initial tapes / heads
        `[B, N, ...]` -> ``p_r`` times the reads `[B, T, N * d]`, the final ``TT [B, N, D, L]``,
        (``KT [B, N, L, d]`` in "key" mode) and ``H [B, N, 2, L]``. ``autograd``: differentiate
        the recurrence's out-of-place twin (any order) instead of :func:`tape_scan`."""
        B, T, N = plan.a.shape[:3]
        d, L = self.head_dim, H0.shape[-1]
        BN = B * N

        def tm(t: Tensor | None, *tail: int) -> Tensor | None:
            # [B, T, N, ...] -> time-major [T, B*N, ...], contiguous for cheap per-step slices.
            return None if t is None else t.transpose(0, 1).reshape(T, BN, *tail)

        position = self.jump and self.key_tape == "position"
        keyed = self.jump and self.key_tape == "key"
        # Written rows: values, then keys ("position" key tape), pre-scaled by p_w.
        w = torch.cat([plan.v, plan.k], dim=-1) if position else plan.v
        if plan.p_w is not None:
            w = w * plan.p_w.unsqueeze(-1)
        args = (
            tm(w, w.shape[-1]),
            tm(None if plan.p_e is None else -plan.p_e, 1),
            tm(plan.q, 1, d),
            tm(plan.a, 2, 4),
            tm(plan.k, 1, d) if keyed else None,
            tm(plan.p_w, 1) if keyed else None,
            TT0.reshape(BN, -1, L),
            KT0.reshape(BN, L, d) if keyed else None,
            H0.reshape(BN, 2, L),
            d,
            "position" if position else ("key" if keyed else None),
        )
        if autograd:
            R, TT, KT, H = tape_scan_autograd(*args, self.shift)
        else:
            R, TT, KT, H = tape_scan(*args, self.shift, use_kernel)
        r = R.view(T, B, N, d).transpose(0, 1)  # [B, T, N, d]
        if plan.p_r is not None:
            r = r * plan.p_r.unsqueeze(-1)
        outs = [r.reshape(B, T, N * d), TT.view(B, N, -1, L)]
        if keyed:
            outs.append(KT.view(B, N, L, d))
        outs.append(H.view(B, N, 2, L))
        return tuple(outs)

    def _kernel_cfg(self) -> Tensor:
        """The fused kernel's configuration (``namtm_plan`` in ``_tape_kernel.c``)."""
        slots = [ACTIONS.index(a) for a in self.actions] + [0] * (4 - len(self.actions))
        mode = 0 if not self.jump else (1 if self.key_tape == "position" else 2)
        cfg = [self.num_gates, self.rw_prob, self.erase, self.tied_erase, len(self.actions)]
        return torch.tensor([*cfg, *slots, int(self.jump), mode], dtype=torch.long)

    def _control_reference(
        self, x: Tensor, pad: Tensor | None, st: NAMTMState
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """The controller the obvious way: outputs per step `[B, 1, dim]` and the final ``h, c``."""
        B, T = x.shape[:2]
        if self.controller_kind == "lstm":
            hc = (st.h.unsqueeze(0), st.c.unsqueeze(0))
            outs = []
            for t in range(T):  # one token at a time; padded steps keep the state
                c_t, hc_t = self.controller(x[:, t : t + 1], hc)
                outs.append(c_t)
                if pad is not None:
                    hc_t = tuple(torch.where(pad[None, :, t, None], a, b) for a, b in zip(hc, hc_t))
                hc = hc_t
            return outs, hc[0][0], hc[1][0]
        # Bidirectional: each sequence's real tokens alone (padded steps get zeros, never used).
        rows = []
        for b in range(B):
            real = torch.arange(T) if pad is None else (~pad[b]).nonzero().squeeze(1)
            row = x.new_zeros(T, self.dim)
            if real.numel():
                row = row.index_copy(0, real, self.controller(x[b : b + 1, real])[0][0])
            rows.append(row)
        c = torch.stack(rows)
        return [c[:, t : t + 1] for t in range(T)], st.h, st.c

    def forward_reference(
        self,
        x: Tensor,
        state: NAMTMState | None = None,
        padding_mask: Tensor | None = None,
        *,
        tape_length: int | None = None,
        trace: list | None = None,
    ) -> tuple[Tensor, NAMTMState]:
        """The slow twin of :meth:`forward`: same arguments, same results, line by line.

        ``trace``: a list that receives one dict per step (for probes of what the heads do):
        ``write_head`` / ``read_head`` `[B, N, L]` (the unit heads the step writes and reads at)
        and ``p_w`` / ``p_r`` `[B, N]` (``None`` without read/write probabilities), detached.
        """
        x, st, pad = self._check_inputs(x, state, padding_mask, tape_length)
        B, T = x.shape[:2]
        N = self.num_tapes
        ctrl, h, c = self._control_reference(x, pad, st)
        tapes = [st.tape[:, n] for n in range(N)]  # [B, d, L] each
        keys = [st.key_tape[:, n] for n in range(N)]  # [B, d, L] or [B, L, d]
        Hr = [st.heads[:, n, 0] for n in range(N)]  # [B, L] each
        Hw = [st.heads[:, n, 1] for n in range(N)]
        reads = []
        for t in range(T):
            p = self._plan(ctrl[t], x[:, t : t + 1], None if pad is None else pad[:, t : t + 1])
            r_t = []
            seen: dict[str, list[Tensor]] = {"write_head": [], "read_head": []}
            for n in range(N):
                p_r = None if p.p_r is None else p.p_r[:, 0, n]
                p_w = None if p.p_w is None else p.p_w[:, 0, n]
                p_e = None if p.p_e is None else p.p_e[:, 0, n]
                hw, hr = unit_norm(Hw[n]), unit_norm(Hr[n])
                seen["write_head"].append(hw.detach())
                seen["read_head"].append(hr.detach())
                tapes[n] = nam_write(tapes[n], hw, p.v[:, 0, n], p_w, p_e)
                r_t.append(nam_read(tapes[n], hr, p_r))
                if self.jump and self.key_tape == "position":  # keys at positions, K^T q
                    keys[n] = nam_write(keys[n], hw, p.k[:, 0, n], p_w, p_e)
                    h_jump = nam_read(keys[n].transpose(-1, -2), p.q[:, 0, n])
                elif self.jump:  # the raw write head under the key, K q
                    keys[n] = nam_write(keys[n], p.k[:, 0, n], Hw[n], p_w, p_e)
                    h_jump = nam_read(keys[n], p.q[:, 0, n])
                new = []
                for head, H in enumerate((Hr[n], Hw[n])):
                    a = {name: p.a[:, 0, n, head, i : i + 1] for i, name in enumerate(ACTIONS)}
                    H_new = a["noop"] * H
                    if "left" in self.actions:
                        H_new = H_new + a["left"] * torch.roll(H, -1, dims=-1)
                    if "right" in self.actions:
                        H_new = H_new + a["right"] * torch.roll(H, 1, dims=-1)
                    if self.jump:
                        H_new = H_new + a["jump"] * h_jump
                    new.append(H_new)
                Hr[n], Hw[n] = new
            reads.append(torch.stack(r_t, dim=1))  # [B, N, d]
            if trace is not None:
                step = {name: torch.stack(hs, dim=1) for name, hs in seen.items()}
                for name, g in (("p_w", p.p_w), ("p_r", p.p_r)):
                    step[name] = None if g is None else g[:, 0].detach()
                trace.append(step)
        r = torch.stack(reads, dim=1)  # [B, T, N, d]
        out = self.out_proj(r.reshape(B, T, -1))
        if pad is not None:
            out = out.masked_fill(pad.unsqueeze(-1), 0.0)
        heads = torch.stack([torch.stack([Hr[n], Hw[n]], dim=1) for n in range(N)], dim=1)
        return out, NAMTMState(torch.stack(tapes, 1), torch.stack(keys, 1), heads, h, c)

    def step(self, x_t: Tensor, state: NAMTMState | None = None) -> tuple[Tensor, NAMTMState]:
        """One token: ``x_t [B, dim]`` -> ``y_t [B, dim]`` and the new state (equals
        :meth:`forward` token by token). Only with the unidirectional (LSTM) controller."""
        if not self.can_step:
            raise NotImplementedError(
                "NAMTuringMachine(controller='bigru').step: a bidirectional controller reads the "
                "whole sequence before the first output, so the model cannot run token by token"
            )
        if not isinstance(x_t, Tensor) or x_t.dim() != 2:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t: expected shape [B, dim={self.dim}], got {got}")
        out, st = self.forward(x_t[:, None], state)
        return out[:, 0], st


class NAMTMStack(nn.Module):
    """Stacked NAM-TM layers; layer ``l > 0`` starts from layer ``l - 1``'s final tape (docs/paper.md
    §4: "the second starting from the first's tape") and reads either layer ``l - 1``'s outputs or
    the stack's own input (``layer_input``).

    Args:
        dim, num_tapes, head_dim, tape_length: as :class:`NAMTuringMachine`.
        num_layers: layers.
        handoff: what a layer hands to the next: ``"tape"`` (the value tape; blank key tape, heads
            at cell 0: the 2022 model) or ``"all"`` (value tape, key tape and heads).
        layer_input: what layer ``l > 0`` reads: ``"previous"`` (layer ``l - 1``'s outputs) or
            ``"source"`` (the stack's input ``x`` again, as the authors' two-layer task model
            does: the first layer's outputs are then unused, only its tape is handed on).
        layer_kw: the remaining :class:`NAMTuringMachine` options.

    ``forward(x, state=None, padding_mask=None) -> (y, NAMTMState)``: ``state`` is the first layer's
    initial state, the returned state the last layer's final one. With more than one layer the
    stack cannot step (layer 2 starts from layer 1's *final* tape, which needs the whole sequence).
    """

    def __init__(
        self,
        dim: int,
        num_tapes: int,
        head_dim: int,
        num_layers: int = 2,
        tape_length: int = 32,
        handoff: str = "tape",
        layer_input: str = "previous",
        **layer_kw,
    ) -> None:
        super().__init__()
        _check_int("num_layers", num_layers)
        check_choice("handoff", handoff, ("tape", "all"))
        check_choice("layer_input", layer_input, LAYER_INPUTS)
        self.dim, self.num_layers, self.handoff = dim, num_layers, handoff
        self.layer_input = layer_input
        self.layers = nn.ModuleList(
            NAMTuringMachine(dim, num_tapes, head_dim, tape_length, **layer_kw)
            for _ in range(num_layers)
        )

    @property
    def can_step(self) -> bool:
        return self.num_layers == 1 and self.layers[0].can_step

    def init_state(
        self, batch: int, device=None, dtype=None, *, tape_length: int | None = None
    ) -> NAMTMState:
        return self.layers[0].init_state(batch, device, dtype, tape_length=tape_length)

    def _run(self, x, state, padding_mask, tape_length, reference, use_kernel=True, trace=None):
        st, source = state, x
        for i, layer in enumerate(self.layers):
            if i > 0:
                if self.layer_input == "source":
                    x = source
                blank = layer.init_state(
                    x.shape[0], x.device, x.dtype, tape_length=st.tape.shape[-1]
                )
                if self.handoff == "tape":
                    st = blank._replace(tape=st.tape)
                else:
                    st = blank._replace(tape=st.tape, key_tape=st.key_tape, heads=st.heads)
            kw = {"tape_length": tape_length if i == 0 else None}
            if reference:
                if trace is not None:
                    trace.append([])
                    kw["trace"] = trace[-1]
                x, st = layer.forward_reference(x, st, padding_mask, **kw)
            else:
                x, st = layer(x, st, padding_mask, use_kernel=use_kernel, **kw)
        return x, st

    def forward(
        self,
        x: Tensor,
        state: NAMTMState | None = None,
        padding_mask: Tensor | None = None,
        *,
        tape_length: int | None = None,
        use_kernel: bool = True,
    ) -> tuple[Tensor, NAMTMState]:
        """`x [B, T, dim]` -> `y [B, T, dim]` and the last layer's final state (fast path)."""
        return self._run(x, state, padding_mask, tape_length, False, use_kernel)

    def forward_reference(
        self,
        x: Tensor,
        state: NAMTMState | None = None,
        padding_mask: Tensor | None = None,
        *,
        tape_length: int | None = None,
        trace: list | None = None,
    ) -> tuple[Tensor, NAMTMState]:
        """Every layer's slow twin; ``trace`` receives one list per layer (see
        :meth:`NAMTuringMachine.forward_reference`)."""
        return self._run(x, state, padding_mask, tape_length, True, trace=trace)

    def step(self, x_t: Tensor, state: NAMTMState | None = None) -> tuple[Tensor, NAMTMState]:
        """One token (a single unidirectional layer only)."""
        if self.num_layers > 1:
            raise NotImplementedError(
                f"NAMTMStack.step: layer 2 of {self.num_layers} starts from layer 1's final tape, "
                "which needs the whole sequence, so the stack cannot run token by token"
            )
        return self.layers[0].step(x_t, state)


def nam_tm_2022(
    dim: int, num_tapes: int, head_dim: int, num_layers: int = 2, tape_length: int = 32, **kw
) -> NAMTMStack:
    """The 2022 NAM-TM (Table 2): bidirectional GRU controller, ``p_e = p_w``, keys at positions,
    two layers handing on the value tape. ``kw``: ``actions``, ``rw_prob``, ``erase``."""
    return NAMTMStack(
        dim,
        num_tapes,
        head_dim,
        num_layers,
        tape_length,
        handoff="tape",
        controller="bigru",
        tied_erase=True,
        key_tape="position",
        **kw,
    )


def nam_tm_2023(
    dim: int, num_tapes: int, head_dim: int, tape_length: int = 32, **kw
) -> NAMTuringMachine:
    """The 2023 NAM-TM (the authors' latest release): LSTM controller, separate ``p_r, p_w, p_e``,
    raw write-head positions under keys, one layer. ``kw``: ``actions``, ``rw_prob``, ``erase``."""
    return NAMTuringMachine(
        dim,
        num_tapes,
        head_dim,
        tape_length,
        controller="lstm",
        tied_erase=False,
        key_tape="key",
        **kw,
    )
