"""Classification on the real SmolLM2 (`init_from` its imported GGUF), with and without LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli

pytestmark = pytest.mark.slow

REVIEWS = Path(__file__).resolve().parents[2] / "examples" / "classify_smollm2" / "data"

PIPELINE = """
output: {out}
seed: 0
data: {{inputs: [{data}], format: jsonl, field: text, label_field: label, validation: 0.25}}
train:
  objective: classification
  init_from: {base}
  optimizer: {{name: adamw, lr: 1.0e-3, weight_decay: 0.0}}
  batch_size: 4
  max_length: 32
  max_steps: 3
  log_every: 1
eval:
  metrics: [accuracy, f1]
"""
LORA = "  adapter: {name: lora, r: 4, alpha: 8, targets: [q, v]}\n"


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's first 16 labelled snippets (12 to train on, 4 held out)."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.jsonl"
    lines = (REVIEWS / "reviews.jsonl").read_text(encoding="utf-8").splitlines()[:16]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_pipeline_trains_a_head_on_smollm2_and_eval_writes_metrics(
    tmp_path: Path, smollm2_checkpoint: Path, reviews: Path, lora: bool
) -> None:
    out = tmp_path / "run"
    text = PIPELINE.format(out=out, data=reviews, base=smollm2_checkpoint)
    pipe = tmp_path / "p.yaml"
    pipe.write_text(text.replace("eval:\n", LORA + "eval:\n") if lora else text)
    result = CliRunner().invoke(cli, ["run", str(pipe)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    assert len(losses) == 3 and all(x == x and x > 0 for x in losses)
    report = json.loads((out / "eval.json").read_text())["metrics"]
    assert 0.0 <= report["accuracy"] <= 1.0 and "f1_macro" in report
    labels = json.loads((out / "model" / "labels.json").read_text())
    assert sorted(labels) == ["fresh", "rotten"]
    trained = llmkit.load_model(out / "model")
    base = llmkit.load_model(smollm2_checkpoint).state_dict()
    state = trained.state_dict()
    assert state["score.weight"].shape == (2, 576)
    frozen = torch.equal(state["blocks.0.mlp.up.weight"], base["blocks.0.mlp.up.weight"])
    assert frozen == lora  # LoRA leaves the base alone; full fine-tuning moves it


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_head_gets_gradients_and_the_loss_falls_on_one_batch(
    smollm2_checkpoint: Path, lora: bool
) -> None:
    from llmkit.data.batching import ClassificationBatches
    from llmkit.data.records import Record
    from llmkit.train.objectives import ObjectiveLoss

    rows = [json.loads(line) for line in (REVIEWS / "reviews.jsonl").read_text().splitlines()[:4]]
    records = [Record(text=r["text"], label=r["label"]) for r in rows]
    tokenizer = llmkit.load_tokenizer(smollm2_checkpoint)
    batch = next(iter(ClassificationBatches(records, tokenizer, 4, max_length=32, epochs=1)))
    torch.manual_seed(0)
    model = llmkit.load_model(smollm2_checkpoint)
    model.add_classifier(2)
    if lora:
        model = llmkit.create("adapter", "lora", r=4, alpha=8, targets=["q", "v"]).apply(model)
    model.train()
    objective = llmkit.create("objective", "classification")
    scored = ObjectiveLoss(model, objective, llmkit.create("loss", "cross_entropy"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = llmkit.create("optimizer", "adamw", trainable, lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        total, count = scored(batch)
        (total / count).backward()
        assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(float(total.detach() / count))
    assert losses[-1] < losses[0], losses
    if lora:
        assert model.blocks[0].mlp.up.weight.grad is None  # the base is frozen
        assert model.blocks[0].attn.qkv.lora_A["q"].grad is not None
