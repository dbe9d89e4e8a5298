"""Distillation from a pipeline file: the real SmolLM2 teaches a tiny llama with its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli
from llmkit.objectives.distill import Distill

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "python-reference.txt"
ALPHA, T = 0.3, 2.0

PIPELINE = """
output: {out}
seed: 0
tokenizer: {{path: {tokenizer}}}
data: {{inputs: [{corpus}], format: text, unit: paragraph, validation: 0.2}}
train:
  objective: {{name: distill, alpha: {alpha}, temperature: {t}}}
  teacher: {teacher}
  model: {{name: llama, n_layers: 1, n_heads: 2, n_kv_heads: 1, d_model: 16, d_ff: 32,
           max_positions: 64, tie_embeddings: true}}
  optimizer: {{name: adamw, lr: 1.0e-3}}
  context: 32
  batch_size: 2
  max_steps: 2
  log_every: 1
eval:
  batches: 1
"""


def write(tmp_path: Path, teacher: Path, tokenizer: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    path = tmp_path / "distill.yaml"
    text = PIPELINE.format(
        out=tmp_path / "run", tokenizer=tokenizer, corpus=corpus, teacher=teacher, alpha=ALPHA, t=T
    )
    path.write_text(text)
    return path


def test_first_batch_loss_is_alpha_ce_plus_t2_kl_by_hand(
    tmp_path: Path, smollm2_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    score = Distill.score

    def recording(self: Distill, loss: Any, logits: Any, targets: Any, batch: Any) -> Any:
        value = score(self, loss, logits, targets, batch)
        calls.append({"logits": logits.detach(), "targets": targets, "input_ids": batch["input_ids"],
                      "loss": value.detach()})  # fmt: skip
        return value

    monkeypatch.setattr(Distill, "score", recording)
    pipe = write(tmp_path, smollm2_checkpoint, smollm2_checkpoint)
    result = CliRunner().invoke(cli, ["run", str(pipe)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    first = calls[0]
    student, targets = first["logits"], first["targets"]
    teacher = llmkit.load_model(smollm2_checkpoint).eval()
    with torch.no_grad():
        t_logits = teacher(first["input_ids"].clamp(max=teacher.config.vocab_size - 1))
    keep = targets != -100
    ce = F.cross_entropy(student[keep], targets[keep])
    kl = F.kl_div(
        F.log_softmax(student[..., : t_logits.shape[-1]][keep] / T, -1),
        F.log_softmax(t_logits[keep] / T, -1),
        log_target=True,
        reduction="batchmean",
    )
    expected = ALPHA * ce + (1 - ALPHA) * T**2 * kl
    torch.testing.assert_close(first["loss"], expected, rtol=1e-4, atol=1e-4)
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    step1 = next(e for e in log if e.get("step") == 1 and "loss" in e)
    assert step1["loss"] == pytest.approx(float(expected), rel=1e-4)
    report = json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]
    assert report["teacher_perplexity"] < report["perplexity"]  # the teacher knows English


def test_a_teacher_with_another_vocabulary_is_refused_in_one_line(
    tmp_path: Path, smollm2_checkpoint: Path
) -> None:
    byte = llmkit.create("tokenizer", "byte", special_tokens=["<|endoftext|>"])
    other = tmp_path / "byte-teacher"
    model = llmkit.create(
        "model",
        "llama",
        vocab_size=byte.vocab_size,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        d_model=16,
    )
    llmkit.save_model(model, other, tokenizer=byte)
    pipe = write(tmp_path, other, smollm2_checkpoint)
    result = CliRunner().invoke(cli, ["run", str(pipe)])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in result.output
    assert f"train.teacher: {other}" in error
    assert "teacher's tokenizer" in error and "student's" in error
    assert not (tmp_path / "run" / "model").exists()
