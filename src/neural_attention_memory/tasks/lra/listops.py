"""ListOps (Nangia & Bowman 2018) as used by Long Range Arena: generator, TSV files, evaluator.

An expression is a nested list of operators over single digits, e.g. ``[MAX 2 9 [MIN 4 7 ] 0 ]``
(value 9). Operators: ``MIN``, ``MAX``, ``MED`` (median, truncated to an int when the count is even)
and ``SM`` (sum modulo 10). The label is the value, 10 classes.

Grammar of the generator (the LRA procedure, re-implemented): the root is an operator; every other
node is an operator with probability ``op_prob`` (0.25) while the nesting depth is below
``max_depth``, otherwise a digit; an operator has 2 to ``max_args`` arguments. Expressions are
redrawn until their length (tokens, brackets included) lies in ``[min_length, max_length]``;
drawing stops early as soon as a draw is too long, which changes the speed, not the distribution.

Files follow the LRA release (``listops-1000/basic_{train,val,test}.tsv``): a header
``Source\\tTarget`` then one expression per line, where the source is the binarised tree printed with
parentheses, e.g. ``( ( ( [MAX 2 ) 9 ) ] )``; readers drop the parentheses, as LRA's tokenizer does.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "LISTOPS_VOCAB",
    "OPERATORS",
    "ListOpsConfig",
    "encode_listops",
    "evaluate_listops",
    "generate_listops",
    "read_listops_tsv",
    "sample_listops",
    "to_lra_source",
    "tree_depth",
    "write_listops_tsv",
]

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
DIGITS = tuple(str(i) for i in range(10))
# Token ids: 0 is padding; the rest is fixed so files written anywhere encode the same way.
LISTOPS_VOCAB: tuple[str, ...] = ("<pad>", *DIGITS, *OPERATORS, END)
_ID = {t: i for i, t in enumerate(LISTOPS_VOCAB)}


@dataclass(frozen=True)
class ListOpsConfig:
    """Generator parameters (LRA defaults: lengths 500–2000, depth 10, 10 arguments)."""

    min_length: int = 500
    max_length: int = 2000
    max_depth: int = 10
    max_args: int = 10
    op_prob: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"min_length, max_length: expected 1 <= min_length <= max_length, "
                f"got {self.min_length}, {self.max_length}"
            )
        if self.max_length < 4:
            raise ValueError(
                f"max_length: expected >= 4 (the shortest expression), got {self.max_length}"
            )
        if self.max_depth < 1:
            raise ValueError(f"max_depth: expected >= 1, got {self.max_depth}")
        if self.max_args < 2:
            raise ValueError(f"max_args: expected >= 2, got {self.max_args}")
        if not 0.0 <= self.op_prob < 1.0:
            raise ValueError(f"op_prob: expected a probability in [0, 1), got {self.op_prob}")

    def to_dict(self) -> dict:
        return asdict(self)


# A tree is an int (a digit) or a tuple (operator, [children]).
Tree = int | tuple


class _TooLong(Exception):
    pass


def _draw(rng: np.random.Generator, cfg: ListOpsConfig, depth: int, count: list[int]) -> Tree:
    # depth = operator nesting depth of this node if it is an operator.
    is_op = depth == 1 or (depth <= cfg.max_depth and rng.random() < cfg.op_prob)
    if not is_op:
        count[0] += 1
        if count[0] > cfg.max_length:
            raise _TooLong
        return int(rng.integers(10))
    op = OPERATORS[int(rng.integers(len(OPERATORS)))]
    count[0] += 2  # the operator and its closing bracket
    n_args = int(rng.integers(2, cfg.max_args + 1))
    return (op, [_draw(rng, cfg, depth + 1, count) for _ in range(n_args)])


def _value(tree: Tree) -> int:
    """Value of a tree, by recursion over the tree structure."""
    if isinstance(tree, int):
        return tree
    op, children = tree
    vals = [_value(c) for c in children]
    if op == "[MIN":
        return min(vals)
    if op == "[MAX":
        return max(vals)
    if op == "[MED":
        return int(np.median(vals))
    return sum(vals) % 10


def _tokens(tree: Tree, out: list[str]) -> list[str]:
    if isinstance(tree, int):
        out.append(str(tree))
    else:
        out.append(tree[0])
        for c in tree[1]:
            _tokens(c, out)
        out.append(END)
    return out


def tree_depth(tokens: Sequence[str]) -> int:
    """Operator nesting depth of a token sequence (``[MAX 1 2 ]`` has depth 1)."""
    depth = best = 0
    for t in tokens:
        if t in OPERATORS:
            depth += 1
            best = max(best, depth)
        elif t == END:
            depth -= 1
    return best


def sample_listops(rng: np.random.Generator, cfg: ListOpsConfig) -> tuple[list[str], int]:
    """Draw one expression: ``(tokens, label)`` with ``min_length <= len(tokens) <= max_length``."""
    for _ in range(1_000_000):
        count = [0]
        try:
            tree = _draw(rng, cfg, 1, count)
        except _TooLong:
            continue
        if count[0] >= cfg.min_length:
            return _tokens(tree, []), _value(tree)
    raise RuntimeError(
        f"could not draw a ListOps expression with length in [{cfg.min_length}, {cfg.max_length}] "
        f"(max_depth={cfg.max_depth}, max_args={cfg.max_args}); widen the bounds"
    )


def generate_listops(
    n: int, seed: int, cfg: ListOpsConfig | None = None
) -> list[tuple[list[str], int]]:
    """``n`` expressions ``(tokens, label)`` from a seeded ``numpy`` generator."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    cfg = cfg or ListOpsConfig()
    rng = np.random.default_rng(seed)
    return [sample_listops(rng, cfg) for _ in range(n)]


