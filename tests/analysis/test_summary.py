"""`llmkit summary`: totals equal sum(p.numel()) and 6N + 12 L T d; per-layer rows; mfu."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.analysis.summary import mfu, peak_flops, summarize, training_flops_per_token
from llmkit.cli import cli

L, D, H, T, B = 2, 32, 4, 16, 3


def _n_multiplied(model: torch.nn.Module, lookups: list[torch.Tensor], unused: list[str]) -> int:
    """N by hand: every parameter but the lookup tables and the modules MLM never runs, plus the
    tied LM-head matrix once more (the head multiplies it; the embedding only looks it up)."""
    total = sum(p.numel() for p in model.parameters())
    total -= sum(t.numel() for t in lookups)
    total -= sum(p.numel() for name in unused for p in getattr(model, name).parameters())
    head = getattr(model, "head", None) or getattr(model, "mlm_head", None)
    if head is not None and head.weight is model.embed.weight:
        total += head.weight.numel()
    return total


@pytest.mark.parametrize("name", ["gpt", "llama", "bert"])
def test_totals_are_sum_numel_and_6n_plus_12ltd(name: str) -> None:
    model = llmkit.create(
        "model", name, vocab_size=96, d_model=D, n_layers=L, n_heads=H, max_positions=T
    )
    s = summarize(model, B, T)
    assert s.params == sum(p.numel() for p in model.parameters())
    lookups = [model.embed.weight, *model.positions.parameters()]
    unused: list[str] = []
    if name == "bert":
        lookups.append(model.token_types.weight)
        unused = ["pooler", "classifier"]  # the masked-LM forward never runs them
    n = _n_multiplied(model, lookups, unused)
    assert s.multiplied_params == n
    assert s.training_flops == 6 * n + 12 * L * T * D
    assert s.training_flops == 3 * s.forward_flops
    blocks = [r for r in s.rows if r.name.startswith("blocks.")]
    assert len(blocks) == L and all(r.activation_bytes > 0 for r in blocks)
    assert all(r.attention_flops == 4 * T * D for r in blocks)


@pytest.mark.parametrize(
    ("attention", "options", "keys"),
    [("sliding_window", {"window": 4}, 4), ("linear", {}, D // H), ("gqa", {}, T)],
)
def test_attention_term_follows_the_variant(attention: str, options: dict, keys: int) -> None:
    extra = {"n_kv_heads": 2} if attention == "gqa" else {}
    model = llmkit.create(
        "model",
        "gpt",
        vocab_size=64,
        d_model=D,
        n_layers=L,
        n_heads=H,
        max_positions=T,
        attention=attention,
        attention_options=options,
        **extra,
    )
    s = summarize(model, 1, T)
    assert s.attention_flops == L * 4 * keys * D
    assert s.training_flops == 6 * s.multiplied_params + 12 * L * keys * D


def test_activation_memory_grows_with_batch_and_context() -> None:
    model = llmkit.create(
        "model", "gpt", vocab_size=64, d_model=D, n_layers=1, n_heads=H, max_positions=32
    )
    small, batch, longer = (
        summarize(model, b, t).activation_bytes for b, t in ((1, 8), (2, 8), (1, 32))
    )
    assert batch > small and longer > 2 * small


def test_cli_on_a_pipeline_and_a_checkpoint(tmp_path: Path) -> None:
    from llmkit.storage.checkpoint import save_model

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "tokenizer: {train_files: [x.txt], vocab_size: 300}\n"
        f"train: {{model: {{name: gpt, d_model: {D}, n_layers: {L}, n_heads: {H}, max_positions: 64}},"
        " context: 64, batch_size: 2}\n"
    )
    result = CliRunner().invoke(cli, ["summary", str(pipeline), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["batch"], data["context"]) == (2, 64)
    assert (
        data["total"]["training_flops_per_token"]
        == 6 * data["total"]["multiplied_params"] + 12 * L * 64 * D
    )
    model = llmkit.create(
        "model", "gpt", vocab_size=300, d_model=D, n_layers=L, n_heads=H, max_positions=64
    )
    save_model(model, tmp_path / "ckpt")
    result = CliRunner().invoke(
        cli, ["summary", str(tmp_path / "ckpt"), "--batch", "4", "--context", "32"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "blocks.1" in result.output
        and f"{sum(p.numel() for p in model.parameters()):,}" in result.output
    )
    bad = CliRunner().invoke(cli, ["summary", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_peak_flops_and_mfu() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312.0e12
    assert peak_flops("NVIDIA GeForce GTX 1080") is None
    assert mfu(1e6, 6e6, "cpu") is None


def test_training_flops_of_a_live_model_match_its_summary() -> None:
    model = llmkit.create(
        "model", "llama", vocab_size=64, d_model=D, n_layers=L, n_heads=H, max_positions=T
    )
    assert training_flops_per_token(model, T) == summarize(model, 2, T).training_flops
    assert next(model.parameters()).device.type == "cpu"  # the live model is left alone
