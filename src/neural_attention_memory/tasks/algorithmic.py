"""Algorithmic tasks for zero-shot length generalisation (docs/paper.md §5), in masked-completion form.

Every task is a sequence-tagging problem with input and target aligned 1:1, so encoder-only models
(Transformer, Universal Transformer) and recurrent models (LSTM, DNC, Stack-RNN, LSAM, NAM-TM) see
exactly the same data: the input holds the problem, a separator and then ``<mask>`` slots; the
target holds the answer at the slots and :data:`IGNORE_INDEX` everywhere else. Numbers are written
little-endian (least significant digit first). Where the answer can be shorter than the slots, the
remaining slots must be predicted as ``<eos>``, so the number of slots never reveals the answer.

Worked examples (``n`` is the size that the splits range over, "digits"; ``.`` = ignored target,
``_`` = ``<sep>``, ``?`` = ``<mask>``, ``$`` = ``<eos>``):

===============  ==================================  ==================================
task             input                               target
===============  ==================================  ==================================
``fib``          ``4 7 _ 9 5 _ ? ? ?``   (74 + 59)   ``. . . . . . 3 3 1``  (133)
``palin``        ``3 1 4 _ ? ? ?``                   ``. . . . 4 1 3``
``reduce``       ``0 5 0 7 _ ? ? ? ?``               ``. . . . . 5 7 $ $``
``dyck4``        ``( [ ] < { } _ ? ?``               ``. . . . . . . > )``
``copy``         ``3 1 4 _ ? ? ?``                   ``. . . . 3 1 4``
``repeat-copy``  ``3 1 _ ? ? ? ?``  (repeats = 2)    ``. . . 3 1 3 1``
===============  ==================================  ==================================

- ``fib`` (also ``addition``): the next term of a Fibonacci-like sequence ``a, b, a + b``: two
  ``n``-digit numbers, ``n + 1`` slots (the sum has ``n`` or ``n + 1`` digits; ``<eos>`` fills).
- ``palin`` (also ``reverse``): the ``n`` digits reversed. Unlike the authors' released generator,
  the answer appears only in the target (docs/paper.md §5).
- ``reduce``: the ``n`` digits with every zero removed; ``n`` slots, ``<eos>`` after the answer.
  Zeros are drawn with probability ``zero_prob`` (default 0.5) so that there is something to drop.
- ``dyck4``: a prefix over four bracket types ``() [] {} <>`` with ``n`` unclosed brackets (plus
  up to ``n`` matched pairs placed anywhere); the ``n`` slots hold the closing brackets, innermost
  first.
- ``copy`` / ``repeat-copy``: the ``n`` digits, once / ``repeats`` times.

Splits (docs/paper.md §5): ``train`` 1–10 digits, ``id`` 5–10, ``od_easy`` 11–13, ``od_hard`` 14–16,
``test`` 17–22 (the authors' later code); all configurable through :func:`default_splits`. The
training set is drawn first; every evaluation set then excludes every problem already drawn (the
training set and earlier evaluation sets) and holds no duplicates, so evaluation never overlaps
training even where the length ranges do (``id``). All sampling uses a ``numpy`` generator seeded
from ``(seed, task, split)``: the same seed gives the same data on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "BRACKETS",
    "EOS",
    "IGNORE_INDEX",
    "MASK",
    "PAD",
    "SCAN_ACTIONS",
    "SCAN_WORDS",
    "SEP",
    "TASKS",
    "TASK_ALIASES",
    "VOCAB",
    "VOCAB_SIZE",
    "Example",
    "SequenceDataset",
    "build_eval_dataset",
    "build_splits",
    "collate",
    "decode",
    "default_splits",
    "encode",
    "make_example",
    "parse_range",
]

# --------------------------------------------------------------------------------------------
# One vocabulary for every task of the family (SCAN included), so a model's embedding and output
# layer do not depend on the task. Targets use the same ids; IGNORE_INDEX marks positions without
# a target.

SPECIALS = ("<pad>", "<mask>", "<sep>", "<eos>")
DIGITS = tuple(str(i) for i in range(10))
BRACKETS = ("(", ")", "[", "]", "{", "}", "<", ">")
SCAN_WORDS = (
    "walk",
    "look",
    "run",
    "jump",
    "turn",
    "left",
    "right",
    "opposite",
    "around",
    "twice",
    "thrice",
    "and",
    "after",
)
SCAN_ACTIONS = ("I_WALK", "I_LOOK", "I_RUN", "I_JUMP", "I_TURN_LEFT", "I_TURN_RIGHT")
VOCAB: tuple[str, ...] = SPECIALS + DIGITS + BRACKETS + SCAN_WORDS + SCAN_ACTIONS
VOCAB_SIZE = len(VOCAB)
TOKEN_ID: dict[str, int] = {t: i for i, t in enumerate(VOCAB)}
PAD, MASK, SEP, EOS = (TOKEN_ID[t] for t in SPECIALS)
IGNORE_INDEX = -100
DIGIT0 = TOKEN_ID["0"]
OPEN_TO_CLOSE = {"(": ")", "[": "]", "{": "}", "<": ">"}


def encode(symbols: Iterable[str]) -> list[int]:
    """Symbols -> token ids; raises ``ValueError`` naming an unknown symbol."""
    out = []
    for s in symbols:
        if s not in TOKEN_ID:
            raise ValueError(f"symbols: expected tokens of VOCAB, got unknown symbol {s!r}")
        out.append(TOKEN_ID[s])
    return out


def decode(ids: Iterable[int]) -> list[str]:
    """Token ids -> symbols (``IGNORE_INDEX`` becomes ``"."``)."""
    return ["." if int(i) == IGNORE_INDEX else VOCAB[int(i)] for i in ids]


@dataclass(frozen=True)
class Example:
    """One aligned sample: ``tokens`` and ``targets`` have the same length; ``size`` is ``n``."""

    tokens: tuple[int, ...]
    targets: tuple[int, ...]
    size: int


def _masked(problem: Sequence[int], answer: Sequence[int], slots: int, size: int) -> Example:
    """``problem <sep> <mask>*slots`` with ``answer`` (then ``<eos>``) at the slots."""
    if len(answer) > slots:  # generator bug guard: never truncate an answer silently
        raise AssertionError(f"answer of length {len(answer)} does not fit {slots} slots")
    tokens = (*problem, SEP, *([MASK] * slots))
    fill = [*answer, *([EOS] * (slots - len(answer)))]
    targets = (*([IGNORE_INDEX] * (len(problem) + 1)), *fill)
    return Example(tuple(tokens), tuple(targets), size)


def _digits(rng: np.random.Generator, n: int, leading_nonzero: bool = False) -> list[int]:
    d = rng.integers(0, 10, size=n).tolist()
    if leading_nonzero and n > 1:  # little-endian: the most significant digit is the last one
        d[-1] = int(rng.integers(1, 10))
    return d


def _add_little_endian(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Schoolbook addition of little-endian digit lists (the procedure the task wants learnt)."""
    out, carry = [], 0
    for i in range(max(len(a), len(b))):
        s = (a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) + carry
        out.append(s % 10)
        carry = s // 10
    if carry:
        out.append(carry)
    return out


