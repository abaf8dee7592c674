"""User errors at the command line: one line on stderr, exit code 2, nothing left behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from neural_attention_memory.cli import main


def run_nam(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_missing_user_data_is_one_line_and_leaves_no_folder(tmp_path, capsys) -> None:
    run = tmp_path / "runs" / "text"
    code, _, err = run_nam(
        [
            "train", "lra-text", "-m", "nam-transformer", "--run-dir", str(run),
            "--set", f"data.root={tmp_path / 'nothing'}", "--no-progress",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_read_only_runs_folder_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run_nam(
        ["train", "reduce", "-m", "lstm", "--run-dir", str(tmp_path / "ro" / "run"),
         "--set", "data.splits.train.count=32", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "reduce", "--set", "optim.lr=abc"], "optim.lr: expected a float > 0, got 'abc'"),
        (["train", "reduce", "--set", "optim.lr_decay=0"], "optim.lr_decay: expected a float > 0"),
        (["train", "reduce", "--set", "optim.grad_clip=-1"], "optim.grad_clip: expected"),
        (["train", "reduce", "--set", "trainer.batch_size=2.7"], "got 2.7"),
        (["train", "reduce", "--max-epochs", "abc"], "--max-epochs"),
        (["reproduce", "generalization", "--set", "optim.lr=abc"], "optim.lr: expected a float"),
        (["reproduce", "lra", "--tasks", "lra-sorting"], "tasks: unknown 'lra-sorting'"),
        (["reproduce", "generalization", "--shots", "1"], "--shots: the generalization family"),
    ],
)
def test_bad_values_are_one_line_before_anything_is_written(
    tmp_path, capsys, monkeypatch, args, message
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_nam(
        [*args, "--out" if args[0] == "reproduce" else "--runs-root", "x"], capsys
    )
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_print_config_and_list(capsys) -> None:
    code, out, _ = run_nam(
        ["train", "reduce", "-m", "lstm", "--set", "optim.lr=0.01", "--print-config"], capsys
    )
    assert code == 0 and "lr: 0.01" in out and "name: lstm" in out
    code, out, _ = run_nam(["list", "models"], capsys)
    assert code == 0 and "nam-transformer" in out and "[generalization]" in out
    code, out, _ = run_nam(["reproduce", "generalization", "--help"], capsys)
    assert code == 0 and "Tasks:" in out and "fib" in out and "--data-root" not in out
    code, out, _ = run_nam(["reproduce", "lra", "--help"], capsys)
    assert code == 0 and "--data-root" in out and "lra-listops" in out
