"""Algorithmic length-generalisation tasks: every generator against an independent solver."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_attention_memory.tasks import algorithmic as alg
from neural_attention_memory.tasks.algorithmic import (
    EOS,
    IGNORE_INDEX,
    MASK,
    SEP,
    TASKS,
    build_eval_dataset,
    build_splits,
    collate,
    decode,
    make_example,
    parse_range,
)

SMALL = {
    "train": {"digits": [1, 6], "count": 600},
    "id": {"digits": [4, 6], "count": 100},
    "od_easy": {"digits": "7-8", "count": 100},
    "od_hard": {"digits": [9, 10], "count": 100},
}


def split_example(ex: alg.Example) -> tuple[list[str], list[str], int]:
    """(problem symbols, answer symbols without <eos> fill, number of slots), checking layout."""
    tokens, targets = list(ex.tokens), list(ex.targets)
    assert len(tokens) == len(targets)
    first_mask = tokens.index(MASK)
    assert tokens[first_mask - 1] == SEP
    assert all(t == MASK for t in tokens[first_mask:])
    assert all(t == IGNORE_INDEX for t in targets[:first_mask])
    answer = targets[first_mask:]
    assert IGNORE_INDEX not in answer
    # <eos> only as a suffix fill
    n_eos = len(answer) - len([a for a in answer if a != EOS])
    assert all(a == EOS for a in answer[len(answer) - n_eos :])
    problem = decode(tokens[: first_mask - 1])
    return problem, decode(answer[: len(answer) - n_eos]), len(answer)


def solve(task: str, problem: list[str], repeats: int = 2) -> list[str]:
    """Brute-force answers written independently of the generators."""
    if task == "fib":
        i = problem.index("<sep>")
        a, b = "".join(problem[:i]), "".join(problem[i + 1 :])
        return list(str(int(a[::-1]) + int(b[::-1]))[::-1])
    s = "".join(problem)
    if task == "palin":
        return list(s[::-1])
    if task == "reduce":
        return list(re.sub("0", "", s))
    if task == "copy":
        return list(s)
    if task == "repeat-copy":
        return list(s * repeats)
    if task == "dyck4":
        while True:
            t = re.sub(r"\(\)|\[\]|\{\}|<>", "", s)
            if t == s:
                break
            s = t
        assert re.fullmatch(r"[(\[{<]*", s), "prefix has an unmatched closing bracket"
        closer = {"(": ")", "[": "]", "{": "}", "<": ">"}
        return [closer[c] for c in reversed(s)]
    raise AssertionError(task)


def problem_size(task: str, problem: list[str]) -> int:
    if task == "fib":
        i = problem.index("<sep>")
        assert len(problem) == 2 * i + 1
        return i
    if task == "dyck4":
        return len(solve(task, problem))
    return len(problem)


@pytest.mark.parametrize("task", sorted(TASKS))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 24))
def test_generator_matches_brute_force(task: str, seed: int, n: int) -> None:
    ex = make_example(task, n, np.random.default_rng(seed))
    problem, answer, slots = split_example(ex)
    assert ex.size == n
    assert problem_size(task, problem) == n
    assert answer == solve(task, problem)
    expected_slots = {"fib": n + 1, "repeat-copy": 2 * n}.get(task, n)
    assert slots == expected_slots


def test_numbers_have_n_digits_and_dyck_has_matched_pairs() -> None:
    rng = np.random.default_rng(1)
    lengths = set()
    for _ in range(200):
        problem, _, _ = split_example(make_example("fib", 5, rng))
        i = problem.index("<sep>")
        for num in (problem[:i], problem[i + 1 :]):
            assert num[-1] != "0"  # most significant digit (little-endian: last) is non-zero
        problem, _, _ = split_example(make_example("dyck4", 5, rng))
        lengths.add(len(problem))
    assert min(lengths) == 5 and max(lengths) > 5  # matched pairs are inserted sometimes


def test_reduce_zero_prob_and_repeats_parameters() -> None:
    rng = np.random.default_rng(0)
    ex = make_example("reduce", 50, rng, zero_prob=0.0)
    assert split_example(ex)[1] == split_example(ex)[0]
    ex = make_example("repeat-copy", 4, rng, repeats=3)
    problem, answer, slots = split_example(ex)
    assert answer == problem * 3 and slots == 12
    with pytest.raises(ValueError, match="zero_prob"):
        make_example("reduce", 3, rng, zero_prob=1.5)
    with pytest.raises(ValueError, match="repeats"):
        make_example("palin", 3, rng, repeats=2)


def test_worked_examples_of_the_docstring() -> None:
    ex = alg._masked(alg.encode("4 7 <sep> 9 5".split()), alg.encode(list("331")), 3, 2)
    assert decode(ex.tokens) == "4 7 <sep> 9 5 <sep> <mask> <mask> <mask>".split()
    assert solve("fib", "4 7 <sep> 9 5".split()) == list("331")
    assert solve("reduce", list("0507")) == list("57")
    assert solve("dyck4", list("([]<{}")) == [">", ")"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_splits_are_disjoint_bounded_and_deterministic(task: str) -> None:
    a = build_splits(task, seed=3, splits=SMALL)
    b = build_splits(task, seed=3, splits=SMALL)
    c = build_splits(task, seed=4, splits=SMALL)
    assert list(a) == list(SMALL)
    for name, spec in SMALL.items():
        lo, hi = parse_range(spec["digits"])
        ds = a[name]
        assert len(ds) == spec["count"]
        assert all(lo <= s <= hi for s in ds.sizes())
        assert set(ds.sizes()) == set(range(lo, hi + 1))  # every size drawn
        assert [e.tokens for e in ds.examples] == [e.tokens for e in b[name].examples]
    assert [e.tokens for e in a["train"].examples] != [e.tokens for e in c["train"].examples]
    train = {e.tokens for e in a["train"].examples}
    evals = [e.tokens for n in SMALL if n != "train" for e in a[n].examples]
    assert not train & set(evals)  # no evaluation problem is a training problem
    assert len(evals) == len(set(evals))  # and evaluation sets hold no duplicates


def test_default_splits_are_the_papers() -> None:
    d = alg.default_splits()
    assert {k: tuple(v["digits"]) for k, v in d.items()} == {
        "train": (1, 10),
        "id": (5, 10),
        "od_easy": (11, 13),
        "od_hard": (14, 16),
        "test": (17, 22),
    }
    assert d["train"]["count"] == 25_600 and d["od_hard"]["count"] == 2_048


def test_build_eval_dataset_excludes_training_examples() -> None:
    splits = build_splits("palin", seed=0, splits=SMALL)
    train = splits["train"].examples
    # 1-2 digit palindromes: 110 problems, most of them are in the training set
    seen = {e.tokens for e in train if e.size <= 2}
    free = 110 - len(seen)
    ds = build_eval_dataset("palin", "1-2", count=free, seed=0, exclude=train)
    assert not {e.tokens for e in ds.examples} & seen
    with pytest.raises(ValueError, match="count"):
        build_eval_dataset("palin", "1-2", count=free + 1, seed=0, exclude=train)


def test_collate_pads_and_masks() -> None:
    ds = build_splits("reduce", seed=0, splits=SMALL)["od_easy"]
    batch = collate([ds[i] for i in range(8)])
    lengths = [len(ds.examples[i].tokens) for i in range(8)]
    B, T = batch["tokens"].shape
    assert (B, T) == (8, max(lengths))
    assert batch["padding_mask"].dtype == torch.bool
    for b, t in enumerate(lengths):
        assert not batch["padding_mask"][b, :t].any() and batch["padding_mask"][b, t:].all()
        assert (batch["tokens"][b, t:] == alg.PAD).all()
        assert (batch["targets"][b, t:] == IGNORE_INDEX).all()
    assert batch["sizes"].tolist() == [ds.examples[i].size for i in range(8)]


def test_errors_name_the_argument_and_choices() -> None:
    with pytest.raises(ValueError, match="valid choices: fib, palin"):
        build_splits("sorting", seed=0)
    with pytest.raises(ValueError, match="digits"):
        parse_range("5-3")
    with pytest.raises(ValueError, match="digits"):
        parse_range("x")
    with pytest.raises(ValueError, match="splits"):
        build_splits("palin", seed=0, splits={"id": {"digits": [1, 2], "count": 3}})
    with pytest.raises(ValueError, match="n: expected a positive int"):
        make_example("palin", 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="symbols"):
        alg.encode(["nope"])
    assert parse_range("7") == (7, 7) and parse_range([2, 4]) == (2, 4) and parse_range(7) == (7, 7)
    with pytest.raises(ValueError, match="digits"):
        parse_range(0)


def test_aliases() -> None:
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    assert make_example("addition", 4, rng1) == make_example("fib", 4, rng2)
