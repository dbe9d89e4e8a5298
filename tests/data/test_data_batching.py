"""Batching for every objective: shapes, masking statistics, rank splits and exact resumption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import llmkit
from llmkit.data.batching import IGNORE_INDEX, mask_tokens
from llmkit.data.prepare import PrepareConfig, prepare
from llmkit.data.records import Record
from llmkit.data.shards import TokenShards
from llmkit.errors import UsageError


@pytest.fixture
def shard_dir(tmp_path: Path, tiny_tokenizer: Any) -> Path:
    """About 30k tokens of Python's language reference, prepared with the tiny byte tokenizer."""
    from pydoc_data.topics import topics

    src = tmp_path / "ref.jsonl"
    import json

    texts = [t for _, t in sorted(topics.items())][:20]
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "shards"
    prepare(
        PrepareConfig.from_mapping(
            {
                "inputs": [str(src)],
                "format": "jsonl",
                "tokenizer": "testbytes",
                "output": str(out),
                "validation": 0.0,
                "clean": ["nfc"],
            }
        )
    )
    return out


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_causal_windows_are_shifted_views_of_the_token_stream(shard_dir: Path) -> None:
    shards = TokenShards(shard_dir)
    it = llmkit.create("dataset", "causal_lm", str(shard_dir), context=64, batch_size=4, seed=1)
    batch = next(it)
    assert batch["input_ids"].shape == (4, 64) and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    flat = torch.from_numpy(shards.window(0, len(shards)))
    row = batch["input_ids"][0]
    hits = [i for i in range(len(flat) - 64) if torch.equal(flat[i : i + 64], row)]
    assert hits, "a window must come from the packed token stream"


def test_sequential_windows_cover_the_data_in_order(shard_dir: Path) -> None:
    shards = TokenShards(shard_dir)
    it = llmkit.create(
        "dataset", "causal_lm", str(shard_dir), context=128, batch_size=8, mode="sequential"
    )
    batches = list(it)
    assert len(batches) == len(it) == (len(shards) - 1) // 128 // 8
    x = torch.cat([b["input_ids"] for b in batches]).reshape(-1)
    assert torch.equal(x, torch.from_numpy(shards.window(0, len(x))))


def test_ranks_see_disjoint_parts(shard_dir: Path) -> None:
    seen = []
    for rank in range(2):
        it = llmkit.create(
            "dataset",
            "causal_lm",
            str(shard_dir),
            context=32,
            batch_size=4,
            mode="sequential",
            rank=rank,
            world_size=2,
        )
        assert len(it) > 0
        starts = set()
        for b in it:
            starts.update(map(tuple, b["input_ids"].tolist()))
        seen.append(starts)
    assert not seen[0] & seen[1]
    with pytest.raises(UsageError, match=r"rank 2 is not in 0\.\.1"):
        llmkit.create(
            "dataset", "causal_lm", str(shard_dir), context=8, batch_size=1, rank=2, world_size=2
        )


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_window_iterators_resume_exactly(shard_dir: Path, mode: str) -> None:
    kwargs = {"context": 32, "batch_size": 4, "mode": mode, "seed": 7, "epochs": None}
    it = llmkit.create("dataset", "causal_lm", str(shard_dir), **kwargs)
    for _ in range(5):
        next(it)
    state = it.state_dict()
    expected = [next(it) for _ in range(4)]
    resumed = llmkit.create("dataset", "causal_lm", str(shard_dir), **kwargs)
    resumed.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(expected, [next(resumed) for _ in range(4)], strict=True))
    other = llmkit.create("dataset", "causal_lm", str(shard_dir), **{**kwargs, "seed": 8})
    with pytest.raises(UsageError, match="different seed"):
        other.load_state_dict(state)


def test_mlm_masking_statistics() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 250, size=(64, 512))
    ids[:, ::50] = 256  # EOS-like specials scattered through the batch
    specials = [256, 257]
    inputs, labels = mask_tokens(ids, np.random.default_rng(1), 257, 258, specials)
    chosen = labels != IGNORE_INDEX
    eligible = ~np.isin(ids, specials)
    rate = chosen.sum() / eligible.sum()
    assert abs(rate - 0.15) < 0.01
    assert not chosen[~eligible].any(), "special tokens must never be masked"
    assert np.array_equal(labels[chosen], ids[chosen])
    masked = (inputs == 257) & chosen
    kept = (inputs == ids) & chosen
    randomised = chosen & ~masked & ~kept
    n = chosen.sum()
    assert abs(masked.sum() / n - 0.8) < 0.02
    assert abs(kept.sum() / n - 0.1) < 0.02 + 1 / 250  # a random token can equal the original
    assert abs(randomised.sum() / n - 0.1) < 0.02
    assert not np.isin(inputs[randomised], specials).any()
    assert np.array_equal(inputs[~chosen], ids[~chosen])