def _tok(ds: Sequence[int]) -> list[int]:
    return [DIGIT0 + d for d in ds]


def gen_fib(rng: np.random.Generator, n: int, **_: Any) -> Example:
    a = _digits(rng, n, leading_nonzero=True)
    b = _digits(rng, n, leading_nonzero=True)
    problem = [*_tok(a), SEP, *_tok(b)]
    return _masked(problem, _tok(_add_little_endian(a, b)), n + 1, n)


def gen_palin(rng: np.random.Generator, n: int, **_: Any) -> Example:
    d = _digits(rng, n)
    return _masked(_tok(d), _tok(d[::-1]), n, n)


def gen_reduce(rng: np.random.Generator, n: int, zero_prob: float = 0.5, **_: Any) -> Example:
    nonzero = rng.integers(1, 10, size=n)
    d = np.where(rng.random(n) < zero_prob, 0, nonzero).tolist()
    return _masked(_tok(d), _tok([x for x in d if x != 0]), n, n)


def gen_dyck4(rng: np.random.Generator, n: int, **_: Any) -> Example:
    opens = list(OPEN_TO_CLOSE)
    seq = [opens[i] for i in rng.integers(0, 4, size=n)]
    # Inserting an adjacent matched pair anywhere keeps the unclosed brackets unchanged; repeated
    # insertion reaches every Dyck prefix (pairs nest when inserted inside earlier pairs).
    for _ in range(int(rng.integers(0, n + 1))):
        o = opens[int(rng.integers(0, 4))]
        pos = int(rng.integers(0, len(seq) + 1))
        seq[pos:pos] = [o, OPEN_TO_CLOSE[o]]
    stack: list[str] = []
    for s in seq:
        if s in OPEN_TO_CLOSE:
            stack.append(s)
        else:
            stack.pop()
    answer = [OPEN_TO_CLOSE[o] for o in reversed(stack)]
    return _masked(encode(seq), encode(answer), n, n)


def gen_copy(rng: np.random.Generator, n: int, **_: Any) -> Example:
    d = _digits(rng, n)
    return _masked(_tok(d), _tok(d), n, n)


def gen_repeat_copy(rng: np.random.Generator, n: int, repeats: int = 2, **_: Any) -> Example:
    d = _digits(rng, n)
    return _masked(_tok(d), _tok(d * repeats), repeats * n, n)


