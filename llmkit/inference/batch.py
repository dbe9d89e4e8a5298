"""Many prompts at once: left-padded batches through `stream`, each row ending at its own stop.

Prompts are sorted by length so that similar lengths share a batch (less padding), run
`batch_size` at a time with an attention mask and per-row positions, and returned in the original
order. A model whose forward takes no `attention_mask` runs one prompt at a time. Greedy outputs
equal generating each prompt alone with `generate_text` (tested); sampled outputs are reproducible
for a given seed and batch size, but rows draw from one generator, so they differ from one-by-one
sampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llmkit.errors import UsageError
from llmkit.inference.generation import (
    Hypothesis,
    accepts,
    beam_search,
    context_length,
    encode_prompt,
    first_stop,
    model_device,
    pad_left,
    stream,
)
from llmkit.progress import track

if TYPE_CHECKING:
    from torch import nn

    from llmkit.tokenizers.base import Tokenizer


def finish_text(text: str, stop: Sequence[str]) -> str:
    """Generated text cut before the first stop string, without a dangling partial character."""
    cut = first_stop(text, stop)
    if cut >= 0:
        return text[:cut]
    return text.rstrip("\ufffd") if text.endswith("\ufffd") else text


def generate_texts_batched(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[str | Sequence[int]],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    stop_token_ids: Iterable[int] = (),
    seed: int | None = None,
    repetition_penalty: float = 1.0,
) -> list[str]:
    """The text generated after each prompt (text or token ids), in order; options as in
    `stream_text`."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    encoded = [
        encode_prompt(tokenizer, p, vocab_size=vocab) if isinstance(p, str) else list(p)
        for p in prompts
    ]
    for i, ids in enumerate(encoded):
        if not ids:
            raise UsageError(f"prompt {i + 1} is empty after tokenization; give some text")
    if not accepts(model, "attention_mask"):  # padding needs a mask: one prompt at a time
        batch_size = 1
    stops = set(stop_token_ids)
    stop_strings = [s for s in stop if s]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    # A batch stops where its longest prompt reaches the context; prompts that close to the end
    # would lose tokens beside it, so they run alone.
    limit = context_length(model)
    roomy = [i for i in order if limit is None or len(encoded[i]) + max_new_tokens <= limit]
    groups = [roomy[at : at + batch_size] for at in range(0, len(roomy), batch_size)]
    crowded = set(order) - set(roomy)
    groups += [[i] for i in order if i in crowded]
    outputs = [""] * len(prompts)
    for group in track(groups, "generate", unit="batch"):
        padded, mask = pad_left([encoded[i] for i in group], pad_id=0, model=model)
        rows: list[list[int]] = [[] for _ in group]
        open_rows = set(range(len(group)))
        for token in stream(
            model,
            padded,
            attention_mask=mask if len(group) > 1 else None,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_token_ids=stops,
            seed=seed,
            repetition_penalty=repetition_penalty,
        ):
            for r, tok in enumerate(token.tolist()):
                if r not in open_rows:
                    continue
                if tok in stops:
                    open_rows.discard(r)
                    continue
                rows[r].append(tok)
                if stop_strings and first_stop(tokenizer.decode(rows[r]), stop_strings) >= 0:
                    open_rows.discard(r)
            if not open_rows:
                break
        for r, i in enumerate(group):
            outputs[i] = finish_text(tokenizer.decode(rows[r]), stop_strings)
    return outputs


def read_prompts(path: Path) -> list[str]:
    """Prompts from a file: one per line, or `.jsonl` objects with a "prompt" string; blanks skipped."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read prompts ({exc})") from None
    prompts: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix.lower() != ".jsonl":
            prompts.append(line)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise UsageError(f'{path}:{n}: expected an object with a "prompt" string')
        prompts.append(record["prompt"])
    if not prompts:
        raise UsageError(f'{path}: no prompts (one per line, or .jsonl with a "prompt" field)')
    return prompts


def beam_search_batched(
    model: nn.Module,
    sources: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    pad_id: int = 0,
    beam_size: int = 4,
    max_new_tokens: int = 64,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """The best beam for each source of an encoder-decoder model, `batch_size` sources at a time.

    Sources are sorted by length and right-padded with a source mask (the encoder's positions of
    real tokens do not move), so each keeps the hypothesis it gets alone (tested).
    """
    import torch

    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(s) == 0 for s in sources):
        raise UsageError("beam_search_batched needs non-empty sources")
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    best: list[Hypothesis | None] = [None] * len(sources)
    for at in range(0, len(order), batch_size):
        group = order[at : at + batch_size]
        width = max(len(sources[i]) for i in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for r, i in enumerate(group):
            ids[r, : len(sources[i])] = torch.as_tensor(list(sources[i]), dtype=torch.long)
            mask[r, : len(sources[i])] = 1
        hyps = beam_search(
            model,
            ids,
            beam_size=beam_size,
            max_new_tokens=max_new_tokens,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            length_penalty=length_penalty,
            src_mask=mask.to(model_device(model)),
        )
        for r, i in enumerate(group):
            best[i] = hyps[r][0]
    return [h for h in best if h is not None]