def test_masked_lm_batches(shard_dir: Path, tiny_tokenizer: Any) -> None:
    it = llmkit.create(
        "dataset", "masked_lm", str(shard_dir), context=128, batch_size=8, tokenizer=tiny_tokenizer
    )
    b = next(it)
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape == (8, 128)
    predicted = b["labels"] != IGNORE_INDEX
    assert 0.08 < predicted.float().mean().item() < 0.22
    assert not (b["labels"][predicted] == 256).any()
    state = it.state_dict()
    want = next(it)
    again = llmkit.create(
        "dataset", "masked_lm", str(shard_dir), context=128, batch_size=8, tokenizer=tiny_tokenizer
    )
    again.load_state_dict(state)
    assert same(want, next(again))
    with pytest.raises(UsageError, match="mask token"):
        llmkit.create("dataset", "masked_lm", str(shard_dir), context=8, batch_size=1)


PAIRS = [
    ("Guten Morgen.", "Good morning."),
    ("Wie geht es dir?", "How are you?"),
    ("Das Haus ist groß.", "The house is big."),
    ("Ich lese ein Buch.", "I am reading a book."),
    ("Es regnet.", "It is raining."),
]


def test_seq2seq_padding_and_shifted_decoder_inputs(tiny_tokenizer: Any) -> None:
    it = llmkit.create(
        "dataset",
        "seq2seq",
        [Record(s, target=t) for s, t in PAIRS],
        tiny_tokenizer,
        batch_size=2,
        shuffle=False,
        bos_id=257,
    )
    b = next(it)
    assert b["input_ids"].shape[0] == 2
    src0 = list(PAIRS[0][0].encode())
    assert b["input_ids"][0, : len(src0)].tolist() == src0
    assert b["attention_mask"][0].sum().item() == len(src0)
    tgt1 = list(PAIRS[1][1].encode())
    assert b["decoder_input_ids"][1, : len(tgt1) + 1].tolist() == [257, *tgt1]
    assert b["labels"][1, : len(tgt1) + 1].tolist() == [*tgt1, 256]
    assert (b["labels"][0, len(PAIRS[0][1]) + 1 :] == IGNORE_INDEX).all()
    assert torch.equal(
        b["decoder_input_ids"][:, 1:][b["labels"][:, :-1] != IGNORE_INDEX],
        b["labels"][:, :-1][b["labels"][:, :-1] != IGNORE_INDEX],
    )
    assert len(it) == 3 and len(list(it)) == 2  # 5 pairs: batches of 2, 2, 1


def test_record_iterators_split_ranks_and_resume(tiny_tokenizer: Any) -> None:
    pairs = [(f"source {i}", f"target {i}") for i in range(40)]
    seen = []
    for rank in range(2):
        it = llmkit.create(
            "dataset",
            "seq2seq",
            pairs,
            tiny_tokenizer,
            batch_size=4,
            rank=rank,
            world_size=2,
            seed=3,
        )
        rows = [tiny_tokenizer.decode(r.tolist()) for b in it for r in b["input_ids"]]
        seen.append({r.rstrip("\x00").replace("\ufffd", "") for r in rows})
    assert len(seen[0]) == len(seen[1]) == 20 and not seen[0] & seen[1]

    it = llmkit.create("dataset", "seq2seq", pairs, tiny_tokenizer, batch_size=3, epochs=None)
    for _ in range(9):  # into the second epoch
        next(it)
    state = it.state_dict()
    want = [next(it) for _ in range(8)]
    again = llmkit.create("dataset", "seq2seq", pairs, tiny_tokenizer, batch_size=3, epochs=None)
    again.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(want, [next(again) for _ in range(8)], strict=True))


def test_classification_label_vocabulary_from_data(tiny_tokenizer: Any) -> None:
    data = [
        Record("A warm, funny film.", label="fresh"),
        Record("Dull and overlong.", label="rotten"),
        Record("Sharp writing.", label="fresh"),
    ]
    it = llmkit.create(
        "dataset", "classification", data, tiny_tokenizer, batch_size=3, shuffle=False, max_length=8
    )
    assert it.label_vocab == ["fresh", "rotten"] and it.num_labels == 2
    b = next(it)
    assert b["labels"].tolist() == [0, 1, 0]
    assert b["input_ids"].shape == (3, 8)
    with pytest.raises(UsageError, match="no text or label"):
        llmkit.create("dataset", "classification", [Record("x", label=None)], tiny_tokenizer)
    with pytest.raises(UsageError, match="labels not in the label vocabulary: rotten"):
        llmkit.create("dataset", "classification", data, tiny_tokenizer, labels=["fresh"])
    state = it.state_dict()
    it2 = llmkit.create("dataset", "classification", data[:2], tiny_tokenizer, batch_size=3)
    with pytest.raises(UsageError, match="different"):
        it2.load_state_dict(state)