TASKS: dict[str, Callable[..., Example]] = {
    "fib": gen_fib,
    "palin": gen_palin,
    "reduce": gen_reduce,
    "dyck4": gen_dyck4,
    "copy": gen_copy,
    "repeat-copy": gen_repeat_copy,
}
TASK_ALIASES = {"addition": "fib", "reverse": "palin"}
TASK_PARAMS: dict[str, tuple[str, ...]] = {"reduce": ("zero_prob",), "repeat-copy": ("repeats",)}


def _task_name(task: object) -> str:
    if not isinstance(task, str) or TASK_ALIASES.get(task, task) not in TASKS:
        valid = ", ".join([*TASKS, *TASK_ALIASES])
        raise ValueError(f"task: unknown algorithmic task {task!r}; valid choices: {valid}")
    return TASK_ALIASES.get(task, task)


def _check_params(task: str, params: Mapping[str, Any]) -> dict[str, Any]:
    allowed = TASK_PARAMS.get(task, ())
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"params: task {task!r} accepts {list(allowed) or 'no parameters'}, got {key!r}"
            )
    if "zero_prob" in params and not 0.0 <= float(params["zero_prob"]) < 1.0:
        raise ValueError(
            f"zero_prob: expected a probability in [0, 1), got {params['zero_prob']!r}"
        )
    if "repeats" in params:
        r = params["repeats"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"repeats: expected a positive int, got {r!r}")
    return dict(params)


def make_example(task: str, n: int, rng: np.random.Generator, **params: Any) -> Example:
    """Draw one example of ``task`` with size ``n`` (digits, or unclosed brackets for dyck4)."""
    task = _task_name(task)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    return TASKS[task](rng, n, **_check_params(task, params))


def parse_range(value: object, name: str = "digits") -> tuple[int, int]:
    """``"11-13"``, ``"7"``, ``7``, ``(11, 13)`` or ``[11, 13]`` -> ``(lo, hi)``, ``1 <= lo <= hi``."""
    lo_hi: Sequence[Any]
    if isinstance(value, int) and not isinstance(value, bool):  # e.g. ``--digits 7`` parsed by YAML
        value = [value, value]
    if isinstance(value, str):
        parts = value.replace(" ", "").split("-")
        lo_hi = parts if len(parts) == 2 else parts * 2 if len(parts) == 1 else ()
        try:
            lo_hi = [int(p) for p in lo_hi]
        except ValueError:
            lo_hi = ()
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo_hi = value
    else:
        lo_hi = ()
    if (
        len(lo_hi) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in lo_hi)
        or not 1 <= lo_hi[0] <= lo_hi[1]
    ):
        raise ValueError(
            f"{name}: expected a range 'A-B' (or [A, B]) with 1 <= A <= B, got {value!r}"
        )
    return int(lo_hi[0]), int(lo_hi[1])


