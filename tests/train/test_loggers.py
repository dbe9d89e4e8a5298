"""Loggers (kind `logger`): every logged scalar reaches jsonl, csv, TensorBoard and a plugin's
logger with the same values; bad logger names and parameters are one clear line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from helpers import tiny_pipeline

import llmkit
from llmkit.cli import cli
from llmkit.hookspecs import Register, hookimpl
from llmkit.loggers.base import Logger, Scalars

MODEL = "d_model: 16, n_layers: 1, n_heads: 2, max_positions: 16"
TRAIN = (
    "scheduler: {name: cosine, warmup_steps: 2}, context: 16, batch_size: 2, max_steps: 6, "
    "log_every: 2, eval_every: 4, eval_batches: 2, loggers: "
)
EVAL = "eval: {metrics: [perplexity, bits_per_byte], batches: 2}\n"
PEAK = 1.0e9  # a made-up CPU peak FLOP/s, so that the CPU run logs an MFU


class Recorder(Logger):
    """A third party's logger: keeps what it is given."""

    seen: ClassVar[list[tuple[str, int, dict[str, float]]]] = []

    def __init__(self, run_dir: Path, tag: str = "x") -> None:
        super().__init__(run_dir)
        self.tag = tag

    def log(self, step: int, scalars: Scalars) -> None:
        Recorder.seen.append(("log", step, dict(scalars)))

    def log_eval(self, step: int, metrics: Scalars) -> None:
        Recorder.seen.append(("eval", step, dict(metrics)))


class RecorderPlugin:
    @hookimpl
    def register_loggers(self, register: Register) -> None:
        register("recorder", Recorder)


def write_pipeline(tmp_path: Path, loggers: str) -> Path:
    pipe = tmp_path / "p.yaml"
    pipe.write_text(tiny_pipeline(tmp_path / "run", "logged", MODEL, TRAIN + loggers, EVAL))
    return pipe


def run(tmp_path: Path, loggers: str, *overrides: str) -> Any:
    pipe = write_pipeline(tmp_path, loggers)
    return tmp_path / "run", CliRunner().invoke(cli, ["run", str(pipe), *overrides])


