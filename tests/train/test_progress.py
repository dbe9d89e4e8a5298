"""Progress: a live bar with rate and time left on a terminal (a real pseudo-terminal), the plain
log lines in a pipe, neither under --quiet."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import run_in_pty, tiny_pipeline

from llmkit import progress
from llmkit.cli import cli

MODEL = "d_model: 16, n_layers: 1, n_heads: 2, max_positions: 16"
TRAIN = "context: 16, batch_size: 2, max_steps: 6, log_every: 3"
LOG_LINE = re.compile(r"^step 3  loss [\d.]+  lr ", re.M)
BAR = re.compile(r"train: +\d+%\|.*\| *\d/6 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(step/s|s/step)")


def pipeline(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(tiny_pipeline(tmp_path / name, "bar", MODEL, TRAIN))
    return path


def test_a_terminal_gets_a_live_bar_with_eta(tmp_path: Path) -> None:
    text = run_in_pty([sys.executable, "-m", "llmkit", "run", str(pipeline(tmp_path, "tty"))])
    assert BAR.search(text), text[-2000:]
    assert "\r" in text  # redrawn in place
    assert "loss=" in text and "tok/s=" in text  # the figures ride in the bar
    assert not LOG_LINE.search(text.replace("\r", "\n"))  # no plain per-step lines on a terminal
    assert "done: " in text


def test_a_pipe_gets_the_plain_lines_and_quiet_gets_neither(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(pipeline(tmp_path, "pipe"))])
    assert result.exit_code == 0, result.output
    assert LOG_LINE.search(result.stdout) and "\r" not in result.output
    assert not BAR.search(result.output)
    quiet = CliRunner().invoke(cli, ["--quiet", "run", str(pipeline(tmp_path, "quiet"))])
    assert quiet.exit_code == 0, quiet.output
    assert not LOG_LINE.search(quiet.output) and not BAR.search(quiet.output)
    assert "train: 6 steps" in quiet.stdout and "done: " in quiet.stdout  # results still print
    progress.set_quiet(None)


def test_only_rank_zero_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress.draws_bars()
    monkeypatch.setenv("RANK", "1")
    assert not progress.draws_bars()
    lines: list[str] = []
    with progress.progress(3, "x") as bar:
        bar.line("plain", lines.append)
    assert lines == []  # a worker other than rank 0 prints no progress lines either
