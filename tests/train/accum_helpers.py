"""Batches whose micro-batches hold different numbers of targets (masked LM, padded seq2seq), the
case where weighing micro-batch means equally is wrong; shared by the tests and the torchrun worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

import llmkit
from llmkit.data.records import Record
from llmkit.tokenizers.simple import ByteTokenizer

VOCAB, LENGTH, ROWS, MASK_ID = 40, 12, 16, 3


def tiny_bert() -> Any:
    """A one-layer BERT without dropout (so that every split of a batch computes the same)."""
    torch.manual_seed(0)
    return llmkit.create(
        "model", "bert", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, max_positions=16,
        dropout=0.0,
    )  # fmt: skip


def masked_rows(step: int) -> dict[str, torch.Tensor]:
    """16 rows of step `step`; row i masks between 1 and 12 positions (the count varies a lot)."""
    g = torch.Generator().manual_seed(500 + step)
    ids = torch.randint(4, VOCAB, (ROWS, LENGTH), generator=g)
    labels = torch.full_like(ids, -100)
    for i in range(ROWS):
        n = int(torch.randint(1, LENGTH + 1, (1,), generator=g))
        where = torch.randperm(LENGTH, generator=g)[:n]
        labels[i, where] = ids[i, where]
        ids[i, where] = MASK_ID
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


class MaskedBatches:
    """Step s's 16 rows cut into micro-batches of `rows`; a rank r of w takes micro-batches r::w."""

    def __init__(self, rows: int = ROWS, rank: int = 0, world_size: int = 1) -> None:
        self.rows, self.rank, self.world_size = rows, rank, world_size
        self.queue: list[dict[str, torch.Tensor]] = []
        self.step = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if not self.queue:
            block = masked_rows(self.step)
            self.step += 1
            parts = [
                {k: v[i : i + self.rows] for k, v in block.items()}
                for i in range(0, ROWS, self.rows)
            ]
            self.queue = parts[self.rank :: self.world_size]
        return self.queue.pop(0)


def tiny_transformer(tokenizer: ByteTokenizer) -> Any:
    """A one-layer encoder-decoder without dropout."""
    torch.manual_seed(0)
    return llmkit.create(
        "model", "transformer", vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2,
        n_encoder_layers=1, n_decoder_layers=1, max_positions=64, dropout=0.0,
    )  # fmt: skip


def pair_records() -> list[Record]:
    """16 source/target pairs whose targets run from 1 to 16 characters (very uneven padding)."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(ROWS):
        letters = torch.randint(97, 123, (i + 1,), generator=g).tolist()
        target = "".join(map(chr, letters))
        out.append(Record(text=target[::-1], target=target))
    return out


def pair_batches(tokenizer: ByteTokenizer, rows: int, rank: int = 0, world_size: int = 1) -> Any:
    """Endless seq2seq batches of the 16 pairs, in order, `rows` a batch, rank r taking rows r::w."""
    from llmkit.data.batching import Seq2SeqBatches

    return Seq2SeqBatches(
        pair_records(), tokenizer, rows, shuffle=False, epochs=None, rank=rank,
        world_size=world_size,
    )  # fmt: skip


def seq2seq_tokenizer() -> ByteTokenizer:
    """Bytes plus padding, start and end tokens."""
    return ByteTokenizer(["<pad>", "<s>", "</s>"])
