"""Generation: greedy/sampling with and without the KV cache, filters, stops, streaming, beams."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from inference_helpers import tiny_transformer

from llmkit.errors import UsageError
from llmkit.inference.generation import (
    SamplingConfig,
    apply_chat_template,
    beam_search,
    encode_prompt,
    generate,
    next_token,
    positions_from_mask,
    stream,
    stream_text,
    top_k_filter,
    top_p_filter,
)


def tiny_gpt(vocab: int = 61, seed: int = 0, **kw: Any) -> torch.nn.Module:
    from llmkit.models.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    options = dict(vocab_size=vocab, max_positions=64, n_layers=2, n_heads=4, d_model=32)
    options.update(kw)
    model = GPT(GPTConfig(**options)).eval()
    with torch.no_grad():  # sharper distributions so greedy paths are not ties
        model.head.weight.mul_(8.0) if not options.get("tie_embeddings", True) else None
    return model


def tiny_llama(vocab: int = 61, seed: int = 0) -> torch.nn.Module:
    from llmkit.models.llama import Llama, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, max_positions=64, n_layers=2, n_heads=4, n_kv_heads=2, d_model=32, d_ff=48
    )
    return Llama(cfg).eval()


def argmax_loop(model: torch.nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    """The plainest greedy decoding: recompute the whole sequence, append the argmax."""
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


PROMPT = torch.tensor([[3, 14, 15, 9, 2, 6], [5, 3, 5, 8, 9, 7]])


@pytest.mark.parametrize("make", [tiny_gpt, tiny_llama])
def test_greedy_with_cache_equals_argmax_loop(make: Any) -> None:
    model = make()
    expected = argmax_loop(model, PROMPT, 12)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=12), expected)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=12, use_cache=False), expected)


@pytest.mark.parametrize(
    ("attention", "extra"),
    [
        ("mha", {}),
        ("sdpa", {}),
        ("gqa", {"n_kv_heads": 2}),
        ("mqa", {"n_kv_heads": 1}),
        ("sliding_window", {"attention_options": {"window": 5}}),
        ("linear", {}),
    ],
)
def test_cache_and_no_cache_agree_for_every_attention(attention: str, extra: dict) -> None:
    model = tiny_gpt(attention=attention, position="rope", **extra)
    with torch.no_grad():
        full = model(argmax_loop(model, PROMPT, 10))
        cache = model.new_cache(2)
        pieces = [model(PROMPT, cache=cache)]
        ids = argmax_loop(model, PROMPT, 10)
        for t in range(PROMPT.shape[1], ids.shape[1]):
            pieces.append(model(ids[:, t : t + 1], cache=cache))
    stepped = torch.cat(pieces, dim=1)[:, : full.shape[1]]
    assert (stepped - full).abs().max() <= 1e-4
    assert torch.equal(
        generate(model, PROMPT, max_new_tokens=10),
        generate(model, PROMPT, max_new_tokens=10, use_cache=False),
    )


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    model = tiny_gpt()
    a = generate(model, PROMPT, max_new_tokens=20, temperature=1.5, seed=7)
    b = generate(model, PROMPT, max_new_tokens=20, temperature=1.5, seed=7)
    c = generate(model, PROMPT, max_new_tokens=20, temperature=1.5, seed=8)
    d = generate(model, PROMPT, max_new_tokens=20, temperature=1.5, seed=7, use_cache=False)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.equal(a, c)
    greedy = generate(model, PROMPT, max_new_tokens=20)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=20, temperature=1.0, top_k=1), greedy)


def test_sampling_follows_the_tempered_distribution() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 40000
    gen = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        draws = next_token(logits.expand(n, 4), SamplingConfig(temperature), gen)
        freq = torch.bincount(draws, minlength=4).float() / n
        expected = torch.softmax(logits / temperature, dim=-1)
        assert (freq - expected).abs().max() < 0.01
    draws = next_token(logits.expand(n, 4), SamplingConfig(1.0, top_k=2), gen)
    freq = torch.bincount(draws, minlength=4).float() / n
    expected = torch.softmax(torch.tensor([2.0, 1.0]), dim=-1)
    assert freq[2:].sum() == 0 and (freq[:2] - expected).abs().max() < 0.01


logit_rows = st.lists(
    st.floats(-20, 20, allow_nan=False, allow_subnormal=False), min_size=1, max_size=30
)


@given(logit_rows, st.integers(1, 40))
def test_top_k_keeps_exactly_the_k_largest(row: list[float], k: int) -> None:
    logits = torch.tensor(row)
    kept = torch.isfinite(top_k_filter(logits, k))
    kth = torch.sort(logits, descending=True).values[min(k, len(row)) - 1]
    assert torch.equal(kept, logits >= kth)  # ties with the k-th value are kept too
    assert int(kept.sum()) >= min(k, len(row))


@settings(max_examples=200)
@given(logit_rows, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_nucleus(row: list[float], p: float) -> None:
    logits = torch.tensor(row, dtype=torch.float64)
    kept = torch.isfinite(top_p_filter(logits, p))
    probs = torch.softmax(logits, dim=-1)
    assert kept[probs == probs.max()].any()  # the likeliest token always survives
    assert probs[kept].sum() >= p - 1e-9 or kept.all()
    # minimal: dropping the least likely kept token would fall below p
    smallest = probs[kept].min()
    assert probs[kept].sum() - smallest < p + 1e-9
    # a nucleus: every kept token is at least as likely as every dropped one
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max()


def test_stop_tokens_end_rows_and_pad_them() -> None:
    model = tiny_gpt()
    free = generate(model, PROMPT, max_new_tokens=12)[:, PROMPT.shape[1] :]
    stop = int(free[0, 3])
    out = generate(model, PROMPT, max_new_tokens=12, stop_token_ids=[stop])[:, PROMPT.shape[1] :]
    row0 = free[0].tolist()
    first = row0.index(stop)
    assert out[0, : first + 1].tolist() == row0[: first + 1]
    assert (out[0, first:] == stop).all()
    row1 = free[1].tolist()
    if stop in row1:
        cut = row1.index(stop)
        assert out[1, : cut + 1].tolist() == row1[: cut + 1]
    else:
        assert out[1].tolist() == row1[: out.shape[1]]
    assert (
        len(list(stream(model, PROMPT[:1], max_new_tokens=12, stop_token_ids=[stop]))) == first + 1
    )


def test_context_limit_and_bad_options() -> None:
    model = tiny_gpt()  # 64 learned positions
    out = generate(model, PROMPT, max_new_tokens=500)
    assert out.shape[1] == 64
    with pytest.raises(UsageError, match="context"):
        generate(model, torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(UsageError, match="temperature"):
        generate(model, PROMPT, temperature=-1)
    with pytest.raises(UsageError, match="top_p"):
        generate(model, PROMPT, temperature=1, top_p=1.5)
    with pytest.raises(UsageError, match="input_ids"):
        generate(model, torch.zeros(1, 0, dtype=torch.long))


class ByteTokenizer:
    """One token per UTF-8 byte (ids 0-255) plus two special tokens: splits characters apart."""

    vocab_size = 258

    def __init__(self) -> None:
        self.special_tokens = {"<s>": 256, "</s>": 257}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Any) -> str:
        inv = {v: k for k, v in self.special_tokens.items()}
        out, buf = [], bytearray()
        for i in ids:
            if i in inv:
                out.append(buf.decode("utf-8", "replace") + inv[i])
                buf = bytearray()
            else:
                buf.append(i)
        return "".join(out) + buf.decode("utf-8", "replace")


class ScriptedModel(torch.nn.Module):
    """Emits a fixed token script whatever the input (to test streaming and stop strings)."""

    def __init__(self, script: list[int], vocab: int = 258) -> None:
        super().__init__()
        self.script, self.vocab = script, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        n = ids.shape[1] - self.prompt_len
        logits = torch.zeros(ids.shape[0], ids.shape[1], self.vocab)
        logits[:, -1, self.script[min(n, len(self.script) - 1)]] = 1.0
        return logits


def scripted(text: str, prompt: str = "hi") -> tuple[ScriptedModel, ByteTokenizer]:
    model = ScriptedModel([*text.encode("utf-8"), 257])
    model.prompt_len = len(prompt.encode())
    return model, ByteTokenizer()


def test_stream_text_never_splits_characters() -> None:
    text = "héllo 🙂 wörld"
    model, tok = scripted(text)
    pieces = list(stream_text(model, tok, "hi", max_new_tokens=40, stop_token_ids=[257]))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(pieces) > 3  # it really streams


@pytest.mark.parametrize(
    ("stops", "expected"),
    [
        (["wör"], "héllo 🙂 "),
        (["🙂"], "héllo "),
        (["xyz"], "héllo 🙂 wörld"),
        (["d"], "héllo 🙂 wörl"),
    ],
)
def test_stop_strings_cut_the_text_and_are_never_shown(stops: list[str], expected: str) -> None:
    model, tok = scripted("héllo 🙂 wörld")
    pieces = list(
        stream_text(model, tok, "hi", max_new_tokens=40, stop=stops, stop_token_ids=[257])
    )
    assert "".join(pieces) == expected
    shown = ""
    for p in pieces:
        shown += p
        assert not any(s in shown for s in stops)


def test_encode_prompt_maps_special_texts() -> None:
    tok = ByteTokenizer()
    assert encode_prompt(tok, "a<s>b</s>") == [97, 256, 98, 257]
    assert encode_prompt(tok, "a<s>", special=False) == [97, 60, 115, 62]
    assert encode_prompt(tok, "a\x04b", vocab_size=5) == [4]  # bytes the model lacks: dropped
    with pytest.raises(UsageError, match=r"id 256 \('<s>'\).*does not belong to this model"):
        encode_prompt(tok, "a<s>", vocab_size=200)  # a token of several characters: refused


def test_chat_templates() -> None:
    messages = [{"role": "user", "content": "Hi?"}]
    assert apply_chat_template(messages) == (
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    )
    smol = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
        "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    assert apply_chat_template(messages, smol) == (
        "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with pytest.raises(UsageError, match="role"):
        apply_chat_template([{"content": "x"}])
    with pytest.raises(UsageError, match="chat template"):
        apply_chat_template(messages, "{{ messages.__class__.__mro__[1].__subclasses__() }}")


# ------------------------------------------------------------------------------- beam search


def sequence_logprob(model: torch.nn.Module, prefix: list[int], tokens: list[int]) -> float:
    with torch.no_grad():
        ids = torch.tensor([prefix + tokens])
        logp = torch.log_softmax(model(ids)[0].double(), dim=-1)
    return sum(float(logp[len(prefix) - 1 + i, t]) for i, t in enumerate(tokens))


def test_beam_of_one_is_greedy() -> None:
    model = tiny_llama()
    greedy = generate(model, PROMPT, max_new_tokens=8)[:, PROMPT.shape[1] :]
    beams = beam_search(model, PROMPT, beam_size=1, max_new_tokens=8)
    assert [b[0].tokens for b in beams] == greedy.tolist()


def test_wide_beam_finds_the_best_sequence_exhaustively() -> None:
    vocab, length = 5, 3
    model = tiny_gpt(vocab=vocab, seed=3)
    prefix = [1, 2, 3]
    scores = {
        seq: sequence_logprob(model, prefix, list(seq))
        for seq in itertools.product(range(vocab), repeat=length)
    }
    best = max(scores, key=scores.__getitem__)
    [[hyp]] = beam_search(
        model, [prefix], beam_size=vocab**2, max_new_tokens=length, length_penalty=0.0
    )
    assert tuple(hyp.tokens) == best
    assert math.isclose(hyp.score, scores[best], abs_tol=1e-4)
    narrow = beam_search(model, [prefix], beam_size=2, max_new_tokens=length, length_penalty=0.0)
    assert narrow[0][0].score <= hyp.score + 1e-6


def test_seq2seq_beam_scores_match_teacher_forcing() -> None:
    model = tiny_transformer()
    src = torch.tensor([[4, 5, 6, 7, 8], [9, 10, 4, 4, 3]])
    bos, eos = 1, 2
    results = beam_search(
        model, src, beam_size=3, max_new_tokens=6, bos_token_id=bos, eos_token_id=eos, n_best=3
    )
    assert len(results) == 2
    for b, hyps in enumerate(results):
        assert 1 <= len(hyps) <= 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            ended = len(h.tokens) < 6
            tgt = [bos, *h.tokens] + ([eos] if ended else [])
            with torch.no_grad():
                logits = model(src[b : b + 1], torch.tensor([tgt[:-1]]))
            logp = torch.log_softmax(logits[0].double(), dim=-1)
            total = sum(float(logp[i, t]) for i, t in enumerate(tgt[1:]))
            assert math.isclose(h.score, total / (len(tgt) - 1), abs_tol=1e-4)
            assert eos not in h.tokens


def test_seq2seq_beam_search_is_exact_when_wide() -> None:
    vocab = 6
    model = tiny_transformer(vocab=vocab, seed=2)
    src = torch.tensor([[3, 4, 5]])
    bos = 1

    def score(seq: tuple[int, ...]) -> float:
        with torch.no_grad():
            logits = model(src, torch.tensor([[bos, *seq[:-1]]]))
        logp = torch.log_softmax(logits[0].double(), dim=-1)
        return sum(float(logp[i, t]) for i, t in enumerate(seq))

    scores = {s: score(s) for s in itertools.product(range(vocab), repeat=3)}
    best = max(scores, key=scores.__getitem__)
    [[hyp]] = beam_search(
        model, src, beam_size=vocab**2, max_new_tokens=3, bos_token_id=bos, length_penalty=0.0
    )
    assert tuple(hyp.tokens) == best
    with pytest.raises(UsageError, match="bos_token_id"):
        beam_search(model, src)


def test_streaming_leaves_grad_mode_and_training_flag_alone() -> None:
    model = tiny_gpt()
    model.train()
    tokens = stream(model, PROMPT, max_new_tokens=3)
    next(tokens)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    list(tokens)
    assert model.training


def test_repetition_penalty_matches_transformers_processor() -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    model = tiny_gpt(vocab=20, seed=4)
    processor = RepetitionPenaltyLogitsProcessor(1.8)
    ids = PROMPT % 20
    with torch.no_grad():
        for _ in range(10):
            scores = processor(ids, model(ids)[:, -1])
            ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
    ours = generate(model, PROMPT % 20, max_new_tokens=10, repetition_penalty=1.8)
    assert torch.equal(ours, ids)
    assert not torch.equal(ours, generate(model, PROMPT % 20, max_new_tokens=10))
    with pytest.raises(UsageError, match="repetition_penalty"):
        generate(model, PROMPT, repetition_penalty=0.0)


@pytest.mark.parametrize("position", ["llama", "learned", "sinusoidal", "alibi"])
def test_left_padded_batch_equals_one_by_one(position: str) -> None:
    from llmkit.inference.generation import pad_left

    model = tiny_llama(seed=5) if position == "llama" else tiny_gpt(seed=5, position=position)
    prompts = [[3, 14, 15, 9, 2, 6, 5], [7, 1], [8, 8, 30, 2]]
    ids, mask = pad_left(prompts, pad_id=0, model=model)
    assert mask.tolist()[1] == [0, 0, 0, 0, 0, 1, 1]
    batch = generate(model, ids, max_new_tokens=8, attention_mask=mask)[:, ids.shape[1] :]
    nocache = generate(model, ids, max_new_tokens=8, attention_mask=mask, use_cache=False)
    assert torch.equal(nocache[:, ids.shape[1] :], batch)
    for row, prompt in zip(batch.tolist(), prompts, strict=True):
        alone = generate(model, [prompt], max_new_tokens=8)[0, len(prompt) :].tolist()
        assert row == alone
    with torch.no_grad():  # the padded rows' logits, not just their argmax, match
        padded = model(ids, attention_mask=mask, position_ids=positions_from_mask(mask))
        for i, prompt in enumerate(prompts):
            alone_logits = model(torch.tensor([prompt]))[0]
            torch.testing.assert_close(padded[i, -len(prompt) :], alone_logits, atol=1e-5, rtol=0)


def test_pad_left_refuses_absolute_positions_without_position_ids() -> None:
    from llmkit.inference.generation import pad_left

    gpt = tiny_gpt()

    class NoPositionIds(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = gpt.config

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return gpt(ids)

    with pytest.raises(UsageError, match="absolute positions"):
        pad_left([[1, 2, 3], [4]], model=NoPositionIds())


def test_repetition_penalty_does_not_count_padding() -> None:
    from llmkit.inference.generation import pad_left

    model = tiny_gpt(seed=6, position="rope")
    prompts = [[3, 14, 15, 9, 2, 6, 5], [7, 1]]
    alone = [
        generate(model, [p], max_new_tokens=6, repetition_penalty=3.0)[0, len(p) :].tolist()
        for p in prompts
    ]
    pad = alone[1][0]  # padding with the short row's own first choice: counted, it would change
    ids, mask = pad_left(prompts, pad_id=pad, model=model)
    batch = generate(model, ids, max_new_tokens=6, attention_mask=mask, repetition_penalty=3.0)
    assert batch[:, ids.shape[1] :].tolist() == alone
