"""`llmkit plot` and the curves it draws: decoded PNGs, bad input, a missing matplotlib."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.plots.curves import plot_runs, read_metrics, run_series

pytest.importorskip("matplotlib")


def fake_run(directory: Path, lr: float, steps: int = 20, eval_every: int = 5) -> Path:
    """A run directory whose metrics.jsonl looks like the trainer's."""
    directory.mkdir(parents=True)
    with open(directory / "metrics.jsonl", "w", encoding="utf-8") as f:
        for step in range(1, steps + 1):
            row = {
                "step": step,
                "tokens": step * 512,
                "loss": 5.0 * math.exp(-lr * step) + 1.0,
                "lr": lr * min(1.0, step / 4),
                "tokens_per_second": 9000.0 + 100 * lr * step,
                "grad_norm": 2.0 / step,
            }
            if step % eval_every == 0:
                row["eval_loss"] = row["loss"] + 0.3
            f.write(json.dumps(row) + "\n")
    return directory


def decode(path: Path) -> np.ndarray:
    """The PNG's pixels as floats in [0, 1], RGB(A)."""
    from matplotlib.image import imread

    return np.asarray(imread(path))


def assert_drawn(image: np.ndarray, min_width: int, min_height: int) -> None:
    """The picture is large enough and not blank: many colours, a good share of non-white."""
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    rgb = image[:, :, :3]
    inked = (rgb < 0.9).any(axis=2).mean()
    assert 0.01 < inked < 0.9, inked
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20


def test_read_metrics_skips_a_half_written_last_line(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", 0.1, steps=3)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 4, "lo')
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(UsageError, match=r"metrics.jsonl:2: not a JSON line"):
        read_metrics(run)


def test_resumed_steps_keep_the_last_value() -> None:
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    series = run_series(rows)["loss"]
    assert series.x == [1.0, 2.0] and series.y == [3.0, 1.5]


def test_plot_two_runs_by_step_and_tokens(tmp_path: Path) -> None:
    a, b = fake_run(tmp_path / "lr-a", 0.1), fake_run(tmp_path / "lr-b", 0.3)
    out = plot_runs([a, b], tmp_path / "curves.png", labels=["slow", "fast"])
    assert out == tmp_path / "curves.png"
    image = decode(out)
    assert_drawn(image, 1000, 900)  # 2 x 3 panels
    # both runs' colours (matplotlib's C0 blue and C1 orange) are in the picture
    rgb = (image[:, :, :3] * 255).astype(int)
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(rgb - colour).sum(axis=2) < 30).sum() > 200, colour
    by_tokens = plot_runs([a, b], tmp_path / "tokens.png", x="tokens")
    assert_drawn(decode(by_tokens), 1000, 900)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary name


def test_cli_plot_writes_the_png(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", 0.2)
    out = tmp_path / "c.png"
    result = CliRunner().invoke(cli, ["plot", str(a), "-o", str(out), "--x", "tokens"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out}"
    assert_drawn(decode(out), 800, 600)


def _fails(*args: str) -> str:
    result = CliRunner().invoke(cli, ["plot", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "x.png")
    assert "no metrics.jsonl here" in _fails(str(empty), "-o", out)
    a = tmp_path / "a"
    a.mkdir()
    (a / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    b = tmp_path / "b"
    b.mkdir()
    (b / "metrics.jsonl").write_text(json.dumps({"step": 1, "accuracy": 0.5}) + "\n")
    line = _fails(str(a), str(b), "-o", out)
    assert "share no metric" in line and "loss" in line and "accuracy" in line
    assert "--x step" in _fails(str(a), "-o", out, "--x", "tokens")
    assert "2 labels for 1 runs" in _fails(str(a), "-o", out, "--label", "x", "--label", "y")
    assert not Path(out).exists()


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    line = _fails(str(fake_run(tmp_path / "a", 0.1)), "-o", str(tmp_path / "x.png"))
    assert "pip install 'llmkit[plot]'" in line
