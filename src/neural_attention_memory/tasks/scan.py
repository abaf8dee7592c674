"""SCAN (Lake & Baroni, 2018), generated from its grammar, with the standard length split.

The grammar (``C`` is a command; ``x1``/``x2`` the two halves of a conjunction)::

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D[1] opposite D[2] | D[1] around D[2] | D | U
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

and its interpretation function ``[[.]]``::

    [[walk]] = I_WALK   [[look]] = I_LOOK   [[run]] = I_RUN   [[jump]] = I_JUMP
    [[turn left]] = I_TURN_LEFT            [[turn right]] = I_TURN_RIGHT
    [[u left]] = I_TURN_LEFT [[u]]         [[u right]] = I_TURN_RIGHT [[u]]
    [[turn opposite left]] = I_TURN_LEFT I_TURN_LEFT      (and right alike)
    [[u opposite left]] = I_TURN_LEFT I_TURN_LEFT [[u]]   (and right alike)
    [[turn around left]] = I_TURN_LEFT x 4                (and right alike)
    [[u around left]] = (I_TURN_LEFT [[u]]) x 4           (and right alike)
    [[x twice]] = [[x]] [[x]]              [[x thrice]] = [[x]] [[x]] [[x]]
    [[x1 and x2]] = [[x1]] [[x2]]          [[x1 after x2]] = [[x2]] [[x1]]

Enumerating it gives the full set of 20,910 commands (34 ``V`` phrases, 102 ``S`` phrases,
``102 + 2 * 102^2`` commands). Action sequences have 1–48 actions. The **length split** trains on
the 16,990 commands whose action sequence has at most 22 actions and tests on the 3,920 longer
ones (24–48 actions; no command has exactly 23).

Encoder-only format (how a seq2seq pair becomes a 1:1 tagging problem, as for the algorithmic
tasks): ``command words <sep> <mask> * slots``; the target holds the actions at the first slots and
``<eos>`` at the rest; ``slots`` is the longest action sequence of the whole set (48) by default,
so the slot count never reveals the answer's length. Example (``slots = 4`` for brevity)::

    input   jump twice <sep> <mask> <mask> <mask> <mask>
    target  .    .     .     I_JUMP I_JUMP <eos>  <eos>

Our splits: ``train`` = the short commands minus a held-out ``id`` set (``id_count`` commands, for
model selection; the paper reports training accuracy instead), ``test`` = all long commands. The
``size`` of an example (what accuracy-vs-length plots use) is its number of actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .algorithmic import Example, SequenceDataset, _masked, _rng, encode, parse_range

__all__ = [
    "MAX_ACTIONS",
    "TRAIN_MAX_ACTIONS",
    "build_eval_dataset",
    "build_splits",
    "enumerate_commands",
    "interpret",
    "length_split",
    "make_example",
]

PRIMITIVES = ("walk", "look", "run", "jump")
DIRECTIONS = ("left", "right")
TRAIN_MAX_ACTIONS = 22
MAX_ACTIONS = 48

_ACTION = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
_TURN = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}


def _interpret_v(words: Sequence[str]) -> list[str]:
    """``V`` and ``D`` phrases (1 to 3 words)."""
    if len(words) == 1 and words[0] in PRIMITIVES:
        return [_ACTION[words[0]]]
    if len(words) == 2 and words[1] in DIRECTIONS and words[0] in (*PRIMITIVES, "turn"):
        turn = [_TURN[words[1]]]
        return turn if words[0] == "turn" else [*turn, _ACTION[words[0]]]
    if (
        len(words) == 3
        and words[0] in (*PRIMITIVES, "turn")
        and words[1] in ("opposite", "around")
        and words[2] in DIRECTIONS
    ):
        unit = [] if words[0] == "turn" else [_ACTION[words[0]]]
        turn = _TURN[words[2]]
        if words[1] == "opposite":
            return [turn, turn, *unit]
        return [turn, *unit] * 4
    raise ValueError(f"command: not a SCAN phrase: {' '.join(words)!r}")


def _interpret_s(words: Sequence[str]) -> list[str]:
    if words and words[-1] == "twice":
        return _interpret_v(words[:-1]) * 2
    if words and words[-1] == "thrice":
        return _interpret_v(words[:-1]) * 3
    return _interpret_v(words)


def interpret(command: str | Sequence[str]) -> list[str]:
    """The interpretation function: ``"jump twice after walk left"`` -> action list.

    Raises ``ValueError`` for a string outside the grammar.
    """
    words = command.split() if isinstance(command, str) else list(command)
    for conj in ("and", "after"):
        if conj in words:
            i = words.index(conj)
            first, second = _interpret_s(words[:i]), _interpret_s(words[i + 1 :])
            return first + second if conj == "and" else second + first
    return _interpret_s(words)


@lru_cache(maxsize=1)
def enumerate_commands() -> tuple[tuple[str, ...], ...]:
    """Every command of the grammar, in a fixed order (20,910 of them)."""
    d = [(u, dr) for u in PRIMITIVES for dr in DIRECTIONS] + [("turn", dr) for dr in DIRECTIONS]
    v: list[tuple[str, ...]] = []
    for head in (*PRIMITIVES, "turn"):
        for mod in ("opposite", "around"):
            for dr in DIRECTIONS:
                v.append((head, mod, dr))
    v += d + [(u,) for u in PRIMITIVES]
    s = [(*x, rep) for x in v for rep in ("twice", "thrice")] + v
    commands = list(s)
    for conj in ("and", "after"):
        commands += [(*a, conj, *b) for a in s for b in s]
    return tuple(commands)


def make_example(command: Sequence[str], slots: int = MAX_ACTIONS) -> Example:
    """One masked-completion example; ``size`` is the number of actions."""
    actions = interpret(command)
    if len(actions) > slots:
        raise ValueError(
            f"slots: expected >= {len(actions)} for {' '.join(command)!r}, got {slots}"
        )
    return _masked(encode(command), encode(actions), slots, len(actions))


def length_split(
    max_train_actions: int = TRAIN_MAX_ACTIONS,
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """``(short, long)`` commands: at most / more than ``max_train_actions`` actions."""
    short, long = [], []
    for c in enumerate_commands():
        (short if len(interpret(c)) <= max_train_actions else long).append(c)
    return short, long


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {value!r}")
    return value


def build_splits(
    seed: int,
    id_count: int = 1_000,
    test_count: int | None = None,
    max_train_actions: int = TRAIN_MAX_ACTIONS,
    slots: int = MAX_ACTIONS,
    train_count: int | None = None,
) -> dict[str, SequenceDataset]:
    """``{"train", "id", "test"}`` of the length split in the encoder-only format.

    Args:
        seed: shuffles the short commands before the ``id`` hold-out (and any sub-sampling).
        id_count: short commands held out of training for model selection.
        test_count: sub-sample the long commands to this many (None = all 3,920).
        max_train_actions: the split threshold (22 is the standard split).
        slots: mask slots after the command; at least the longest action sequence used.
        train_count: sub-sample the training commands (None = all; for quick CPU runs).
    """
    _check_int("id_count", id_count, 1)
    _check_int("max_train_actions", max_train_actions, 1)
    _check_int("slots", slots, 1)
    short, long = length_split(max_train_actions)
    if id_count >= len(short):
        raise ValueError(f"id_count: expected < {len(short)} (the short commands), got {id_count}")
    rng = _rng(seed, "scan", "split")
    perm = rng.permutation(len(short))
    held, train = [short[i] for i in perm[:id_count]], [short[i] for i in perm[id_count:]]
    if train_count is not None:
        train = train[: _check_int("train_count", train_count, 1)]
    if test_count is not None:
        _check_int("test_count", test_count, 1)
        long = [long[i] for i in sorted(rng.permutation(len(long))[:test_count])]
    return {
        name: SequenceDataset([make_example(c, slots) for c in cmds], name)
        for name, cmds in (("train", train), ("id", held), ("test", long))
    }


def build_eval_dataset(
    digits: object,
    seed: int,
    count: int | None = None,
    exclude: Iterable[Example] = (),
    slots: int = MAX_ACTIONS,
) -> SequenceDataset:
    """Commands whose action count lies in ``digits`` (``"A-B"``), minus ``exclude``.

    ``count`` sub-samples (seeded); None keeps them all.
    """
    lo, hi = parse_range(digits)
    seen = {ex.tokens for ex in exclude}
    examples = [
        ex
        for c in enumerate_commands()
        if lo <= len(interpret(c)) <= hi
        for ex in [make_example(c, slots)]
        if ex.tokens not in seen
    ]
    if count is not None and count < len(examples):
        idx = np.sort(_rng(seed, "scan", f"{lo}-{hi}").permutation(len(examples))[:count])
        examples = [examples[i] for i in idx]
    return SequenceDataset(examples, f"{lo}-{hi}")


def split_counts() -> Mapping[str, Any]:
    """Sizes of the standard length split, for documentation and checks."""
    short, long = length_split()
    return {"total": len(short) + len(long), "train": len(short), "test": len(long)}
