"""Run under torchrun: two ranks train on their halves of each batch; rank 0 saves the weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import llmkit
from llmkit.train import distributed
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).parent))
from trainer_helpers import FixedBatches, tiny_gpt


def main(out: str) -> None:
    dist = distributed.setup("cpu")
    try:
        torch.manual_seed(0)
        model = tiny_gpt()
        optimizer = llmkit.create("optimizer", "sgd", model.parameters(), lr=0.5)
        loss = llmkit.create("loss", "cross_entropy")
        batches = FixedBatches(rank=dist.rank, world_size=dist.world_size)
        settings = TrainSettings(max_steps=3, grad_clip=None, log_every=1)
        Trainer(model, "causal_lm", optimizer, None, loss, batches, settings, Path(out), dist).fit()
        if dist.is_main:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in model.state_dict().items() if "head" not in k},
                out + "/weights.safetensors",
            )
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
