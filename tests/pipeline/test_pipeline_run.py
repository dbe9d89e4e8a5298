"""End-to-end pipelines on small real text: pretrain, resume exactly, fine-tune a classifier."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"

PRETRAIN = f"""
name: tiny
output: {{out}}
tokenizer: {{{{name: byte}}}}
data:
  inputs: [{CORPUS}]
  unit: paragraph
  clean: [nfc, whitespace]
  validation: 0.1
train:
  model: {{{{name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32}}}}
  optimizer: {{{{name: adamw, lr: 3.0e-3}}}}
  scheduler: {{{{name: cosine, warmup_steps: 2}}}}
  context: 32
  batch_size: 4
  max_steps: 12
  log_every: 4
  checkpoint_every: 6
  eval_batches: 4
eval:
  metrics: [perplexity]
  batches: 4
"""


def run(pipeline: Path, *overrides: str) -> str:
    result = CliRunner().invoke(cli, ["run", str(pipeline), *overrides])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result.stdout


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pretrain_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pipe = write(tmp_path, "p.yaml", PRETRAIN.format(out=out))
    log = run(pipe)
    assert "train: 12 steps" in log
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [4, 8, 12]
    assert history[-1]["loss"] < history[0]["loss"]
    evaluation = json.loads((out / "eval.json").read_text())["metrics"]
    assert math.isfinite(evaluation["perplexity"]) and evaluation["perplexity"] < 256
    saved = json.loads((out / "model" / "config.json").read_text())
    eos = llmkit.load_tokenizer(out / "model").special_tokens["<|endoftext|>"]
    assert saved["generation"]["eos_token_id"] == eos  # generation stops at the end of a text
    model = llmkit.load_model(out / "model")
    assert model(torch.tensor([[1, 2, 3]])).shape == (
        1,
        3,
        llmkit.load_tokenizer(out / "model").vocab_size,
    )
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-0000012"
    again = run(pipe)
    assert "data: up to date" in again and "already at step 12" in again


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    run(write(tmp_path, "a.yaml", PRETRAIN.format(out=straight)), "~eval")
    resumed = tmp_path / "resumed"
    pipe = write(tmp_path, "b.yaml", PRETRAIN.format(out=resumed))
    # Stop after 6 of 12 steps (the schedule still spans 12), then run again to the end.
    run(pipe, "train.max_steps=6", "train.scheduler.total_steps=12", "~eval")
    log = run(pipe, "train.scheduler.total_steps=12", "~eval")
    assert "resumed from" in log and "step-0000006" in log
    a = llmkit.load_model(straight / "model").state_dict()
    b = llmkit.load_model(resumed / "model").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_rerun_with_another_model_config_stops_instead_of_resuming(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pipe = write(tmp_path, "p.yaml", PRETRAIN.format(out=out))
    short = ["train.max_steps=2", "train.scheduler.warmup_steps=1", "~eval"]
    run(pipe, *short)
    result = CliRunner().invoke(cli, ["run", str(pipe), *short, "train.model.attention=mqa"])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith(f"Error: {out / 'checkpoints' / 'step-0000002'}: was trained with")
    assert "(attention 'sdpa' -> 'mqa')" in error and "train.resume=false" in error
    assert "\n" not in error and "Traceback" not in result.output
    assert json.loads((out / "model" / "config.json").read_text())["attention"] == "sdpa"
    run(pipe, *short, "train.model.dropout=0.1")  # dropout does not change what weights mean
    log = run(pipe, *short, "train.model.attention=mqa", "train.resume=false")
    assert "train: 2 steps" in log
    assert json.loads((out / "model" / "config.json").read_text())["attention"] == "mqa"


@pytest.mark.slow
def test_classification_finetune(tmp_path: Path) -> None:
    rows = ["text,label"]
    for i in range(60):
        rows.append(f"the film was wonderful and moving {i},good")
        rows.append(f"a dull and tedious mess {i},bad")
    csv = write(tmp_path, "reviews.csv", "\n".join(rows) + "\n")
    out = tmp_path / "cls"
    pipe = write(
        tmp_path,
        "c.yaml",
        f"""
output: {out}
tokenizer: {{name: byte}}
data: {{inputs: [{csv}], format: csv, field: text, label_field: label, validation: 0.2, clean: [missing]}}
train:
  objective: classification
  model: {{name: bert, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 64}}
  optimizer: {{name: adamw, lr: 2.0e-3}}
  batch_size: 16
  max_length: 48
  max_steps: 40
  log_every: 10
eval:
  metrics: [accuracy]
""",
    )
    run(pipe)
    assert json.loads((out / "eval.json").read_text())["metrics"]["accuracy"] > 0.9
    assert json.loads((out / "model" / "labels.json").read_text()) == ["bad", "good"]


def test_a_rerun_with_changed_training_settings_applies_them_or_refuses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pipe = write(tmp_path, "p.yaml", PRETRAIN.format(out=out))
    run(pipe, "~eval")

    def refused(*overrides: str) -> str:
        result = CliRunner().invoke(cli, ["run", str(pipe), "~eval", *overrides])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        error = str(result.stderr).strip()
        assert error.startswith("Error: ") and "\n" not in error
        return error

    # Fewer steps than the checkpoint has: said, with the way to start afresh (was: exit 0).
    error = refused("train.max_steps=5")
    assert "at step 12, past train.max_steps=5" in error and "train.resume=false" in error
    # A new learning rate would be overwritten by the checkpoint's optimizer: refused.
    error = refused("train.max_steps=16", "train.optimizer.lr=1.0e-3")
    assert "train.optimizer.lr is 0.001 now but 0.003" in error and "train.resume=false" in error
    # More steps and another logging cadence apply, and the log says so.
    log = run(pipe, "~eval", "train.max_steps=16", "train.log_every=2")
    assert "resume: applying changed train settings: max_steps 12 -> 16, log_every 4 -> 2" in log
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12, 14, 16]
    # Starting afresh as the error says works.
    assert "train: 5 steps" in run(pipe, "~eval", "train.max_steps=5", "train.resume=false")


def test_an_empty_validation_split_stops_before_training_when_eval_needs_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pipe = write(tmp_path, "p.yaml", PRETRAIN.format(out=out))
    result = CliRunner().invoke(cli, ["run", str(pipe), "data.validation=0.0"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "the validation split is empty" in result.stderr
    assert not (out / "checkpoints").exists()  # nothing trained
    assert "train: 12 steps" in run(pipe, "data.validation=0.0", "~eval")  # fine without eval