def evaluate_listops(expr: str | Sequence[str]) -> int:
    """Evaluate an expression from its tokens alone, with an explicit stack.

    Independent of the generator's tree (used to check its labels). Accepts a string (parentheses
    of the LRA format are ignored) or a token list. Raises ``ValueError`` on a malformed expression.
    """
    tokens = _split(expr) if isinstance(expr, str) else list(expr)
    stack: list[list] = []  # each frame: [operator, values...]
    result: int | None = None
    for pos, tok in enumerate(tokens):
        if result is not None:
            raise ValueError(
                f"expr: trailing token {tok!r} at position {pos} after a complete expression"
            )
        if tok in OPERATORS:
            stack.append([tok])
        elif tok == END:
            if not stack or len(stack[-1]) < 2:
                raise ValueError(f"expr: ']' at position {pos} closes no operator with arguments")
            op, *vals = stack.pop()
            if op == "[MIN":
                v = min(vals)
            elif op == "[MAX":
                v = max(vals)
            elif op == "[MED":
                s = sorted(vals)
                mid = len(s) // 2
                # median; for an even count the mean of the middle pair, truncated like int(np.median)
                v = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
            else:
                v = sum(vals) % 10
            if stack:
                stack[-1].append(v)
            else:
                result = v
        elif tok in DIGITS:
            if not stack:
                if len(tokens) == 1:
                    return int(tok)
                raise ValueError(f"expr: digit {tok!r} at position {pos} outside any operator")
            stack[-1].append(int(tok))
        else:
            raise ValueError(f"expr: unknown token {tok!r} at position {pos}")
    if result is None:
        raise ValueError(f"expr: incomplete expression ({len(stack)} unclosed operators)")
    return result


def _split(source: str) -> list[str]:
    return [t for t in source.replace("(", " ").replace(")", " ").split() if t]


def to_lra_source(tokens: Sequence[str]) -> str:
    """Print tokens in the LRA release's binarised-parenthesised form.

    An operator node ``[OP a b c ]`` is printed as ``( ( ( ( [OP a ) b ) c ) ] )`` recursively,
    which is how the LRA generator nests its binary tuples.
    """

    def node(i: int) -> tuple[str, int]:
        tok = tokens[i]
        if tok in DIGITS:
            return tok, i + 1
        if tok not in OPERATORS:
            raise ValueError(f"tokens: unexpected token {tok!r} at position {i}")
        first, j = node(i + 1)
        text = f"( {tok} {first} )"
        while tokens[j] != END:
            arg, j = node(j)
            text = f"( {text} {arg} )"
        return f"( {text} {END} )", j + 1

    text, end = node(0)
    if end != len(tokens):
        raise ValueError(f"tokens: {len(tokens) - end} trailing tokens after the expression")
    return text


def write_listops_tsv(
    path: str | os.PathLike[str], rows: Iterable[tuple[Sequence[str], int]]
) -> int:
    """Write ``(tokens, label)`` rows in the LRA TSV format; returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["Source", "Target"])
        for tokens, label in rows:
            w.writerow([to_lra_source(tokens), int(label)])
            n += 1
    return n


def read_listops_tsv(path: str | os.PathLike[str]) -> list[tuple[list[str], int]]:
    """Read an LRA ListOps TSV (``Source``/``Target`` header) into ``(tokens, label)`` rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ListOps file not found: {path}. Expected the LRA release files "
            "listops-1000/basic_{train,val,test}.tsv (header 'Source<TAB>Target'), or generate "
            "them with neural_attention_memory.tasks.lra.write_listops_tsv."
        )
    rows: list[tuple[list[str], int]] = []
    with path.open(newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["Source", "Target"]:
            raise ValueError(f"{path}: expected a header 'Source<TAB>Target', got {header!r}")
        for lineno, rec in enumerate(reader, start=2):
            if not rec:
                continue
            if len(rec) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 2 tab-separated columns, got {len(rec)}"
                )
            tokens = _split(rec[0])
            bad = [t for t in tokens if t not in _ID or t == "<pad>"]
            if bad or not tokens:
                raise ValueError(
                    f"{path}:{lineno}: unknown ListOps token(s) {bad[:3]!r} or empty source"
                )
            try:
                label = int(rec[1])
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected an integer target, got {rec[1]!r}"
                ) from None
            if not 0 <= label <= 9:
                raise ValueError(f"{path}:{lineno}: expected a target in 0..9, got {label}")
            rows.append((tokens, label))
    return rows


def encode_listops(tokens: Sequence[str]) -> np.ndarray:
    """Token strings -> ids `[T]` (int64) in :data:`LISTOPS_VOCAB` (0 is padding)."""
    try:
        return np.fromiter((_ID[t] for t in tokens), dtype=np.int64, count=len(tokens))
    except KeyError as err:
        raise ValueError(f"tokens: unknown ListOps token {err.args[0]!r}") from None
