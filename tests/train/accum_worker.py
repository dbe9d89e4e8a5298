"""Run under torchrun: two ranks train on uneven halves of each step; rank 0 saves the weights.

argv: OUT OBJECTIVE (masked_lm or seq2seq).
"""

from __future__ import annotations

import sys
from pathlib import Path

import llmkit
from llmkit.train import distributed
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).parent))
from accum_helpers import (
    MaskedBatches,
    pair_batches,
    seq2seq_tokenizer,
    tiny_bert,
    tiny_transformer,
)


def main(out: str, objective: str) -> None:
    dist = distributed.setup("cpu")
    try:
        if objective == "masked_lm":
            model = tiny_bert()
            batches = MaskedBatches(rows=4, rank=dist.rank, world_size=dist.world_size)
        else:
            tok = seq2seq_tokenizer()
            model = tiny_transformer(tok)
            batches = pair_batches(tok, 4, rank=dist.rank, world_size=dist.world_size)
        optimizer = llmkit.create("optimizer", "sgd", model.parameters(), lr=0.5)
        loss = llmkit.create("loss", "cross_entropy")
        settings = TrainSettings(max_steps=2, grad_accum=2, grad_clip=None, log_every=1)
        trainer = Trainer(
            model, objective, optimizer, None, loss, batches, settings, Path(out), dist
        )
        trainer.fit()
        if dist.is_main:
            llmkit.save_model(model, Path(out) / "model")
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
