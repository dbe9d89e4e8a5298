"""The example plugin's model parts, installed for real and used through `llmkit run`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import CORPUS, tiny_pipeline

import llmkit
from llmkit import plugins
from llmkit.cli import cli
from llmkit.errors import UsageError

MODEL = "d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32, norm: scalenorm"
TRAIN = (
    "scheduler: {name: cosine, warmup_steps: 1, total_steps: 6}, context: 32, batch_size: 4, "
    "max_steps: 6, log_every: 3, checkpoint_every: 3, eval_batches: 2"
)


def scalenorm_pipeline(out: Path) -> str:
    return tiny_pipeline(
        out, "scalenorm", MODEL, TRAIN, "eval: {metrics: [perplexity], batches: 2}\n"
    )


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
    pipe.write_text(scalenorm_pipeline(out))
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
    plugins.reset()  # an error naming the missing norm and the plugin it comes from
    with pytest.raises(
        UsageError, match=r"norm 'scalenorm' comes from the plugin 'llmkit-example', "
    ):
        llmkit.load_model(out / "model")


# -- the objective: prefix_lm --------------------------------------------------------------------


def prefix_pipeline(out: Path) -> str:
    train = f"objective: {{name: prefix_lm, prefix_fraction: [0.25, 0.75]}}, {TRAIN}"
    evaluation = "eval: {metrics: [perplexity, nll, bits_per_byte], batch_size: 16}\n"
    return tiny_pipeline(out, "prefix-lm", MODEL, train, evaluation, validation=0.05)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_components_lists_prefix_lm_with_the_builtin_objectives(example_loaded: Path) -> None:
    rows = {line.split()[0]: line.split() for line in run("components", "objective").splitlines()}
    assert {"causal_lm", "masked_lm", "seq2seq", "classification", "prefix_lm"} <= set(rows)
    assert rows["prefix_lm"][1] == "objective" and rows["prefix_lm"][-1] == "example"
    assert rows["causal_lm"][-1] == "llmkit.objectives"


def test_prefix_lm_scores_only_the_continuation_and_resumes_its_batches(
    example_loaded: Path, tmp_path: Path
) -> None:
    from llmkit.data.prepare import PrepareConfig, prepare
    from llmkit.objectives.base import IGNORE_INDEX, TrainData

    shards = tmp_path / "data"
    config = {"inputs": [str(CORPUS)], "unit": "paragraph", "validation": 0.05}
    prepare(PrepareConfig.from_mapping({**config, "tokenizer": "byte", "output": str(shards)}))
    objective = llmkit.create("objective", "prefix_lm", prefix_fraction=[0.25, 0.75])
    data = TrainData(llmkit.create("tokenizer", "byte"), 32, 8, 128, seed=3, shards=shards)
    train = objective.batches(data).train

    counts = []
    for _ in range(3):
        batch = next(train)
        ids, labels = batch["input_ids"], batch["labels"]
        assert ids.shape == labels.shape == (8, 32)
        for row_ids, row_labels in zip(ids, labels, strict=True):
            first = int((row_labels != IGNORE_INDEX).nonzero()[0])  # predicts the continuation
            prefix = first + 1  # tokens 0..first are the prefix; token first + 1 is scored first
            assert 8 <= prefix <= 24  # a quarter to three quarters of the context
            assert (row_labels[:first] == IGNORE_INDEX).all()
            assert torch.equal(row_labels[first:-1], row_ids[first + 1 :])  # the next tokens
        counts.append(int(objective.count_targets(batch)))
    assert len(set(counts)) > 1  # the number of targets varies from batch to batch

    state = train.state_dict()
    expected = next(train)
    again = objective.batches(data).train
    again.load_state_dict(state)
    resumed = next(again)
    assert all(torch.equal(expected[k], resumed[k]) for k in ("input_ids", "labels"))
    other = llmkit.create("objective", "prefix_lm", prefix_fraction=0.5).batches(data).train
    with pytest.raises(UsageError, match="saved with different prefix"):
        other.load_state_dict(state)


def test_prefix_lm_trains_resumes_bit_identically_and_evaluates_through_the_cli(
    example_loaded: Path, tmp_path: Path
) -> None:
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    for out in (resumed, straight):
        (tmp_path / f"{out.name}.yaml").write_text(prefix_pipeline(out))
    run("run", str(tmp_path / "resumed.yaml"), "train.max_steps=3", "~eval")
    log = run("run", str(tmp_path / "resumed.yaml"))
    assert "resumed from" in log and "step-0000003" in log
    run("run", str(tmp_path / "straight.yaml"))

    first, second = (llmkit.load_model(out / "model").state_dict() for out in (resumed, straight))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # bit-identical after resuming
    assert json.loads((resumed / "summary.json").read_text())["train"]["objective"] == "prefix_lm"

    saved = json.loads((resumed / "eval.json").read_text())
    assert set(saved["metrics"]) == {"perplexity", "nll", "bits_per_byte"}
    assert math.isfinite(saved["metrics"]["perplexity"])
    args = ["--data", str(resumed / "data"), "--context", "32", "--batch-size", "16", "--json"]
    result = json.loads(run("eval", str(resumed / "model"), "--task", "prefix_lm", *args))
    assert result["task"] == "prefix_lm"
    assert {k: result["metrics"][k] for k in saved["metrics"]} == saved["metrics"]  # exactly
    assert result["details"]["tokens"] == saved["details"]["tokens"]
    causal = json.loads(run("eval", str(resumed / "model"), "--task", "causal_lm", *args))
    assert 0.25 * causal["details"]["tokens"] < result["details"]["tokens"]
    assert result["details"]["tokens"] < 0.8 * causal["details"]["tokens"]  # continuations only


def test_prefix_lm_refuses_an_encoder_in_validate(example_loaded: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "bert.yaml"
    pipe.write_text(
        prefix_pipeline(tmp_path / "out")
        .replace("{name: prefix_lm, prefix_fraction: [0.25, 0.75]}", "prefix_lm")
        .replace(
            "name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32, norm: scalenorm",
            "name: bert, d_model: 32, n_layers: 1, n_heads: 2",
        )
    )
    code, output = invoke("validate", str(pipe))
    assert code == 2
    error = output.strip()
    assert "\n" not in error and "train.objective: prefix_lm with model bert" in error
    assert "decoder-only" in error

    from llmkit.models.traits import registered_traits

    objective = llmkit.create("objective", "prefix_lm")
    assert objective.check_model(registered_traits("gpt")) is None
    assert "encoder-decoder" in str(objective.check_model(registered_traits("transformer")))
