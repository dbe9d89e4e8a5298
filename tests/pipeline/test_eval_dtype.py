"""`llmkit eval --dtype`: a briefly trained model scored in bfloat16, int8 and int4 stays close to
its float32 score on the same held-out windows; a dtype it does not know is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_pipeline

from llmkit.cli import cli

MODEL = "d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32"
TRAIN = "context: 32, batch_size: 8, max_steps: 30, log_every: 30, eval_batches: 1"
#: How far each dtype's perplexity may stray from float32's (relative).
TOLERANCE = {"bfloat16": 0.01, "int8": 0.03, "int4": 0.05}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run's output: a small gpt trained for 30 steps and its held-out shards."""
    folder = tmp_path_factory.mktemp("dtype")
    pipe = folder / "p.yaml"
    pipe.write_text(tiny_pipeline(folder / "run", "dtype", MODEL, TRAIN))
    result = CliRunner().invoke(cli, ["run", str(pipe)])
    assert result.exit_code == 0, result.output
    return folder / "run"


def perplexity(run: Path, *dtype: str) -> float:
    args = ["eval", str(run / "model"), "--data", str(run / "data"), "--context", "32"]
    result = CliRunner().invoke(cli, [*args, "--max-batches", "4", "--json", *dtype])
    assert result.exit_code == 0, result.output
    return float(json.loads(result.stdout)["metrics"]["perplexity"])


def test_low_precision_scores_close_to_float32(trained: Path) -> None:
    reference = perplexity(trained)
    assert reference < 40  # trained: far below the 256 of a uniform guess over bytes
    assert perplexity(trained, "--dtype", "float32") == reference
    for dtype, tolerance in TOLERANCE.items():
        score = perplexity(trained, "--dtype", dtype)
        assert score == pytest.approx(reference, rel=tolerance), dtype
        assert score != reference, dtype  # the weights really were converted


def test_an_unknown_dtype_is_one_line_exit_2(trained: Path) -> None:
    args = ["eval", str(trained / "model"), "--data", str(trained / "data"), "--dtype", "int3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: --dtype 'int3' is not one of float32, bfloat16, float16, int8, int4"
    ]


def test_the_help_says_what_each_dtype_does() -> None:
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for phrase in ("bfloat16/float16 (half the bytes", "int8 (each linear layer", "int4 (groups"):
        assert phrase in text, phrase