def rows(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def cpu_mfu(tokens_per_s: float, flops_per_token: float, device: Any) -> float | None:
    """`summary.mfu` as if the CPU's peak were known to be PEAK."""
    import torch

    return tokens_per_s * flops_per_token / PEAK if torch.device(device).type == "cpu" else None


def test_every_logger_gets_the_same_scalars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmkit.analysis import summary

    monkeypatch.setattr(summary, "mfu", cpu_mfu)
    Recorder.seen = []
    llmkit.register_plugin(RecorderPlugin(), name="recorder-plugin")
    loggers = "[jsonl, csv, {name: tensorboard, flush_secs: 1}, {name: recorder, tag: t}]"
    out, result = run(tmp_path, loggers)
    assert result.exit_code == 0, result.output
    history = rows(out)
    assert [h["step"] for h in history] == [2, 4, 6]  # one line per log step, as before
    for key in ("loss", "lr", "tokens_per_second", "tokens", "grad_norm", "mfu"):
        assert all(key in h for h in history), key
    assert [h["tokens"] for h in history] == [64, 128, 192]  # 2 steps x 2 x 16 tokens each
    assert "eval_loss" in history[1] and "eval_loss" in history[2]
    flops = summary.training_flops_per_token(llmkit.load_model(out / "model"), 16)
    for h in history:  # MFU = achieved training FLOP/s over the peak, at the trained context
        assert h["mfu"] == pytest.approx(h["tokens_per_second"] * flops / PEAK, rel=1e-12)

    evaluation = json.loads((out / "eval.json").read_text())["metrics"]
    final = {(6, f"eval/{k}"): float(v) for k, v in evaluation.items()}
    assert set(evaluation) == {"perplexity", "bits_per_byte"}
    logged = {(h["step"], k): v for h in history for k, v in h.items() if k != "step"}
    assert {k: v for k, v in logged.items() if k[1].startswith("eval/")} == final  # last line's
    expected = {k: v for k, v in logged.items() if k not in final}  # the trainer's scalars

    with open(out / "metrics.csv", newline="") as f:
        table = [dict(r) for r in csv.DictReader(f)]
    assert [int(r["step"]) for r in table] == [2, 4, 6]  # one row per log step there too
    cells = {(int(r["step"]), k): float(v) for r in table for k, v in r.items() if v}
    assert {k: v for k, v in cells.items() if k[1] != "step"} == logged  # exactly, eval too

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    board = {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    assert board.keys() == logged.keys()
    for key, value in logged.items():  # stored as 32-bit floats
        assert board[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key

    recorded = {
        (step, k): v for kind, step, s in Recorder.seen if kind == "log" for k, v in s.items()
    }
    assert recorded == expected
    evals = [(step, s) for kind, step, s in Recorder.seen if kind == "eval"]
    assert evals == [(6, {k: v for (_, k), v in final.items()})]

    from llmkit.plots.curves import read_metrics, run_series

    assert not any(k.startswith("eval/") for k in run_series(read_metrics(out)))  # no curve


def test_a_rerun_of_the_eval_stage_replaces_its_values(tmp_path: Path) -> None:
    out, result = run(tmp_path, "[jsonl, csv]")
    assert result.exit_code == 0, result.output
    before = (out / "metrics.jsonl").read_text(), (out / "metrics.csv").read_text()
    again = CliRunner().invoke(cli, ["run", str(write_pipeline(tmp_path, "[jsonl, csv]"))])
    assert again.exit_code == 0 and "already at step 6" in again.output, again.output
    assert ((out / "metrics.jsonl").read_text(), (out / "metrics.csv").read_text()) == before


def test_default_is_jsonl_alone(tmp_path: Path) -> None:
    out, result = run(tmp_path, "[jsonl]", "~train.loggers", "~eval", "train.max_steps=4")
    assert result.exit_code == 0, result.output
    assert [h["step"] for h in rows(out)] == [2, 4]
    assert not (out / "metrics.csv").exists() and not (out / "tensorboard").exists()


@pytest.mark.parametrize(
    ("loggers", "message"),
    [
        (
            "[jsonl, tensorbord]",
            "train.loggers[1]: unknown logger 'tensorbord'; did you mean 'tensorboard'?",
        ),
        ("[{name: csv, filenme: m.csv}]", "train.loggers[0]"),
    ],
)
def test_bad_loggers_are_one_line(tmp_path: Path, loggers: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(write_pipeline(tmp_path, loggers))])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_mfu_uses_the_bf16_peak_of_a_known_gpu_per_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from llmkit.analysis import summary
    from llmkit.train import distributed
    from llmkit.train.trainer import Trainer, TrainSettings

    model = llmkit.create(
        "model", "gpt", vocab_size=64, d_model=32, n_layers=1, n_heads=2, max_positions=16
    )
    optimizer = llmkit.create("optimizer", "sgd", model.parameters(), lr=0.1)
    loss = llmkit.create("loss", "cross_entropy")
    trainer = Trainer(
        model, "causal_lm", optimizer, None, loss, iter([]), TrainSettings(), tmp_path,
        distributed.setup("cpu"), log=lambda line: None, loggers=[],
    )  # fmt: skip
    trainer.context = 16
    assert trainer._mfu(1000.0) is None  # a CPU's peak is not known: no mfu logged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    trainer.dist = distributed.Dist(0, 2, 0, torch.device("cuda"))  # rank 0 of two GPUs
    flops = summary.training_flops_per_token(model, 16)
    for name, peak in (("NVIDIA H200", 989.4e12), ("NVIDIA A100-SXM4-80GB", 312e12)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, n=name: n)
        trainer.flops_per_token = None  # a new run
        assert trainer._mfu(1000.0) == pytest.approx(1000.0 / 2 * flops / peak, rel=1e-12)
        assert trainer.flops_per_token == flops  # counted once, then kept
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    trainer.flops_per_token = None
    assert trainer._mfu(1000.0) is None  # a GPU not in the table
