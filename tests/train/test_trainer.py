"""The training loop: accumulation equals a big batch, DDP equals one process, errors are clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import llmkit
from llmkit.errors import UsageError
from llmkit.train import distributed
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).parent))
from trainer_helpers import FixedBatches, tiny_gpt


def train(tmp_path: Path, batches: FixedBatches, **settings: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_gpt()
    make_trainer(tmp_path, model, batches, **settings).fit()
    return model


def make_trainer(
    tmp_path: Path, model: torch.nn.Module, batches: FixedBatches, **settings: object
) -> Trainer:
    optimizer = llmkit.create("optimizer", "sgd", model.parameters(), lr=0.5)
    loss = llmkit.create("loss", "cross_entropy")
    return Trainer(
        model,
        "causal_lm",
        optimizer,
        None,
        loss,
        batches,
        TrainSettings(grad_clip=None, log_every=1, **settings),  # type: ignore[arg-type]
        tmp_path,
        distributed.setup("cpu"),
        log=lambda line: None,
    )


def test_gradient_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    big = train(tmp_path / "a", FixedBatches(rows=8), max_steps=3)

    # Two micro-batches of 4 rows per step: rows 0::2 then 1::2 of the same block.
    class Halves(FixedBatches):
        def __next__(self) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(1000 + self.step // 2)
            block = torch.randint(0, 32, (8, 9), generator=g)[self.step % 2 :: 2]
            self.step += 1
            return {"input_ids": block[:, :-1], "labels": block[:, 1:]}

    small = train(tmp_path / "b", Halves(), max_steps=3, grad_accum=2)
    for (name, a), b in zip(big.state_dict().items(), small.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_compiled_step_trains_like_the_eager_one(tmp_path: Path) -> None:
    """`compile: true` compiles model and loss together; three steps give the eager weights."""
    eager = train(tmp_path / "eager", FixedBatches(), max_steps=3)
    compiled = train(tmp_path / "compiled", FixedBatches(), max_steps=3, compile=True)
    for (name, a), b in zip(
        eager.state_dict().items(), compiled.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    losses = [
        [
            json.loads(line)["loss"]
            for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in ("eager", "compiled")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_training_reduces_loss_and_writes_a_checkpoint(tmp_path: Path) -> None:
    train(tmp_path, FixedBatches(), max_steps=4)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert (tmp_path / "checkpoints" / "step-0000004" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000004"


def test_checkpoints_are_readable_by_others_and_killed_saves_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / "checkpoints" / ".step-0000002.x8u7omy5"  # a save killed mid-write
    (stale / "inner").mkdir(parents=True)
    (stale / "inner" / "model.safetensors").write_bytes(b"x" * 100)
    old = os.umask(0o022)
    try:
        train(tmp_path, FixedBatches(), max_steps=2, checkpoint_every=1)
    finally:
        os.umask(old)
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step-0000001",
        "step-0000002",
    ]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files), [
        (p.name, oct(p.stat().st_mode & 0o777)) for p in files
    ]


def test_running_out_of_data_is_a_clear_error(tmp_path: Path) -> None:
    class Short(FixedBatches):
        def __next__(self) -> dict[str, torch.Tensor]:
            if self.step >= 2:
                raise StopIteration
            return super().__next__()

    with pytest.raises(UsageError, match="training data ran out at step 2 of 5"):
        train(tmp_path, Short(), max_steps=5)


def test_resume_refuses_a_checkpoint_of_another_model_config(tmp_path: Path) -> None:
    train(tmp_path, FixedBatches(), max_steps=2)  # tiny_gpt: sdpa attention, learned positions
    latest = tmp_path / "checkpoints" / "step-0000002"

    def gpt(**changes: object) -> torch.nn.Module:
        return llmkit.create(
            "model",
            "gpt",
            **{"vocab_size": 32, "d_model": 16, "n_layers": 1, "n_heads": 2, "max_positions": 16}
            | changes,
        )

    for changes, message in [
        ({"attention": "sliding_window"}, "attention 'sdpa' -> 'sliding_window'"),  # same shapes
        ({"attention": "mqa"}, "attention 'sdpa' -> 'mqa'"),  # different shapes
        ({"position": "rope", "n_layers": 2}, "n_layers 1 -> 2; position 'learned' -> 'rope'"),
    ]:
        trainer = make_trainer(tmp_path, gpt(**changes), FixedBatches(), max_steps=4)
        with pytest.raises(UsageError) as info:
            trainer.resume()
        text = str(info.value)
        assert text.startswith(f"{latest}: was trained with another model config")
        assert message in text and "train.resume=false" in text and "\n" not in text
    # Dropout, gradient checkpointing and mha <-> sdpa leave the weights' meaning alone.
    same = gpt(attention="mha", dropout=0.1, gradient_checkpointing=True)
    trainer = make_trainer(tmp_path, same, FixedBatches(), max_steps=4)
    assert trainer.resume() and trainer.step == 2


def test_fp16_on_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        train(tmp_path, FixedBatches(), max_steps=1, precision="fp16")


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    single = train(tmp_path / "single", FixedBatches(), max_steps=3)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(Path(__file__).parent / "ddp_worker.py"),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_file(str(out / "weights.safetensors"))
    reference = single.state_dict()
    for key, value in ddp.items():
        torch.testing.assert_close(value, reference[key], atol=1e-5, rtol=1e-4, msg=key)


def test_logged_rates_are_per_window_and_the_final_loss_is_the_last_window(tmp_path: Path) -> None:
    # tokens_per_second is each window's own rate (it used to be a cumulative average that ramped
    # up), and the result's train_loss is the last logged window's loss (it was the last step's).
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, tiny_gpt(), FixedBatches(), max_steps=6)
    trainer.settings.log_every = 3
    result = trainer.fit()
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6]
    assert result.train_loss == history[-1]["loss"]
    assert trainer.history[-1]["loss"] == history[-1]["loss"]
    for entry in history:  # 3 steps of 8 x 8 tokens per window, over at most the run's time
        assert entry["tokens_per_second"] >= 3 * 64 / result.seconds
