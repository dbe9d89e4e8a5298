"""`llmkit attention`: the model's own softmax weights (checked against softmax(QK^T/sqrt(d)+mask)
computed by hand), the heat-map PNGs, and one-line errors for what cannot be shown."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.analysis.attention_maps import attention_layers, capture
from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.nn.attention import repeat_kv

T = 12
VARIANTS = [
    ("mha", {}, None),
    ("sdpa", {}, None),
    ("gqa", {}, 2),
    ("mqa", {}, None),
    ("sliding_window", {"window": 3}, None),
]


def _reference(model: torch.nn.Module, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """softmax(QK^T / sqrt(hs) + causal and window mask) from the layer's own q and k."""
    attn = attention_layers(model)[layer]
    seen: dict[str, torch.Tensor] = {}
    hook = attn.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(ids)
        hook.remove()
        q, k, _ = attn._project(seen["x"], None, None)
        q, k = model.positions.rotate(q, k, 0, None)
        k = repeat_kv(k, attn.n_heads)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(attn.head_dim)
        pos = torch.arange(ids.shape[1])
        keep = pos[None, :] <= pos[:, None]
        window = getattr(attn, "window", None)
        if window is not None:
            keep &= (pos[:, None] - pos[None, :]) < window
        scores = scores.masked_fill(~keep, float("-inf"))
        return torch.softmax(scores, dim=-1)[0]


@pytest.mark.parametrize(("attention", "options", "kv"), VARIANTS)
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_weights_are_the_reference_softmax(
    attention: str, options: dict, kv: int | None, position: str
) -> None:
    torch.manual_seed(0)
    model = llmkit.create(
        "model",
        "gpt",
        vocab_size=50,
        d_model=32,
        n_layers=2,
        n_heads=4,
        max_positions=T,
        attention=attention,
        attention_options=options,
        n_kv_heads=kv,
        position=position,
    ).eval()
    ids = torch.randint(0, 50, (1, T))
    for layer in (0, 1):
        weights = capture(model, ids, layer)
        assert weights.shape == (4, T, T)
        torch.testing.assert_close(weights, _reference(model, ids, layer), atol=1e-5, rtol=1e-4)
        assert torch.allclose(weights.sum(-1), torch.ones(4, T), atol=1e-5)
    assert all(not m.keep_weights and m.last_weights is None for m in attention_layers(model))


def test_bert_weights_see_both_sides() -> None:
    model = llmkit.create(
        "model", "bert", vocab_size=50, d_model=32, n_layers=1, n_heads=4, max_positions=T
    ).eval()
    weights = capture(model, torch.randint(0, 50, (1, T)), 0)
    assert weights.shape == (4, T, T) and (weights.triu(1) > 0).any()


def test_linear_attention_says_why_not() -> None:
    model = llmkit.create(
        "model",
        "gpt",
        vocab_size=50,
        d_model=32,
        n_layers=1,
        n_heads=4,
        max_positions=T,
        attention="linear",
    )
    with pytest.raises(UsageError, match="linear attention has no softmax weight matrix"):
        capture(model, torch.zeros(1, 4, dtype=torch.long), 0)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from llmkit.storage.checkpoint import save_model

    tokenizer = llmkit.create("tokenizer", "byte")
    model = llmkit.create(
        "model",
        "gpt",
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=4,
        max_positions=64,
    )
    return save_model(model, tmp_path / "ckpt", tokenizer=tokenizer)


def test_cli_draws_one_head_and_all_heads(
    checkpoint: Path, tmp_path: Path, assert_drawn: Callable[[Path, int, int], None]
) -> None:
    one, grid = tmp_path / "one.png", tmp_path / "grid.png"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "attention",
            str(checkpoint),
            "-p",
            "def f(x): return x",
            "--layer",
            "0",
            "--head",
            "1",
            "-o",
            str(one),
        ],
    )
    assert result.exit_code == 0, result.output
    assert_drawn(one, 300, 300)
    result = runner.invoke(
        cli, ["attention", str(checkpoint), "-p", "def f(x): return x", "-o", str(grid)]
    )
    assert result.exit_code == 0, result.output
    assert "layer 1" in result.output
    assert_drawn(grid, 500, 500)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "2"], "--layer 2 is out of range: the model has 2 layers (0-1)"),
        (["--head", "4"], "--head 4 is out of range: layer 1 has 4 heads (0-3)"),
        (["--head", "-1"], "--head -1 is out of range"),
    ],
)
def test_out_of_range_is_one_line_exit_2(
    checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        cli, ["attention", str(checkpoint), "-p", "hello", "-o", str(tmp_path / "a.png"), *args]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "a.png").exists()
