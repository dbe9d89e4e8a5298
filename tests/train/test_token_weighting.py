"""Gradient accumulation weighs every target token of an optimizer step equally: across
micro-batches and across ranks, for masked LM and padded seq2seq, whose micro-batches hold very
different numbers of targets (the bug class of transformers PR 35438)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import llmkit
from llmkit.train import distributed
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).parent))
from accum_helpers import (
    MaskedBatches,
    masked_rows,
    pair_batches,
    seq2seq_tokenizer,
    tiny_bert,
    tiny_transformer,
)


def fit(tmp_path: Path, model: Any, objective: str, batches: Any, **settings: Any) -> Any:
    optimizer = llmkit.create("optimizer", "sgd", model.parameters(), lr=0.5)
    loss = llmkit.create("loss", "cross_entropy")
    options = TrainSettings(grad_clip=None, log_every=1, **settings)
    trainer = Trainer(
        model, objective, optimizer, None, loss, batches, options, tmp_path,
        distributed.setup("cpu"), log=lambda line: None,
    )  # fmt: skip
    trainer.fit()
    return model


def assert_same_weights(a: Any, b: Any) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=name)


def test_the_micro_batches_are_uneven_enough_to_tell_the_weightings_apart() -> None:
    # Equal weights per micro-batch (the old rule) and per token give gradients that differ by far
    # more than the tolerance of the equality tests below, which would fail under the old rule.
    model = tiny_bert()
    block = masked_rows(0)
    losses, counts = [], []
    for i in range(0, 16, 4):
        part = {k: v[i : i + 4] for k, v in block.items()}
        logits = model(part["input_ids"]).flatten(0, 1)
        losses.append(torch.nn.functional.cross_entropy(logits, part["labels"].flatten()))
        counts.append((part["labels"] != -100).sum())
    loss, count = torch.stack(losses), torch.stack(counts)
    params = [p for name, p in model.named_parameters() if name.startswith(("embed", "blocks"))]
    per_batch = torch.autograd.grad(loss.mean(), params, retain_graph=True)
    per_token = torch.autograd.grad((loss * count).sum() / count.sum(), params)
    assert len({int(c) for c in counts}) > 1
    assert max(float((a - b).abs().max()) for a, b in zip(per_batch, per_token, strict=True)) > 1e-4


def test_masked_lm_four_micro_batches_of_four_equal_one_batch_of_sixteen(tmp_path: Path) -> None:
    one = fit(tmp_path / "one", tiny_bert(), "masked_lm", MaskedBatches(rows=16), max_steps=2)
    four = fit(
        tmp_path / "four", tiny_bert(), "masked_lm", MaskedBatches(rows=4), max_steps=2,
        grad_accum=4,
    )  # fmt: skip
    assert_same_weights(one, four)


def test_padded_seq2seq_four_micro_batches_of_four_equal_one_batch_of_sixteen(
    tmp_path: Path,
) -> None:
    tok = seq2seq_tokenizer()
    one = fit(
        tmp_path / "one", tiny_transformer(tok), "seq2seq", pair_batches(tok, 16), max_steps=2
    )
    four = fit(
        tmp_path / "four", tiny_transformer(tok), "seq2seq", pair_batches(tok, 4), max_steps=2,
        grad_accum=4,
    )  # fmt: skip
    assert_same_weights(one, four)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["masked_lm", "seq2seq"])
def test_two_gloo_ranks_equal_one_process(tmp_path: Path, objective: str) -> None:
    tok = seq2seq_tokenizer()
    if objective == "masked_lm":
        single = fit(tmp_path / "one", tiny_bert(), objective, MaskedBatches(rows=16), max_steps=2)
    else:
        single = fit(
            tmp_path / "one", tiny_transformer(tok), objective, pair_batches(tok, 16), max_steps=2
        )
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).parent / "accum_worker.py"), str(out), objective],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(single, llmkit.load_model(out / "model"))
