"""Batched text generation: left-padded groups give what each prompt gives alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from inference_helpers import tiny_transformer

from llmkit.errors import UsageError
from llmkit.inference.batch import finish_text, generate_texts_batched
from llmkit.inference.generation import generate_text
from llmkit.tokenizers.simple import ByteTokenizer

PROMPTS = ["The cat", "a", "Once upon a time, there", "xyz 12", "hello world", "Q"]


def model_for(position: str) -> torch.nn.Module:
    from llmkit.models.gpt import GPT, GPTConfig
    from llmkit.models.llama import Llama, LlamaConfig

    torch.manual_seed(7)
    size = dict(vocab_size=256, max_positions=96, n_layers=2, n_heads=4, d_model=32)
    if position == "llama":
        model: torch.nn.Module = Llama(LlamaConfig(**size, n_kv_heads=2, d_ff=48))
    else:
        model = GPT(GPTConfig(**size, position=position, tie_embeddings=False))
        with torch.no_grad():  # sharper, more varied greedy paths
            model.head.weight.mul_(8.0)
    return model.eval()


def one_by_one(model: torch.nn.Module, **options: Any) -> list[str]:
    return [generate_text(model, ByteTokenizer(), p, **options) for p in PROMPTS]


@pytest.mark.parametrize("position", ["learned", "llama"])
@pytest.mark.parametrize("batch_size", [1, 4, 8])
def test_batched_equals_one_by_one(position: str, batch_size: int) -> None:
    model, tok = model_for(position), ByteTokenizer()
    plain = one_by_one(model, max_new_tokens=24)
    # Stops that really occur: a character from the middle of one output, a byte id of another.
    longest, second = sorted(plain, key=len)[-2:][::-1]
    stop = [longest[len(longest) // 2]]
    stop_id = second.encode("utf-8")[len(second.encode("utf-8")) // 2]
    options: dict[str, Any] = dict(max_new_tokens=24, stop=stop, stop_token_ids=[stop_id])
    want = one_by_one(model, **options)
    assert want != plain  # the stops cut something
    got = generate_texts_batched(model, tok, PROMPTS, batch_size=batch_size, **options)
    assert got == want
    assert (
        generate_texts_batched(model, tok, PROMPTS, batch_size=batch_size, max_new_tokens=24)
        == plain
    )


def test_batched_repetition_penalty_ignores_padding() -> None:
    model, tok = model_for("learned"), ByteTokenizer()
    want = one_by_one(model, max_new_tokens=16, repetition_penalty=1.5)
    got = generate_texts_batched(
        model, tok, PROMPTS, batch_size=6, max_new_tokens=16, repetition_penalty=1.5
    )
    assert got == want


def test_batched_sampling_is_reproducible() -> None:
    model, tok = model_for("llama"), ByteTokenizer()
    options: dict[str, Any] = dict(batch_size=3, max_new_tokens=12, temperature=1.0, seed=5)
    first = generate_texts_batched(model, tok, PROMPTS, **options)
    assert first == generate_texts_batched(model, tok, PROMPTS, **options)
    assert first != generate_texts_batched(model, tok, PROMPTS, **{**options, "seed": 6})


def test_bad_batch_inputs() -> None:
    model, tok = model_for("learned"), ByteTokenizer()
    with pytest.raises(UsageError, match="batch_size"):
        generate_texts_batched(model, tok, PROMPTS, batch_size=0)
    with pytest.raises(UsageError, match="prompt 2 is empty"):
        generate_texts_batched(model, tok, ["ok", ""])
    assert generate_texts_batched(model, tok, []) == []


def test_finish_text() -> None:
    assert finish_text("abc\ndef", ["\n"]) == "abc"
    assert finish_text("abc", ["x", ""]) == "abc"
    assert finish_text("ab\ufffd", []) == "ab"
    assert finish_text("a-b+c", ["+", "-"]) == "a"


@pytest.mark.parametrize("position", ["learned", "llama"])
def test_prompts_near_the_context_end_get_their_own_budget(position: str) -> None:
    model, tok = model_for(position), ByteTokenizer()  # context 96
    prompts = ["short", "x" * 80, "also short", "y" * 90]
    want = [generate_text(model, tok, p, max_new_tokens=24) for p in prompts]
    assert len(want[3]) <= 96 - 90 < len(want[0])  # the budgets really differ
    got = generate_texts_batched(model, tok, prompts, batch_size=4, max_new_tokens=24)
    assert got == want
    with pytest.raises(UsageError, match="context is 96 tokens"):
        generate_texts_batched(model, tok, ["z" * 96, "ok"], batch_size=2)


def test_batched_beam_search_keeps_each_sources_hypothesis() -> None:
    from llmkit.inference.batch import beam_search_batched
    from llmkit.inference.generation import beam_search

    model = tiny_transformer(vocab=23, seed=2)
    with torch.no_grad():
        model.head.weight.mul_(4.0)  # sharper distributions: beams that differ by source
    sources = [[5, 6, 7, 8, 9, 10, 11], [3], [12, 4, 4], [9, 9, 9, 9, 2], [7, 1]]
    options: dict[str, Any] = dict(
        beam_size=3, max_new_tokens=8, bos_token_id=1, eos_token_id=2, length_penalty=0.7
    )
    alone = [beam_search(model, [s], **options)[0][0] for s in sources]
    assert len({tuple(h.tokens) for h in alone}) > 2
    for size in (2, 5):
        got = beam_search_batched(model, sources, batch_size=size, pad_id=0, **options)
        assert [h.tokens for h in got] == [h.tokens for h in alone]
        assert [h.score for h in got] == pytest.approx([h.score for h in alone], abs=1e-4)
    with pytest.raises(UsageError, match="non-empty"):
        beam_search_batched(model, [[3], []], **options)
