"""`llmkit run` under torchrun (two gloo ranks on the CPU): rank 0 alone prepares the tokenizer and
the data, logs and writes the results; the reported loss is the mean over the ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import rank_env, two_ranks_by_hand

from llmkit.cli import cli

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"

PIPELINE = f"""
name: ddp
output: {{out}}
tokenizer: {{{{train_files: [{CORPUS}], vocab_size: 300}}}}
data:
  inputs: [{{inputs}}]
  unit: paragraph
  validation: 0.1
train:
  model: {{{{name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32}}}}
  optimizer: {{{{name: adamw, lr: 3.0e-3}}}}
  device: cpu
  context: 32
  batch_size: 4
  max_steps: 4
  log_every: 1
  eval_batches: 2
eval:
  batches: 2
"""


def _pipeline(tmp_path: Path, inputs: Path = CORPUS) -> tuple[Path, Path]:
    out = tmp_path / "run"
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(out=out, inputs=inputs))
    return path, out


def _torchrun(pipeline: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "llmkit", "run", str(pipeline), *overrides]
    return subprocess.run(
        command, capture_output=True, text=True, env=rank_env(), timeout=240, cwd=pipeline.parent
    )


def _lines(stdout: str, prefix: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


@pytest.mark.slow
def test_torchrun_prepares_once_logs_once_and_reports_the_mean_loss(tmp_path: Path) -> None:
    pipeline, out = _pipeline(tmp_path)
    proc = _torchrun(pipeline)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Before, both ranks trained the tokenizer and wrote the same shards (racing on the .tmp
    # files), and rank 1 logged every stage and wrote eval.json and summary.json too.
    for prefix in ("tokenizer: trained", "data: prepared", "train: 4 steps", "eval: ", "done: "):
        assert len(_lines(proc.stdout, prefix)) == 1, (prefix, proc.stdout)
    assert "up to date" not in proc.stdout, proc.stdout  # no second rank looked at the files
    assert len(_lines(proc.stdout, "step ")) == 4, proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    result = json.loads((out / "train_result.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4]  # one writer
    # The last step's loss averaged over both ranks, as logged (log_every: 1), everywhere.
    assert summary["train"]["train_loss"] == result["train_loss"]
    assert result["train_loss"] == pytest.approx(history[-1]["loss"], rel=1e-9)
    assert f"loss {result['train_loss']:.4f}" in _lines(proc.stdout, "train: ")[0]
    assert json.loads((out / "eval.json").read_text())["metrics"] == summary["eval"]
    # Rank 0 scored every held-out window (not its half): a single process agrees exactly.
    alone = subprocess.run(
        [sys.executable, "-m", "llmkit", "eval", str(out / "model"), "--data", str(out / "data"),
         "--context", "32", "--batch-size", "4", "--max-batches", "2", "--json"],
        capture_output=True, text=True, env=rank_env(), timeout=120,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["metrics"]["perplexity"] == summary["eval"]["perplexity"]
    state = json.loads((out / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert [s["identity"]["rank"] for s in state["data"]["per_rank"]] == [0, 1]

    # Each rank resumes from its own data position; still one writer of every line.
    again = _torchrun(pipeline, "train.max_steps=6")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for prefix in ("tokenizer: up to date", "data: up to date", "resumed from", "train: 6 steps"):
        assert len(_lines(again.stdout, prefix)) == 1, (prefix, again.stdout)
    assert json.loads((out / "summary.json").read_text())["train"]["steps"] == 6

    # One process cannot continue the two ranks' data positions, and says so.
    single = CliRunner().invoke(cli, ["run", str(pipeline), "train.max_steps=8"])
    assert single.exit_code == 2, single.output
    assert "was saved by 2 ranks, so only 2 ranks can resume from it" in single.stderr


@pytest.mark.slow
def test_a_failure_of_rank_0_stops_the_other_ranks_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"  # passes validate on every rank; the data stage fails
    empty.write_text("")
    pipeline, out = _pipeline(tmp_path, inputs=empty)
    (code0, _, err0), (code1, out1, err1) = two_ranks_by_hand(
        ["-m", "llmkit", "run", str(pipeline)], tmp_path
    )
    assert code0 == 2 and "no documents left after cleaning" in err0, err0
    assert code1 == 2, err1
    # Every rank prepares its share of the data (tests/distributed/test_pipeline_data_ranks.py):
    # rank 0 finds no document in any share and every rank ends with that one line.
    lines = err1.strip().splitlines()
    assert len(lines) == 1 and "no documents left after cleaning" in lines[0], err1
    assert out1 == ""
    assert not (out / "summary.json").exists()
