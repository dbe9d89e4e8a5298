"""`llmkit import gguf --keep-quant` on the real SmolLM2 GGUF: its Q4_1 codes kept as int4."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli
from llmkit.nn.quantized import Int4Linear, Int8Linear

pytestmark = pytest.mark.slow


def test_keep_quant_holds_the_files_codes_and_answers(smollm2: Path, tmp_path: Path) -> None:
    from llmkit.storage.gguf import import_gguf

    out = tmp_path / "int4"
    result = CliRunner().invoke(
        cli, ["import", "gguf", str(smollm2), "-o", str(out), "--keep-quant"]
    )
    assert result.exit_code == 0, result.output
    model = llmkit.load_model(out)
    assert model.quantization["dtype"] == "int4"
    assert isinstance(model.blocks[0].mlp.up, Int4Linear) and isinstance(model.head, Int8Linear)
    fp32, _, _ = import_gguf(smollm2)
    want = fp32.blocks[0].mlp.up.weight
    got = model.blocks[0].mlp.up.dequantized(torch.float32)
    # The same codes; only the scales and zeros are rounded from fp16 to bf16.
    assert (got - want).abs().max() < 0.01 * want.abs().max()
    answer = CliRunner().invoke(
        cli, ["generate", str(out), "-p", "The capital of France is", "-n", "3"]
    )
    assert answer.exit_code == 0, answer.output
    assert "Paris" in answer.output
