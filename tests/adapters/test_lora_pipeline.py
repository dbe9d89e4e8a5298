"""LoRA from a pipeline file: base frozen, adapter-only step checkpoints, exact resume, model/ loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import lora_pipeline

import llmkit
from llmkit.adapters import adapter_spec
from llmkit.cli import cli

ADAPTER = "r: 4, alpha: 8, dropout: 0.05, targets: [q, k, v, o]"
TRAIN = (
    "optimizer: {name: adamw, lr: 1.0e-2}, scheduler: {name: cosine, warmup_steps: 1}, "
    "max_steps: 8, log_every: 2, checkpoint_every: 4, eval_batches: 2"
)


def run(pipeline: Path, *overrides: str) -> str:
    result = CliRunner().invoke(cli, ["run", str(pipeline), *overrides])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result.stdout


def fail(pipeline: Path, *overrides: str) -> str:
    result = CliRunner().invoke(cli, ["run", str(pipeline), *overrides])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in result.output, result.output
    return error


def pipeline(tmp_path: Path, base: Path, name: str = "p.yaml", out: str = "run") -> Path:
    path = tmp_path / name
    path.write_text(lora_pipeline(tmp_path / out, base, ADAPTER, TRAIN))
    return path


def test_lora_run_trains_only_the_adapter_and_its_model_loads(
    tmp_path: Path, tiny_llama: Path
) -> None:
    run(pipeline(tmp_path, tiny_llama))
    out = tmp_path / "run"
    base = llmkit.load_model(tiny_llama).state_dict()
    model = llmkit.load_model(out / "model")
    assert adapter_spec(model) == {
        "name": "lora",
        "r": 4,
        "alpha": 8.0,
        "dropout": 0.05,
        "targets": ["q", "k", "v", "o"],
        "base_dtype": None,
    }
    trained = model.state_dict()
    for key, value in base.items():  # the base did not move
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0)
    lora = {k: v for k, v in trained.items() if ".lora_" in k}
    assert len(lora) == 2 * 2 * 4  # A and B, 2 layers, 4 targets
    assert any(v.abs().sum() > 0 for k, v in lora.items() if ".lora_B." in k)  # B left zero
    # The step checkpoints hold the adapter alone: a fraction of the base's size.
    step = out / "checkpoints" / "step-0000008"
    saved = json.loads((step / "config.json").read_text())
    assert saved["weights"] == "trainable" and saved["adapter"]["r"] == 4
    from safetensors.torch import load_file

    assert set(load_file(str(step / "model.safetensors"))) == set(lora)
    full = (out / "model" / "model.safetensors").stat().st_size
    assert (step / "model.safetensors").stat().st_size < full / 4
    # llmkit generate reads model/ directly (base + adapter).
    result = CliRunner().invoke(cli, ["generate", str(out / "model"), "-p", "def ", "-n", "4"])
    assert result.exit_code == 0, result.output
    # A step checkpoint is not a model on its own: one line naming what to load instead.
    with pytest.raises(llmkit.UsageError, match="only the adapter's trained weights"):
        llmkit.load_model(step)


def test_a_resumed_lora_run_matches_an_uninterrupted_one(tmp_path: Path, tiny_llama: Path) -> None:
    run(pipeline(tmp_path, tiny_llama, "a.yaml", "straight"))
    resumed = pipeline(tmp_path, tiny_llama, "b.yaml", "resumed")
    run(resumed, "train.max_steps=4", "train.scheduler.total_steps=8")
    log = run(resumed, "train.scheduler.total_steps=8")
    assert "resumed from" in log and "step-0000004" in log
    a = llmkit.load_model(tmp_path / "straight" / "model").state_dict()
    b = llmkit.load_model(tmp_path / "resumed" / "model").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_a_changed_adapter_refuses_to_resume(tmp_path: Path, tiny_llama: Path) -> None:
    path = pipeline(tmp_path, tiny_llama)
    run(path, "train.max_steps=4")
    error = fail(path, "train.max_steps=8", "train.adapter.r=8")
    assert "was trained with another model config" in error and "adapter" in error


def test_bad_adapter_input_is_one_line_exit_2(tmp_path: Path, tiny_llama: Path) -> None:
    path = pipeline(tmp_path, tiny_llama)
    error = fail(path, "train.adapter.rank=4")
    assert "train.adapter" in error and "unknown parameter 'rank'" in error
    error = fail(path, "train.adapter.targets=[q, fc3]")
    assert "train.adapter" in error and "'fc3'" in error
    assert "valid: q, k, v, o, gate, up, fc1, down, fc2" in error
    error = fail(path, "train.adapter.name=lorax")
    assert "lorax" in error
    # The targets a model declares: GPT-2's MLP has no gate.
    gpt = tmp_path / "gpt"
    llmkit.save_model(
        llmkit.create("model", "gpt", vocab_size=257, d_model=32, n_layers=1, n_heads=2),
        gpt,
        tokenizer=llmkit.create("tokenizer", "byte", special_tokens=["<|endoftext|>"]),
    )
    error = fail(path, f"train.init_from={gpt}", "train.adapter.targets=[gate]")
    assert "'gate' not among this GPT's projections; valid: q, k, v, o, up, fc1, down, fc2" in error
