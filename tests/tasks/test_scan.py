"""SCAN: the generated set, the interpretation function and the standard length split."""

from __future__ import annotations

import re

import pytest

from neural_attention_memory.tasks import scan
from neural_attention_memory.tasks.algorithmic import EOS, IGNORE_INDEX, MASK, SEP, decode

# Examples from Lake & Baroni (2018), written out by hand.
L, R = "I_TURN_LEFT", "I_TURN_RIGHT"
PAPER_EXAMPLES = {
    "jump": ["I_JUMP"],
    "jump left": [L, "I_JUMP"],
    "jump around right": [R, "I_JUMP"] * 4,
    "turn left twice": [L, L],
    "jump thrice": ["I_JUMP"] * 3,
    "jump opposite left and walk thrice": [L, L, "I_JUMP", "I_WALK", "I_WALK", "I_WALK"],
    "jump opposite left after walk around left": [L, "I_WALK"] * 4 + [L, L, "I_JUMP"],
    "turn around right": [R] * 4,
    "look opposite right thrice after run": ["I_RUN"] + [R, R, "I_LOOK"] * 3,
}


def oracle(command: str) -> list[str]:
    """An independent interpreter: regex rewriting of the phrase rules, then the conjunctions."""
    m = re.fullmatch(r"(.+) (and|after) (.+)", command)
    if m:
        a, b = oracle(m.group(1)), oracle(m.group(3))
        return a + b if m.group(2) == "and" else b + a
    m = re.fullmatch(r"(.+) (twice|thrice)", command)
    if m:
        return oracle(m.group(1)) * {"twice": 2, "thrice": 3}[m.group(2)]
    m = re.fullmatch(r"(walk|look|run|jump|turn)(?: (opposite|around))? (left|right)", command)
    if m:
        verb, mod, side = m.groups()
        act = [] if verb == "turn" else ["I_" + verb.upper()]
        turn = ["I_TURN_" + side.upper()]
        if mod == "opposite":
            return turn * 2 + act
        if mod == "around":
            return (turn + act) * 4
        return turn + act
    assert re.fullmatch(r"walk|look|run|jump", command), command
    return ["I_" + command.upper()]


def test_paper_examples() -> None:
    for command, actions in PAPER_EXAMPLES.items():
        assert scan.interpret(command) == actions, command
        assert oracle(command) == actions, command


def test_full_set_and_every_interpretation() -> None:
    commands = scan.enumerate_commands()
    assert len(commands) == 20_910
    assert len(set(commands)) == 20_910
    lengths = []
    for c in commands:
        actions = scan.interpret(c)
        assert actions == oracle(" ".join(c))
        lengths.append(len(actions))
    assert min(lengths) == 1 and max(lengths) == scan.MAX_ACTIONS == 48
    assert max(len(c) for c in commands) == 9


def test_standard_length_split() -> None:
    short, long = scan.length_split()
    assert (len(short), len(long)) == (16_990, 3_920)
    assert all(len(scan.interpret(c)) <= 22 for c in short)
    assert all(len(scan.interpret(c)) > 22 for c in long)
    assert scan.split_counts() == {"total": 20_910, "train": 16_990, "test": 3_920}


def test_outside_the_grammar_is_rejected() -> None:
    for bad in ("jump jump", "turn", "walk around", "walk twice twice", "left"):
        with pytest.raises(ValueError, match="command"):
            scan.interpret(bad)


def test_encoder_only_format() -> None:
    ex = scan.make_example(("jump", "twice"), slots=4)
    assert decode(ex.tokens) == ["jump", "twice", "<sep>", "<mask>", "<mask>", "<mask>", "<mask>"]
    assert decode(ex.targets) == [".", ".", ".", "I_JUMP", "I_JUMP", "<eos>", "<eos>"]
    assert ex.size == 2
    with pytest.raises(ValueError, match="slots"):
        scan.make_example(("jump", "thrice"), slots=2)


def test_splits_disjoint_deterministic_and_criterion() -> None:
    a = scan.build_splits(seed=0, id_count=500)
    b = scan.build_splits(seed=0, id_count=500)
    c = scan.build_splits(seed=1, id_count=500)
    assert (len(a["train"]), len(a["id"]), len(a["test"])) == (16_490, 500, 3_920)
    assert [e.tokens for e in a["id"].examples] == [e.tokens for e in b["id"].examples]
    assert [e.tokens for e in a["id"].examples] != [e.tokens for e in c["id"].examples]
    sets = {k: {e.tokens for e in ds.examples} for k, ds in a.items()}
    assert not sets["train"] & sets["id"] and not sets["train"] & sets["test"]
    assert all(e.size <= 22 for n in ("train", "id") for e in a[n].examples)
    assert all(e.size > 22 for e in a["test"].examples)
    for e in a["test"].examples[:50]:
        tokens, targets = list(e.tokens), list(e.targets)
        sep = tokens.index(SEP)
        assert tokens[sep + 1 :] == [MASK] * 48
        command = " ".join(decode(tokens[:sep]))
        answer = [t for t in targets[sep + 1 :] if t != EOS]
        assert decode(answer) == oracle(command)
        assert targets[: sep + 1] == [IGNORE_INDEX] * (sep + 1)
    small = scan.build_splits(seed=0, id_count=10, test_count=30, train_count=100)
    assert (len(small["train"]), len(small["id"]), len(small["test"])) == (100, 10, 30)


def test_build_eval_dataset_by_action_count() -> None:
    splits = scan.build_splits(seed=0, id_count=100)
    ds = scan.build_eval_dataset("24-26", seed=0)
    assert len(ds) == 336 + 448 + 512
    ds = scan.build_eval_dataset("1-3", seed=0, exclude=splits["train"].examples)
    assert all(1 <= e.size <= 3 for e in ds.examples)
    assert not {e.tokens for e in ds.examples} & {e.tokens for e in splits["train"].examples}
    assert len(scan.build_eval_dataset("30-48", seed=0, count=20)) == 20
    with pytest.raises(ValueError, match="id_count"):
        scan.build_splits(seed=0, id_count=17_000)
