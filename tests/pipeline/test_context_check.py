"""`train.context` against the model's position table: refused by validate, before any stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli
from llmkit.storage.checkpoint import save_model

PIPELINE = """
name: t
tokenizer: {{name: byte}}
train:
  {source}
  optimizer: {{name: adamw, lr: 1.0e-3}}
  context: {context}
  max_steps: 3
"""


def validate(tmp_path: Path, source: str, context: int) -> tuple[int, str]:
    path = tmp_path / "pipe.yaml"
    path.write_text(PIPELINE.format(source=source, context=context))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize(("context", "ok"), [(64, True), (65, False)])
def test_learned_table_bounds_context(tmp_path: Path, context: int, ok: bool) -> None:
    model = "model: {name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 64}"
    code, output = validate(tmp_path, model, context)
    if ok:
        assert code == 0, output
    else:
        assert code == 2
        assert (
            f"pipe.yaml: train.context: {context} is longer than the model's 64 positions; "
            "lower train.context or raise train.model.max_positions"
        ) in output
        assert "Traceback" not in output


def test_rotary_model_accepts_any_context(tmp_path: Path) -> None:
    model = (
        "model: {name: llama, d_model: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, "
        "max_positions: 64}"
    )
    code, output = validate(tmp_path, model, 256)
    assert code == 0, output


def test_init_from_checkpoint_table_bounds_context(tmp_path: Path) -> None:
    gpt = llmkit.create(
        "model", "gpt", vocab_size=260, d_model=32, n_layers=1, n_heads=2, max_positions=32
    )
    save_model(gpt, tmp_path / "base")
    assert validate(tmp_path, "init_from: base", 32)[0] == 0
    code, output = validate(tmp_path, "init_from: base", 48)
    assert code == 2
    assert "train.context: 48 is longer than the model's 32 positions" in output
    assert "lower train.context or start from a checkpoint with more" in output


def test_classification_is_bounded_by_its_records_not_the_context(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "good", "label": "pos"}\n')
    path = tmp_path / "pipe.yaml"
    path.write_text(
        "name: t\ntokenizer: {name: byte}\n"
        "data: {inputs: [train.jsonl], format: jsonl, validation: 0.0}\n"
        "train:\n  objective: classification\n"
        "  model: {name: bert, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 64}\n"
        "  optimizer: {name: adamw, lr: 1.0e-3}\n  context: 256\n  max_steps: 3\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
