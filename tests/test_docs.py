"""Docs that stay true: every code block in README.md and docs/*.md runs here.

- ``python`` blocks run in order, one namespace per file, in a temporary folder.
- ``bash`` blocks: every ``nam ...`` command is parsed by the real command line (an unknown command
  or option fails); when it needs no placeholder (``<run>``) or existing run folder, it also runs at
  no cost: ``nam train`` with ``--print-config`` (checks task, model, preset and every ``--set``),
  ``nam reproduce`` with ``--dry-run`` (checks every run of the grid), ``nam list`` as is. Other
  lines (``make ...``) are what CI itself runs.
- A block preceded by ``<!-- docs-test: skip (reason) -->`` is skipped; the reason is required.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1 : j]), skip and skip[1]))
        i = j + 1
    return out


ALL = [b for p in DOCS for b in _blocks(p)]
PYTHON_FILES = sorted({b.path for b in ALL if b.lang == "python"})
SHELL = [b for b in ALL if b.lang in ("bash", "sh", "shell", "console")]


def test_commands_and_code_are_in_labelled_blocks() -> None:
    # Unlabelled fences are layout (folder trees, formulas), never commands or code, which would
    # escape the tests below.
    bad = [
        b.id
        for b in ALL
        if not b.lang and re.search(r"^\s*(nam |import |from \S+ import )", b.text, re.M)
    ]
    assert not bad, f"label these blocks (```bash / ```python): {bad}"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from neural_attention_memory.experiments import registry

    registry._load_families()
    tasks = dict(registry._TASKS)
    yield tmp_path
    registry._TASKS.clear()
    registry._TASKS.update(tasks)  # a task a doc registers does not leak into other tests
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, in_tmp) -> None:
    namespace: dict = {"__name__": "__docs__"}
    for block in (b for b in ALL if b.path == path and b.lang == "python"):
        if block.skip:
            continue
        try:
            exec(compile(block.text, block.id, "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{block.id}: {type(err).__name__}: {err}") from err


def _commands(text: str) -> list[list[str]]:
    """``nam`` command lines of a shell block (continuations joined, comments and env dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words = words[1:]
        if words and words[0] == "nam":
            out.append([os.path.expanduser(w) for w in words[1:]])
    return out


NAM_LINES = [(b, cmd) for b in SHELL if not b.skip for cmd in _commands(b.text)]


def _parse(args: list[str]) -> None:
    """Parse ``nam ARGS`` with the real command (raises on an unknown command or option)."""
    import typer

    from neural_attention_memory.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("nam", list(args[:1]), resilient_parsing=False)
    sub = group.get_command(ctx, args[0])
    assert sub is not None, f"unknown command {args[0]!r}"
    sub.make_context(args[0], list(args[1:]), parent=ctx)


def _run_nam(args: list[str], capsys) -> tuple[int, str]:
    from neural_attention_memory.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


@pytest.mark.parametrize(
    ("block", "args"), NAM_LINES, ids=[f"{b.id}:{' '.join(a[:2])}" for b, a in NAM_LINES]
)
def test_nam_commands_parse_and_check(block: Block, args: list[str], in_tmp, capsys) -> None:
    placeholder = any("<" in a or ">" in a or "|" in a or "*" in a for a in args)
    if placeholder:  # e.g. `nam eval nam_runs/reduce/<run>`: syntax only
        args = [re.sub(r"[<>|*]", "_", a) for a in args]
    _parse(args)
    if placeholder or "--resume" in args or "--help" in args:
        return
    if args[0] == "train":
        code, out = _run_nam([*args, "--print-config"], capsys)
        assert code == 0, f"{block.id}: nam {' '.join(args)}\n{out}"
    elif args[0] == "reproduce":
        from neural_attention_memory.experiments.registry import get_family

        if get_family(args[1]).family is None:
            return  # a family on its own reproducer: syntax only
        code, out = _run_nam([*args, "--dry-run"], capsys)
        if code and "fonts-noto-core" in out:  # `make test` installs them where it can
            pytest.skip(f"{block.id}: the Noto fonts are not installed")
        assert code == 0, f"{block.id}: nam {' '.join(args)}\n{out}"
        assert not (in_tmp / "nam_runs").exists()
    elif args[0] == "list":
        code, out = _run_nam(args, capsys)
        assert code == 0, out


def test_nothing_points_outside_the_repository() -> None:
    """Docs and docstrings cite docs/paper.md, never a file outside the repository."""
    files = [*DOCS, *sorted((ROOT / "src").rglob("*.py"))]
    bad = [
        str(p.relative_to(ROOT))
        for p in files
        if re.search(r"PAPER\.md|\.\./shared|/work/", p.read_text(encoding="utf-8"))
    ]
    assert not bad, bad
    assert (ROOT / "docs" / "paper.md").is_file()
