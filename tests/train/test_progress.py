"""Progress: a live bar with rate and time left on a terminal (a real pseudo-terminal), the plain
log lines in a pipe, neither under --quiet."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit import progress
from llmkit.cli import cli

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"

PIPELINE = f"""
name: bar
output: {{out}}
tokenizer: {{{{name: byte}}}}
data:
  inputs: [{CORPUS}]
  unit: paragraph
  validation: 0.1
train:
  model: {{{{name: gpt, d_model: 16, n_layers: 1, n_heads: 2, max_positions: 16}}}}
  optimizer: {{{{name: adamw, lr: 3.0e-3}}}}
  context: 16
  batch_size: 2
  max_steps: 6
  log_every: 3
"""
LOG_LINE = re.compile(r"^step 3  loss [\d.]+  lr ", re.M)
BAR = re.compile(r"train: +\d+%\|.*\| *\d/6 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(step/s|s/step)")


def pipeline(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(PIPELINE.format(out=tmp_path / name))
    return path


def run_in_pty(args: list[str]) -> str:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; all it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 x 120
    env = dict(os.environ)
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


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