def default_splits() -> dict[str, dict[str, Any]]:
    """The paper's splits (plus ``test`` 17–22): ``{split: {"digits": [lo, hi], "count": N}}``.

    ``train`` has 25,600 samples as in the paper's epoch; each evaluation set has 2,048.
    """
    return {
        "train": {"digits": [1, 10], "count": 25_600},
        "id": {"digits": [5, 10], "count": 2_048},
        "od_easy": {"digits": [11, 13], "count": 2_048},
        "od_hard": {"digits": [14, 16], "count": 2_048},
        "test": {"digits": [17, 22], "count": 2_048},
    }


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator keyed by ``(seed, names)``, stable across Python runs (no ``hash()``)."""
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *np.frombuffer(digest[:8], np.uint32)])


def _draw(
    task: str,
    lo: int,
    hi: int,
    count: int,
    rng: np.random.Generator,
    params: Mapping[str, Any],
    exclude: set[tuple[int, ...]] | None,
) -> list[Example]:
    """``count`` examples with sizes uniform in ``[lo, hi]``; if ``exclude`` is given, every
    example is new (not in ``exclude``, no duplicates) and is added to ``exclude``."""
    out: list[Example] = []
    attempts = 0
    max_attempts = 50 * count + 1000
    while len(out) < count:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(
                f"count: cannot draw {count} distinct {task} problems of size {lo}-{hi} that are "
                f"not in the training set (got {len(out)}); use fewer samples or longer sizes"
            )
        ex = TASKS[task](rng, int(rng.integers(lo, hi + 1)), **params)
        if exclude is not None:
            if ex.tokens in exclude:
                continue
            exclude.add(ex.tokens)
        out.append(ex)
    return out


class SequenceDataset(Dataset):
    """A list of :class:`Example`; items are dicts of ``tokens``/``targets`` `[T]` and ``size``.

    ``input_loss=True`` adds ``"input_loss": True`` to every item, so that :func:`collate` marks
    the batch for a loss on every real position (the input reproduced off the answer slots).
    """

    def __init__(
        self, examples: Sequence[Example], name: str = "", input_loss: bool = False
    ) -> None:
        self.examples = list(examples)
        self.name = name
        self.input_loss = bool(input_loss)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        return {
            "tokens": torch.tensor(ex.tokens, dtype=torch.long),
            "targets": torch.tensor(ex.targets, dtype=torch.long),
            "size": ex.size,
        } | ({"input_loss": True} if self.input_loss else {})

    def sizes(self) -> list[int]:
        return [ex.size for ex in self.examples]


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
    """Pad a list of items to a batch.

    Returns:
        ``tokens`` `[B, T]` (``<pad>`` = 0 after the end), ``targets`` `[B, T]`
        (``IGNORE_INDEX`` after the end), ``padding_mask`` `[B, T]` bool (True = padding) and
        ``sizes`` `[B]`; plus ``input_loss`` (a bool scalar, True) when the items ask for the
        loss on every real position (:class:`SequenceDataset`).
    """
    if len(items) == 0:
        raise ValueError("items: expected a non-empty list of samples, got an empty list")
    T = max(len(it["tokens"]) for it in items)
    B = len(items)
    tokens = torch.full((B, T), PAD, dtype=torch.long)
    targets = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    mask = torch.ones(B, T, dtype=torch.bool)
    for b, it in enumerate(items):
        t = len(it["tokens"])
        tokens[b, :t] = torch.as_tensor(it["tokens"])
        targets[b, :t] = torch.as_tensor(it["targets"])
        mask[b, :t] = False
    sizes = torch.tensor([int(it["size"]) for it in items], dtype=torch.long)
    batch = {"tokens": tokens, "targets": targets, "padding_mask": mask, "sizes": sizes}
    flags = {bool(it.get("input_loss", False)) for it in items}
    if len(flags) > 1:
        raise ValueError(
            "items: expected all or none of the samples to carry input_loss, got a mix"
        )
    if flags == {True}:
        batch["input_loss"] = torch.tensor(True)
    return batch


def build_splits(
    task: str,
    seed: int,
    splits: Mapping[str, Mapping[str, Any]] | None = None,
    **params: Any,
) -> dict[str, SequenceDataset]:
    """All splits of ``task``: ``{"train": ds, "id": ds, ...}``.

    Args:
        task: one of :data:`TASKS` (or an alias in :data:`TASK_ALIASES`).
        seed: data seed; the same seed gives the same data.
        splits: ``{split: {"digits": "A-B" | [A, B], "count": N}}`` with a ``"train"`` entry;
            defaults to :func:`default_splits`.
        params: task parameters (``zero_prob`` for reduce, ``repeats`` for repeat-copy).
    """
    task = _task_name(task)
    params = _check_params(task, params)
    splits = default_splits() if splits is None else splits
    if not isinstance(splits, Mapping) or "train" not in splits:
        raise ValueError(f"splits: expected a mapping with a 'train' entry, got {splits!r}")
    seen: set[tuple[int, ...]] = set()
    out: dict[str, SequenceDataset] = {}
    order = ["train", *[s for s in splits if s != "train"]]
    for name in order:
        spec = splits[name]
        if not isinstance(spec, Mapping) or "digits" not in spec or "count" not in spec:
            raise ValueError(
                f"splits.{name}: expected {{'digits': 'A-B', 'count': N}}, got {spec!r}"
            )
        lo, hi = parse_range(spec["digits"], f"splits.{name}.digits")
        count = spec["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"splits.{name}.count: expected a positive int, got {count!r}")
        rng = _rng(seed, task, name)
        if name == "train":
            examples = _draw(task, lo, hi, count, rng, params, exclude=None)
            seen.update(ex.tokens for ex in examples)
        else:
            examples = _draw(task, lo, hi, count, rng, params, exclude=seen)
        out[name] = SequenceDataset(examples, name)
    return out


def build_eval_dataset(
    task: str,
    digits: object,
    count: int,
    seed: int,
    exclude: Iterable[Example] = (),
    **params: Any,
) -> SequenceDataset:
    """An extra evaluation set with sizes in ``digits`` (``"A-B"``), avoiding ``exclude``.

    Used by ``nam eval RUN_DIR --digits A-B`` and by the accuracy-vs-length plots; pass the
    training examples as ``exclude`` so the set never overlaps training.
    """
    task = _task_name(task)
    params = _check_params(task, params)
    lo, hi = parse_range(digits)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected a positive int, got {count!r}")
    seen = {ex.tokens for ex in exclude}
    rng = _rng(seed, task, f"digits-{lo}-{hi}")
    return SequenceDataset(_draw(task, lo, hi, count, rng, params, exclude=seen), f"{lo}-{hi}")
