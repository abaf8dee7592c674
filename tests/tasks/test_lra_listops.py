"""ListOps: labels checked by an independent evaluator, bounds, the LRA TSV format, caching."""

import re

import numpy as np
import pytest

from neural_attention_memory.tasks.lra import (
    LISTOPS_VOCAB,
    ListOpsConfig,
    collate_tokens,
    encode_listops,
    evaluate_listops,
    generate_listops,
    listops_splits,
    read_listops_tsv,
    to_lra_source,
    tree_depth,
    write_listops_tsv,
)


def _eval_by_regex(source: str) -> int:
    """A third evaluator: repeatedly reduce innermost ``[OP digits ]`` groups in the string."""
    s = " ".join(source.replace("(", " ").replace(")", " ").split())
    pat = re.compile(r"\[(MIN|MAX|MED|SM)((?: \d)+) \]")
    ops = {
        "MIN": min,
        "MAX": max,
        "MED": lambda v: int(np.median(v)),
        "SM": lambda v: sum(v) % 10,
    }
    while True:
        m = pat.search(s)
        if m is None:
            return int(s)
        vals = [int(x) for x in m.group(2).split()]
        s = s[: m.start()] + str(ops[m.group(1)](vals)) + s[m.end() :]


def test_labels_match_independent_evaluators() -> None:
    cfg = ListOpsConfig(min_length=20, max_length=200, max_depth=6, max_args=5)
    rows = generate_listops(150, seed=3, cfg=cfg)
    for tokens, label in rows:
        source = to_lra_source(tokens)
        assert evaluate_listops(source) == label
        assert _eval_by_regex(source) == label


def test_evaluator_on_hand_written_expressions() -> None:
    assert evaluate_listops("[MAX 2 9 [MIN 4 7 ] 0 ]") == 9
    assert evaluate_listops("[SM 5 6 [MED 1 2 3 9 ] ]") == 3  # 5 + 6 + int(2.5) = 13 -> 3
    assert evaluate_listops("[MED 3 1 4 ]") == 3
    assert evaluate_listops("( ( ( [MAX 2 ) 9 ) ] )") == 9
    for bad in ("[MAX 2 9", "[MAX ]", "2 3", "[FOO 1 2 ]", "[MIN 1 2 ] 3"):
        with pytest.raises(ValueError, match="expr"):
            evaluate_listops(bad)


@pytest.mark.parametrize(
    "cfg",
    [
        ListOpsConfig(min_length=30, max_length=120, max_depth=4, max_args=4),
        ListOpsConfig(min_length=500, max_length=2000),  # the LRA defaults
    ],
)
def test_length_depth_and_args_within_bounds(cfg: ListOpsConfig) -> None:
    rows = generate_listops(40, seed=0, cfg=cfg)
    for tokens, label in rows:
        assert cfg.min_length <= len(tokens) <= cfg.max_length
        assert 1 <= tree_depth(tokens) <= cfg.max_depth
        assert 0 <= label <= 9
        # argument counts: parse with a stack of counters
        stack = []
        for t in tokens:
            if t.startswith("["):
                if stack:
                    stack[-1] += 1
                stack.append(0)
            elif t == "]":
                assert 2 <= stack.pop() <= cfg.max_args
            else:
                stack[-1] += 1
    depths = {tree_depth(t) for t, _ in rows}
    assert max(depths) <= cfg.max_depth


def test_generator_is_seeded() -> None:
    cfg = ListOpsConfig(min_length=10, max_length=60)
    assert generate_listops(5, 1, cfg) == generate_listops(5, 1, cfg)
    assert generate_listops(5, 1, cfg) != generate_listops(5, 2, cfg)


def test_tsv_round_trip_in_lra_format(tmp_path) -> None:
    rows = generate_listops(10, 0, ListOpsConfig(min_length=10, max_length=80))
    path = tmp_path / "basic_train.tsv"
    assert write_listops_tsv(path, rows) == 10
    lines = path.read_text().splitlines()
    assert lines[0] == "Source\tTarget"
    assert lines[1].startswith("( ") and lines[1].split("\t")[0].endswith("] )")
    assert read_listops_tsv(path) == rows


def test_reader_on_a_hand_written_lra_file(tmp_path) -> None:
    path = tmp_path / "basic_val.tsv"
    path.write_text(
        "Source\tTarget\n"
        "( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) ] )\t9\n"
        "( ( ( [SM 5 ) 6 ) ] )\t1\n"
    )
    rows = read_listops_tsv(path)
    assert rows[0] == (["[MAX", "2", "9", "[MIN", "4", "7", "]", "]"], 9)
    assert [evaluate_listops(t) for t, _ in rows] == [9, 1]


def test_reader_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="basic_"):
        read_listops_tsv(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("src\ttgt\n[MAX 1 2 ]\t2\n")
    with pytest.raises(ValueError, match="header"):
        read_listops_tsv(bad)
    bad.write_text("Source\tTarget\n[MAX 1 2 ]\tx\n")
    with pytest.raises(ValueError, match="integer target"):
        read_listops_tsv(bad)
    bad.write_text("Source\tTarget\n[MAX 1 Q ]\t2\n")
    with pytest.raises(ValueError, match="unknown ListOps token"):
        read_listops_tsv(bad)
    with pytest.raises(ValueError, match="min_length"):
        ListOpsConfig(min_length=50, max_length=10)


def test_encoding_and_cached_splits(tmp_path) -> None:
    ids = encode_listops(["[MAX", "2", "]"])
    assert [LISTOPS_VOCAB[i] for i in ids] == ["[MAX", "2", "]"] and 0 not in ids
    cfg = ListOpsConfig(min_length=10, max_length=40)
    splits = listops_splits(cfg, {"train": 12, "val": 4}, seed=0, root=tmp_path)
    assert len(splits["train"]) == 12 and len(splits["val"]) == 4
    folder = next((tmp_path / "lra-listops").iterdir())
    stamp = (folder / "basic_train.tsv").stat().st_mtime_ns
    again = listops_splits(cfg, {"train": 12, "val": 4}, seed=0, root=tmp_path)
    assert (folder / "basic_train.tsv").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert all(
        np.array_equal(a["tokens"], b["tokens"])
        for a, b in zip(splits["train"], again["train"], strict=True)
    )
    batch = collate_tokens([splits["train"][i] for i in range(4)])
    lengths = [len(splits["train"][i]["tokens"]) for i in range(4)]
    assert batch["tokens"].shape == (4, max(lengths))
    assert (~batch["padding_mask"]).sum(1).tolist() == lengths
