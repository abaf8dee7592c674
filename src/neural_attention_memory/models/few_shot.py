"""Few-shot classifier heads: the cosine classifier and the NAM classifier (paper §6).

Both heads score features against a weight matrix whose rows are classes. The first ``num_base``
rows are learned on the base classes (stage 1); an episode adds ``N`` novel rows computed from a
support set of ``K`` features per novel class. The episodic API is shared::

    head.process_support_set(support_features, support_labels, base_ids=None)   # `[S, d]`, `[S]`
    scores = head(query_features)                                               # `[Q, B' + N]`

``support_labels`` are novel class indices in ``[0, N)``; ``base_ids`` picks which base rows take
part in the episode (all by default; in stage 2 the fake-novel classes are left out) and the score
columns are ``[base_ids..., novel 0..N-1]``. Without an episode, ``forward`` scores the base classes
only (stage 1).

The NAM head treats the weight matrix as a NAM memory ``M`` `[classes, d]` (value rows = one-hot
labels, key columns = unit features). Each support key ``k_n = mu(f_n)`` is written into its novel
row with probability ``p_w(k_n)`` and the base rows are erased along it with probability
``p_e(k_n)`` (separate gate networks), so base weights are pulled away from novel directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import nam_write, unit_norm

__all__ = [
    "ConstantGate",
    "CosineClassifier",
    "FewShotHeadConfig",
    "FewShotNetwork",
    "GateNet",
    "NAMFewShotClassifier",
    "build_head",
    "one_shot_memorize",
]

WRITE_MODES = ("batched", "sequential", "memorize")
GATES = ("separate", "tied")
ERASES = ("episode", "batch_mean")


@dataclass
class FewShotHeadConfig:
    """Hyper-parameters shared by both heads (``head`` is ``"cosine"`` or ``"nam"``).

    ``generator`` (cosine only): ``"avg"`` (feature averaging) or ``"att"`` (averaging plus the
    attention-based weight generator of Gidaris & Komodakis 2018). ``write_mode`` (NAM only):
    ``"batched"``, ``"sequential"`` or ``"memorize"``; ``value_scale`` (NAM only): ``"mean"`` writes
    ``onehot / K_c`` so a class row is the gated mean of its keys, ``"one"`` writes plain one-hots.
    ``gate`` (NAM only): ``"separate"`` (write and erase gates ``p_w``, ``p_e`` starting at
    ``p_w_init``, ``p_e_init``) or ``"tied"`` (the authors' head: one gate network, ``p_w = p_e``,
    starting at ``p_init``). ``erase`` (NAM only): ``"episode"`` or ``"batch_mean"`` (the
    authors' code averaged the erase over a mini-batch of episodes; an ablation).
    """

    head: str = "cosine"
    num_base: int = 64
    dim: int = 128
    scale: float = 10.0
    learn_scale: bool = True
    generator: str = "avg"
    gate_hidden: int = 64
    write_mode: str = "batched"
    value_scale: str = "mean"
    p_w_init: float = 0.9
    p_e_init: float = 0.2
    gate: str = "separate"
    p_init: float = 0.5
    erase: str = "episode"


def _check_features(name: str, x: object, dim: int) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name}: expected a floating-point tensor [n, {dim}], got {got}")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ValueError(f"{name}: expected shape [n >= 1, {dim}], got {tuple(x.shape)}")
    return x


def _check_queries(x: object, dim: int, weights: Tensor | None) -> Tensor:
    """Queries `[Q, d]`, or `[E, Q, d]` when the stored episode is a batch of ``E`` episodes."""
    if weights is not None and weights.dim() == 3:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(
                f"query_features: expected a floating-point tensor [E, Q, {dim}], got {got}"
            )
        if x.dim() != 3 or x.shape[0] != weights.shape[0] or x.shape[2] != dim or x.shape[1] == 0:
            raise ValueError(
                f"query_features: expected shape [E = {weights.shape[0]}, Q >= 1, {dim}] for a "
                f"batch of episodes, got {tuple(x.shape)}"
            )
        return x
    return _check_features("query_features", x, dim)


def _check_episode_batch(
    f: object, labels: object, base_ids: Tensor | None, dim: int
) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    if not isinstance(f, Tensor) or f.dim() != 3 or f.shape[0] == 0:
        got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
        raise ValueError(f"support_features: expected a batch of episodes [E, S, {dim}], got {got}")
    if not isinstance(labels, Tensor) or labels.shape != f.shape[:2]:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"support_labels: expected shape [E, S] = {tuple(f.shape[:2])}, got {got}")
    if base_ids is None or (isinstance(base_ids, Tensor) and base_ids.dim() == 1):
        return f, labels, [base_ids] * f.shape[0]
    if not isinstance(base_ids, Tensor) or base_ids.dim() != 2 or base_ids.shape[0] != f.shape[0]:
        got = tuple(base_ids.shape) if isinstance(base_ids, Tensor) else type(base_ids).__name__
        raise ValueError(f"base_ids: expected [B'] or [E = {f.shape[0]}, B'], got {got}")
    return f, labels, list(base_ids)


def _check_labels(labels: object, n: int, n_way: int | None) -> tuple[Tensor, int]:
    if not isinstance(labels, Tensor) or labels.dtype != torch.long:
        got = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise TypeError(f"support_labels: expected a torch.long tensor [S], got {got}")
    if labels.shape != (n,):
        raise ValueError(f"support_labels: expected shape [S] = ({n},), got {tuple(labels.shape)}")
    if bool((labels < 0).any()):
        raise ValueError(
            f"support_labels: expected novel indices >= 0, got min {int(labels.min())}"
        )
    found = int(labels.max()) + 1
    if n_way is None:
        n_way = found
    elif found > n_way:
        raise ValueError(f"support_labels: expected indices < n_way = {n_way}, got max {found - 1}")
    counts = torch.bincount(labels, minlength=n_way)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"support_labels: expected every novel class 0..{n_way - 1} at least once, missing {missing}"
        )
    return labels, n_way


class GateNet(nn.Module):
    """A probability per key: `[S, d]` -> `[S]` in (0, 1) (``sigmoid(MLP(k))``).

    The last layer starts at zero weight so every key initially gets ``init`` exactly.
    """

    def __init__(self, dim: int, hidden: int = 64, init: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < init < 1.0:
            raise ValueError(f"init: expected a probability in (0, 1), got {init}")
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.constant_(self.net[2].bias, math.log(init / (1.0 - init)))

    def forward(self, k: Tensor) -> Tensor:
        return torch.sigmoid(self.net(k)).squeeze(-1)


class ConstantGate(nn.Module):
    """The same probability ``p`` in [0, 1] for every key: `[S, d]` -> `[S]` (ablations)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.register_buffer("p", torch.tensor(float(p)))

    def forward(self, k: Tensor) -> Tensor:
        return self.p.to(k.dtype).expand(k.shape[:-1])


class _EpisodicHead(nn.Module):
    """Shared parts: base weights, scale ``gamma``, bias ``beta``, episode bookkeeping."""

    def __init__(self, num_base: int, dim: int, scale: float, learn_scale: bool) -> None:
        super().__init__()
        if not isinstance(num_base, int) or num_base < 1:
            raise ValueError(f"num_base: expected a positive int, got {num_base!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        if not scale > 0:
            raise ValueError(f"scale: expected a positive float, got {scale}")
        self.num_base, self.dim = num_base, dim
        self.weight_base = nn.Parameter(torch.randn(num_base, dim) * math.sqrt(2.0 / dim))
        self.gamma = nn.Parameter(torch.tensor(float(scale)), requires_grad=learn_scale)
        self.beta = nn.Parameter(torch.tensor(0.0))
        self._episode: dict[str, Tensor] | None = None

    def _base_ids(self, base_ids: Tensor | None, device: torch.device) -> Tensor:
        if base_ids is None:
            return torch.arange(self.num_base, device=device)
        if not isinstance(base_ids, Tensor) or base_ids.dtype != torch.long or base_ids.dim() != 1:
            raise TypeError(f"base_ids: expected a 1-d torch.long tensor, got {base_ids!r}")
        if base_ids.numel() and (int(base_ids.min()) < 0 or int(base_ids.max()) >= self.num_base):
            raise ValueError(
                f"base_ids: expected ids in [0, {self.num_base}), got range "
                f"[{int(base_ids.min())}, {int(base_ids.max())}]"
            )
        if base_ids.unique().numel() != base_ids.numel():
            raise ValueError("base_ids: expected distinct ids, got duplicates")
        return base_ids

    def reset_episode(self) -> None:
        """Forget the support set; ``forward`` scores base classes only again."""
        self._episode = None

    @property
    def num_novel(self) -> int:
        return 0 if self._episode is None else int(self._episode["num_novel"])

    def process_support_sets(
        self,
        support_features: Tensor,
        support_labels: Tensor,
        base_ids: Tensor | None = None,
        n_way: int | None = None,
    ) -> Tensor:
        """A batch of ``E`` episodes at once: support `[E, S, d]`, labels `[E, S]`, ``base_ids``
        `[E, B']` (or `[B']` / None: the same for every episode); returns the weights
        `[E, B' + N, d]`, and ``forward`` then takes queries `[E, Q, d]` -> `[E, Q, B' + N]`.

        Each episode is processed exactly as by :meth:`process_support_set` (heads with a
        batch-level option such as the NAM head's ``erase="batch_mean"`` override this).
        """
        f, labels, ids = _check_episode_batch(support_features, support_labels, base_ids, self.dim)
        weights = torch.stack(
            [
                self.process_support_set(f[e], labels[e], base_ids=ids[e], n_way=n_way)
                for e in range(f.shape[0])
            ]
        )
        n = int(self._episode["num_novel"])  # type: ignore[index]
        self._episode = {"weights": weights, "num_novel": torch.tensor(n)}
        return weights

    def classify(
        self,
        query_features: Tensor,
        support_features: Tensor,
        support_labels: Tensor,
        base_ids: Tensor | None = None,
        n_way: int | None = None,
    ) -> Tensor:
        """``process_support_set`` then ``forward``: `[Q, d]` -> `[Q, B' + N]`."""
        self.process_support_set(support_features, support_labels, base_ids=base_ids, n_way=n_way)
        return self(query_features)


class CosineClassifier(_EpisodicHead):
    """Cosine classifier ``s_c(x) = gamma * (cos(f(x), w_c) + beta)`` (Gidaris & Komodakis 2018).

    Novel weights: ``phi_avg * mean_k mu(f_k)`` (a learned diagonal scale of the mean unit support
    feature); with ``generator="att"`` plus ``phi_att * w_att``, where ``w_att`` is the mean over
    shots of an attention (softmax of scaled cosines to learned per-base keys) over base weights.
    """

    def __init__(
        self,
        num_base: int,
        dim: int,
        scale: float = 10.0,
        learn_scale: bool = True,
        generator: str = "avg",
    ) -> None:
        super().__init__(num_base, dim, scale, learn_scale)
        if generator not in ("avg", "att"):
            raise ValueError(f"generator: expected 'avg' or 'att', got {generator!r}")
        self.generator = generator
        self.phi_avg = nn.Parameter(torch.ones(dim))
        if generator == "att":
            self.phi_att = nn.Parameter(torch.ones(dim))
            self.query_proj = nn.Linear(dim, dim)
            nn.init.eye_(self.query_proj.weight)
            nn.init.zeros_(self.query_proj.bias)
            self.att_keys = nn.Parameter(torch.randn(num_base, dim) * math.sqrt(2.0 / dim))
            self.att_scale = nn.Parameter(torch.tensor(10.0))

    def process_support_set(
        self,
        support_features: Tensor,
        support_labels: Tensor,
        base_ids: Tensor | None = None,
        n_way: int | None = None,
    ) -> Tensor:
        """Compute the episode's novel weights; returns the weight matrix `[B' + N, d]`."""
        f = _check_features("support_features", support_features, self.dim)
        labels, n_way = _check_labels(support_labels, f.shape[0], n_way)
        ids = self._base_ids(base_ids, f.device)
        k = unit_norm(f)  # [S, d]
        onehot = F.one_hot(labels, n_way).to(k.dtype)  # [S, N]
        mean = onehot.T @ k / onehot.sum(0).unsqueeze(1)  # [N, d]
        w_novel = self.phi_avg * mean
        w_base = self.weight_base[ids]
        if self.generator == "att" and ids.numel():
            att = self.att_scale * unit_norm(self.query_proj(f)) @ unit_norm(self.att_keys[ids]).T
            w_att = att.softmax(-1) @ unit_norm(w_base)  # [S, d]
            w_novel = w_novel + self.phi_att * (onehot.T @ w_att / onehot.sum(0).unsqueeze(1))
        weights = torch.cat([w_base, w_novel], 0)
        self._episode = {"weights": weights, "num_novel": torch.tensor(n_way)}
        return weights

    def forward(self, query_features: Tensor) -> Tensor:
        """`[Q, d]` -> scores `[Q, B' + N]` (base only, `[Q, num_base]`, without an episode)."""
        w = self.weight_base if self._episode is None else self._episode["weights"]
        q = _check_queries(query_features, self.dim, w)
        return self.gamma * (unit_norm(q) @ unit_norm(w).transpose(-1, -2) + self.beta)


class NAMFewShotClassifier(_EpisodicHead):
    """NAM classifier: the weight matrix is a NAM memory written by the support set.

    Per episode, with base memory ``M_b = mu(W_base[base_ids])`` `[B', d]` and novel memory
    ``M_n = 0`` `[N, d]`, each support key ``k_n = mu(f_n)`` with value ``v_n`` (the one-hot of its
    class, divided by the class's shot count when ``value_scale="mean"``):

    - ``"batched"`` (the paper's formula): ``M_n = sum_n p_w,n v_n k_n^T`` and
      ``M_b <- M_b - sum_n p_e,n (M_b k_n) k_n^T``, every erase computed from the episode's
      starting ``M_b``.
    - ``"sequential"``: one ``nam_write`` per support, ``M_n <- WR(M_n, k_n, v_n, p_w,n, 0)`` and
      ``M_b <- WR(M_b, k_n, 0, 0, p_e,n)``. Equal to ``"batched"`` when the writes commute
      (mutually orthogonal keys); otherwise each erase sees the previous ones.
    - ``"memorize"`` (Theorem 2): ``M <- WR(M, k_n, onehot(B' + y_n), 1, 1)`` on the whole memory
      in support order; afterwards ``RD(M, k_n, 1)`` is exactly the one-hot of the last-written
      support's class (and of every support's class when the keys are orthogonal).

    Scores are ``gamma * (RD(M, mu(x), 1) + beta)``; without an episode (or with no erase and unit
    novel rows) they equal the cosine classifier's.
    """

    def __init__(
        self,
        num_base: int,
        dim: int,
        scale: float = 10.0,
        learn_scale: bool = True,
        gate_hidden: int = 64,
        write_mode: str = "batched",
        value_scale: str = "mean",
        p_w_init: float = 0.9,
        p_e_init: float = 0.2,
        gate: str = "separate",
        p_init: float = 0.5,
        erase: str = "episode",
    ) -> None:
        super().__init__(num_base, dim, scale, learn_scale)
        if erase not in ERASES:
            raise ValueError(f"erase: expected one of {ERASES}, got {erase!r}")
        if erase == "batch_mean" and write_mode != "batched":
            raise ValueError(
                f"erase: 'batch_mean' averages the batched erase; needs write_mode='batched', "
                f"got {write_mode!r}"
            )
        self.erase = erase
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode: expected one of {WRITE_MODES}, got {write_mode!r}")
        if value_scale not in ("mean", "one"):
            raise ValueError(f"value_scale: expected 'mean' or 'one', got {value_scale!r}")
        if gate not in GATES:
            raise ValueError(f"gate: expected one of {GATES}, got {gate!r}")
        self.write_mode = write_mode
        self.value_scale = value_scale
        self.gate_mode = gate
        if gate == "tied":
            self.gate = GateNet(dim, gate_hidden, p_init)
        else:
            self.gate_w: nn.Module = GateNet(dim, gate_hidden, p_w_init)
            self.gate_e: nn.Module = GateNet(dim, gate_hidden, p_e_init)

    def gates(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Write and erase probabilities ``(p_w, p_e)``, each `[S]`, for unit keys `[S, d]`.

        With ``gate="tied"`` both are the one gate network's output (the same tensor).
        """
        if self.gate_mode == "tied":
            p = self.gate(keys)
            return p, p
        return self.gate_w(keys), self.gate_e(keys)

    def process_support_set(
        self,
        support_features: Tensor,
        support_labels: Tensor,
        base_ids: Tensor | None = None,
        n_way: int | None = None,
        write_mode: str | None = None,
    ) -> Tensor:
        """Write the support set into the memory; returns the memory `[B' + N, d]`."""
        f = _check_features("support_features", support_features, self.dim)
        labels, n_way = _check_labels(support_labels, f.shape[0], n_way)
        ids = self._base_ids(base_ids, f.device)
        mode = self.write_mode if write_mode is None else write_mode
        if mode not in WRITE_MODES:
            raise ValueError(f"write_mode: expected one of {WRITE_MODES}, got {mode!r}")
        k = unit_norm(f)  # [S, d]
        m_base = unit_norm(self.weight_base[ids])  # [B', d]
        if mode == "memorize":
            M = torch.cat([m_base, m_base.new_zeros(n_way, self.dim)], 0)
            for n in range(k.shape[0]):
                v = F.one_hot(labels[n] + ids.numel(), M.shape[0]).to(k.dtype)
                M = one_shot_memorize(M, k[n], v)
        else:
            p_w, p_e = self.gates(k)
            v = F.one_hot(labels, n_way).to(k.dtype)  # [S, N]
            if self.value_scale == "mean":
                v = v / torch.bincount(labels, minlength=n_way).to(k.dtype)[labels].unsqueeze(1)
            if mode == "batched":
                m_novel = (p_w.unsqueeze(1) * v).T @ k  # sum_n p_w,n v_n k_n^T
                m_base = m_base - ((m_base @ k.T) * p_e) @ k  # sum_n p_e,n (M_b k_n) k_n^T
            else:
                m_novel = k.new_zeros(n_way, self.dim)
                zero_v = k.new_zeros(m_base.shape[0])
                for n in range(k.shape[0]):
                    m_novel = nam_write(m_novel, k[n], v[n], p_w[n])
                    m_base = nam_write(m_base, k[n], zero_v, 0.0, p_e[n])
            M = torch.cat([m_base, m_novel], 0)
        self._episode = {"weights": M, "num_novel": torch.tensor(n_way)}
        return M

    def process_support_sets(
        self,
        support_features: Tensor,
        support_labels: Tensor,
        base_ids: Tensor | None = None,
        n_way: int | None = None,
    ) -> Tensor:
        """A batch of episodes (see :meth:`_EpisodicHead.process_support_sets`).

        With ``erase="batch_mean"`` (the authors' code, an ablation here) the batched base erase
        ``sum_n p_e,n (M_b k_n) k_n^T`` is averaged over the ``E`` episodes and that mean is
        applied to every episode's base rows. Evaluation processes one episode at a time, where
        the mean is the episode's own erase: the train/test mismatch of that code.
        """
        if self.erase == "episode":
            return super().process_support_sets(support_features, support_labels, base_ids, n_way)
        f, labels, ids = _check_episode_batch(support_features, support_labels, base_ids, self.dim)
        w0 = unit_norm(self.weight_base)  # [num_base, d]: erase rows of the full base memory
        novel, erases = [], []
        for e in range(f.shape[0]):
            # Novel rows and gates as in one episode; the erase of all num_base rows from W0.
            m = self.process_support_set(f[e], labels[e], base_ids=ids[e], n_way=n_way)
            n = int(self._episode["num_novel"])  # type: ignore[index]
            novel.append(m[m.shape[0] - n :])
            k = unit_norm(f[e])
            _p_w, p_e = self.gates(k)
            erases.append(((w0 @ k.T) * p_e) @ k)  # [num_base, d]
        w = w0 - torch.stack(erases).mean(0)
        weights = torch.stack(
            [
                torch.cat([w[self._base_ids(ids[e], f.device)], novel[e]], 0)
                for e in range(f.shape[0])
            ]
        )
        self._episode = {"weights": weights, "num_novel": torch.tensor(novel[0].shape[0])}
        return weights

    def read(self, query_features: Tensor) -> Tensor:
        """``RD(M, mu(x), 1)`` for each query: `[Q, d]` -> `[Q, B' + N]` (unscaled memory read;
        `[E, Q, d]` -> `[E, Q, B' + N]` after :meth:`process_support_sets`)."""
        M = unit_norm(self.weight_base) if self._episode is None else self._episode["weights"]
        q = unit_norm(_check_queries(query_features, self.dim, M))
        return q @ M.transpose(-1, -2)  # = nam_read(M, q_i) for every row i, in one product

    def forward(self, query_features: Tensor) -> Tensor:
        """`[Q, d]` -> scores `[Q, B' + N]` (base only, `[Q, num_base]`, without an episode)."""
        return self.gamma * (self.read(query_features) + self.beta)


def one_shot_memorize(M: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Theorem 2: ``WR(M, mu(x), y, 1, 1)``, after which ``RD(M', mu(x), 1) == y`` exactly.

    Args:
        M: `[..., d_v, d_k]` memory (e.g. a classifier's weight matrix `[classes, d]`).
        x: `[..., d_k]` input (any non-zero length; it is unit-normalised into the key).
        y: `[..., d_v]` the value to recall for ``x``.
    Returns:
        `[..., d_v, d_k]` the new memory. (For ``M' @ x == y`` on the raw ``x``, pass
        ``y / ||x||``, the paper's §8 form.)
    """
    return nam_write(M, unit_norm(x), y, 1.0, 1.0)


def build_head(config: FewShotHeadConfig) -> CosineClassifier | NAMFewShotClassifier:
    """The head named by ``config.head`` (``"cosine"`` or ``"nam"``)."""
    if config.head == "cosine":
        return CosineClassifier(
            config.num_base, config.dim, config.scale, config.learn_scale, config.generator
        )
    if config.head == "nam":
        return NAMFewShotClassifier(
            config.num_base,
            config.dim,
            config.scale,
            config.learn_scale,
            config.gate_hidden,
            config.write_mode,
            config.value_scale,
            config.p_w_init,
            config.p_e_init,
            config.gate,
            config.p_init,
            config.erase,
        )
    raise ValueError(f"head: expected 'cosine' or 'nam', got {config.head!r}")


class FewShotNetwork(nn.Module):
    """A feature extractor followed by a few-shot head (stage 1 trains both on base classes).

    ``forward(images)`` scores the head's current classes (base only without an episode);
    ``features(images)`` exposes the backbone output `[B, d]` used as keys / support features.
    """

    def __init__(self, backbone: nn.Module, head: CosineClassifier | NAMFewShotClassifier) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))
