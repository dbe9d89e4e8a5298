"""The example plugin's model parts, installed for real and used through `llmkit run`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit import plugins
from llmkit.cli import cli
from llmkit.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"

PIPELINE = f"""
name: scalenorm
output: {{out}}
tokenizer: {{{{name: byte}}}}
data:
  inputs: [{CORPUS}]
  unit: paragraph
  validation: 0.1
train:
  model: {{{{name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32, norm: scalenorm}}}}
  optimizer: {{{{name: adamw, lr: 3.0e-3}}}}
  scheduler: {{{{name: cosine, warmup_steps: 1, total_steps: 6}}}}
  context: 32
  batch_size: 4
  max_steps: 6
  log_every: 3
  checkpoint_every: 3
  eval_batches: 2
eval:
  metrics: [perplexity]
  batches: 2
"""


@pytest.fixture
def example_loaded(example_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed example plugin on sys.path and allowed to load, in this process."""
    monkeypatch.syspath_prepend(str(example_plugin_dir))
    monkeypatch.setenv("LLMKIT_PLUGINS", "example")
    plugins.reset()
    return example_plugin_dir


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result.stdout


def test_scalenorm_is_listed_and_matches_its_formula(example_loaded: Path) -> None:
    row = next(line for line in run("components", "norm").splitlines() if "scalenorm" in line)
    assert row.split()[1] == "norm" and row.split()[-1] == "example"
    norm = llmkit.create("norm", "scalenorm", 8, eps=1e-5, bias=True)
    x = torch.randn(3, 8) * 4
    expected = math.sqrt(8) * x / x.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(norm(x), expected)
    assert [name for name, _ in norm.named_parameters()] == ["scale"]


def test_gpt_with_the_plugin_norm_trains_checkpoints_resumes_and_reloads(
    example_loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    pipe = tmp_path / "p.yaml"
    pipe.write_text(PIPELINE.format(out=out))
    run("run", str(pipe), "train.max_steps=3", "~eval")
    log = run("run", str(pipe))
    assert "resumed from" in log and "step-0000003" in log
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history][-1] == 6
    assert math.isfinite(json.loads((out / "eval.json").read_text())["metrics"]["perplexity"])
    assert json.loads((out / "model" / "config.json").read_text())["norm"] == "scalenorm"

    model = llmkit.load_model(out / "model")
    from llmkit_example.norm import ScaleNorm

    assert isinstance(model.blocks[0].norm1, ScaleNorm) and isinstance(model.norm, ScaleNorm)
    scale = model.state_dict()["blocks.0.norm1.scale"]
    assert scale.shape == () and float(scale) != pytest.approx(math.sqrt(32))  # it was trained
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(model(ids)).all()

    monkeypatch.setenv("LLMKIT_PLUGINS", "")  # the same checkpoint without the plugin:
    plugins.reset()  # an error naming the missing norm
    with pytest.raises(UsageError, match=r"norm: unknown choice 'scalenorm'; .*available: "):
        llmkit.load_model(out / "model")
