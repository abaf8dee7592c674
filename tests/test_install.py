"""Dependencies: the library imports with only torch and numpy; ``nam`` without its extra says how
to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Import names of everything optional (the experiments, hf and test extras and their friends).
OPTIONAL = (
    "lightning", "typer", "click", "yaml", "matplotlib", "PIL", "tensorboard", "rich", "tqdm",
    "transformers", "hypothesis", "pytest",
)  # fmt: skip

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {OPTIONAL!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None
    for m in list(sys.modules):
        if m.split(".")[0] in BLOCKED:
            del sys.modules[m]
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_library_imports_without_the_extras() -> None:
    res = _run(
        """
        import torch
        import neural_attention_memory as nam
        from neural_attention_memory import functional, layers, models, tasks
        from neural_attention_memory.models import lsam, nam_tm, transformer, few_shot, lm
        from neural_attention_memory.models.baselines import build_tagger
        from neural_attention_memory.tasks import algorithmic, scan, episodes, lra
        x = torch.randn(1, 3, 8)
        model = nam.NAMForCausalLM(nam.NAMConfig(vocab_size=16, hidden_size=8, num_layers=1, num_heads=2))
        print("ok", tuple(model(torch.zeros(1, 4, dtype=torch.long)).logits.shape))
        """
    )
    assert res.returncode == 0, res.stderr
    assert "ok (1, 4, 16)" in res.stdout


def test_nam_without_the_extra_says_how_to_install_it() -> None:
    res = _run(
        """
        from neural_attention_memory.__main__ import main
        main(["list"])
        """
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'neural-attention-memory[experiments]'" in lines[0]
    assert "typer" in lines[0] and "lightning" in lines[0]


def test_the_blocker_blocks() -> None:
    res = _run("import lightning")
    assert res.returncode != 0 and "blocked" in res.stderr
