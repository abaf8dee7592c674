"""The package's floors: a lower layer never imports an upper one (DESIGN: functional -> layers ->
models -> tasks -> training -> experiments / bench -> cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import neural_attention_memory

PKG = Path(neural_attention_memory.__file__).resolve().parent
FLOORS = ["functional", "layers", "models", "tasks", "training", "experiments", "bench", "cli"]
# experiments and bench share a floor but stay independent of each other.
FORBIDDEN = {
    "functional": {"layers", "models", "tasks", "training", "experiments", "bench", "cli"},
    "layers": {"models", "tasks", "training", "experiments", "bench", "cli"},
    "models": {"tasks", "training", "experiments", "bench", "cli"},
    "tasks": {"models", "training", "experiments", "bench", "cli"},
    "training": {"experiments", "bench", "cli"},
    "experiments": {"bench", "cli"},
    "bench": {"experiments", "cli"},
}


def _imported_floors(path: Path, root: Path = PKG) -> set[str]:
    """Top-level subpackages of ``neural_attention_memory`` that ``path`` imports."""
    rel = path.relative_to(root).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel[:-1])[: len(rel) - node.level]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                names = [parts] if parts else [[a.name] for a in node.names]
            elif node.module and node.module.startswith("neural_attention_memory."):
                names = [node.module.split(".")[1:]]
            else:
                continue
            for parts in names:
                if parts:
                    found.add(parts[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("neural_attention_memory."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_upward_imports(floor: str) -> None:
    bad = []
    for path in sorted((PKG / floor).rglob("*.py")):
        hits = _imported_floors(path) & FORBIDDEN[floor]
        if hits:
            bad.append(f"{path.relative_to(PKG)} imports {sorted(hits)}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_checker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    probe = tmp_path / "training" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from ..experiments import registry\nimport neural_attention_memory.bench\n")
    assert _imported_floors(probe, tmp_path) == {"experiments", "bench"}
    probe.write_text("from .spec import TaskSpec\nfrom .. import models\n")
    assert _imported_floors(probe, tmp_path) == {"training", "models"}
