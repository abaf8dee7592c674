"""``nam`` / ``python -m neural_attention_memory``: the command line, if its extra is installed.

The library itself needs only torch and numpy; the command line and the experiment stack come with
``pip install 'neural-attention-memory[experiments]'``. Without them ``nam`` says so in one line
(exit code 2) instead of failing with an import error.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Import names the command line needs, with the distribution that provides each.
CLI_REQUIREMENTS: dict[str, str] = {
    "typer": "typer",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib",
    "lightning": "lightning",
}


def missing_requirements() -> list[str]:
    """Distributions of :data:`CLI_REQUIREMENTS` that cannot be imported here."""
    missing = []
    for module, dist in CLI_REQUIREMENTS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def main(args: Sequence[str] | None = None) -> None:
    missing = missing_requirements()
    if missing:
        print(
            f"error: the nam command needs the 'experiments' extra (missing: {', '.join(missing)}); "
            "install it with: pip install 'neural-attention-memory[experiments]'",
            file=sys.stderr,
        )
        sys.exit(2)
    from .cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
