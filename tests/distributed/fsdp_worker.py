"""Trains the tiny GPT for a few steps as one process or under torchrun (ddp or fsdp), then rank 0
writes the whole model's weights to OUT/weights.safetensors.

Usage: fsdp_worker.py OUT STRATEGY MAX_STEPS [KILL]; KILL `step:N` ends every process (os._exit)
inside step N+1 after its backward, `save:N` inside the save of step N, after the shards are on
disk but before the checkpoint is published. A rerun without KILL resumes from OUT/checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import llmkit
from llmkit.storage import sharded
from llmkit.train import distributed, fsdp
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from trainer_helpers import VOCAB, FixedBatches


def tiny_gpt() -> torch.nn.Module:
    """Two blocks (two FSDP groups plus the root), small enough to train in milliseconds;
    FSDP_WORKER_MODEL (JSON) adds model settings such as gradient_checkpointing."""
    extra = json.loads(os.environ.get("FSDP_WORKER_MODEL", "{}"))
    return llmkit.create(
        "model", "gpt", vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, max_positions=16,
        **extra,
    )  # fmt: skip


def main(out: str, strategy: str, max_steps: int, kill: str = "") -> None:
    dist = distributed.setup("cpu")
    try:
        torch.manual_seed(0)
        mixed = os.environ.get("FSDP_WORKER_BF16_OFFLOAD") == "1"  # bf16 compute, host shards
        settings = fsdp.DistributedSettings(
            strategy=strategy,  # type: ignore[arg-type]
            mixed_precision="bf16" if mixed else "none",
            cpu_offload=mixed,
        )
        adapter = os.environ.get("FSDP_WORKER_ADAPTER")  # JSON: train.adapter, e.g. lora

        def make() -> torch.nn.Module:
            model = tiny_gpt()
            if adapter:
                from llmkit.adapters import apply_adapter

                model = apply_adapter(model, json.loads(adapter))
            return model

        # fsdp: rank 0 builds the model, every rank a meta-device copy that receives its shards.
        model = fsdp.build(make, dist, settings)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = llmkit.create("optimizer", "adamw", trainable, lr=0.02, eps=1e-3)
        loss = llmkit.create("loss", "cross_entropy")
        batches = FixedBatches(rank=dist.rank, world_size=dist.world_size)
        train = TrainSettings(
            max_steps=max_steps,
            log_every=1,
            checkpoint_every=2,
            strategy=settings.strategy,
            compile=os.environ.get("FSDP_WORKER_COMPILE") == "1",
        )
        trainer = Trainer(
            model, "causal_lm", optimizer, None, loss, batches, train, Path(out), dist
        )
        what, _, at = kill.partition(":")
        if what == "step":
            step = optimizer.step

            def dying_step(*args: object, **kwargs: object) -> object:
                if trainer.step == int(at):
                    os._exit(9)
                return step(*args, **kwargs)

            optimizer.step = dying_step  # type: ignore[method-assign]
        elif what == "save":
            write_index = sharded.write_index

            def dying_index(directory: Path) -> object:
                if trainer.step == int(at):
                    os._exit(9)
                return write_index(directory)

            sharded.write_index = dying_index  # type: ignore[assignment]
        trainer.resume()
        trainer.fit()
        with fsdp.gathered(model) as whole:
            if dist.is_main:
                from safetensors.torch import save_file

                weights = {k: v.detach().contiguous() for k, v in whole.state_dict().items()}
                save_file(
                    {k: v for k, v in weights.items() if "head" not in k},
                    out + "/weights.safetensors",
                )
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
