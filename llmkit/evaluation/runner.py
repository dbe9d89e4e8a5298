"""What `llmkit eval` does: load a checkpoint, read the evaluation data, run one task.

Data by task:
- lm: a directory written by `llmkit data prepare` (token shards; the `--split`, default
  validation), scored in sequential windows of `context` tokens.
- masked_lm: the same shards, in the same windows, each masked as BERT is trained (15% of the
  non-special tokens: 80% [MASK], 10% a random token, 10% kept) with a seeded generator; the
  masked-LM head is scored at the masked positions (perplexity and accuracy).
- classification: JSONL, one object per line with a text and a label field.
- generation: JSONL with a prompt field and a reference field (a string or a list of strings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

TASKS = ("lm", "masked_lm", "classification", "generation")


@dataclass
class EvalOptions:
    """Settings of one evaluation run (the `llmkit eval` options)."""

    task: str = "lm"
    device: str | None = None
    dtype: str | None = None
    # lm
    split: str = "validation"
    context: int | None = None
    stride: int | None = None
    batch_size: int = 8
    max_batches: int | None = None
    # classification
    text_field: str = "text"
    label_field: str = "label"
    labels: list[str] | None = None
    template: str = "{text}\nLabel:"
    max_length: int = 512
    # generation
    prompt_field: str = "prompt"
    reference_field: str = "reference"
    max_new_tokens: int = 64
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    beams: int | None = None
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=lambda: ["\n"])
    seed: int = 0
    limit: int | None = None
    predictions_out: str | None = None


def read_jsonl(
    path: str | Path, fields: tuple[str, ...], limit: int | None = None
) -> list[dict[str, Any]]:
    """The objects of a JSONL file, each checked to have `fields` (errors name file and line)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file (expected JSONL, one object per line)")
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{p}:{lineno}: not valid JSON ({exc.args[0]})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{p}:{lineno}: expected a JSON object")
            missing = [f for f in fields if f not in obj]
            if missing:
                raise UsageError(
                    f"{p}:{lineno}: no field '{missing[0]}' (fields: {', '.join(sorted(obj))}); "
                    "choose the field with the matching --*-field option"
                )
            rows.append(obj)
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise UsageError(f"{p}: no examples")
    return rows


def _device(name: str | None) -> str:
    from llmkit.devices import resolve_device

    return str(resolve_device(name or "auto"))


def _tokenizer(checkpoint: Path, required: str | None) -> Any:
    import llmkit

    try:
        return llmkit.load_tokenizer(checkpoint)
    except UsageError:
        if required:
            raise UsageError(
                f"{checkpoint}: the checkpoint carries no tokenizer, which the {required} task "
                "needs; save the model with its tokenizer"
            ) from None
        return None


def _context(model: Any, requested: int | None) -> int:
    from llmkit.inference.generation import context_length

    limit = context_length(model)
    if requested is None:
        return limit or 1024
    if limit is not None and requested > limit:
        raise UsageError(f"--context {requested} exceeds the model's context of {limit} tokens")
    return requested


def evaluate_checkpoint(
    checkpoint: str | Path, data: str | Path, opts: EvalOptions
) -> dict[str, Any]:
    """Run `opts.task` for the checkpoint on `data`; returns the result dict (with 'model')."""
    import llmkit
    from llmkit.evaluation import core

    if opts.task not in TASKS:
        raise UsageError(f"--task {opts.task}: choose one of {', '.join(TASKS)}")
    if opts.predictions_out and opts.task in ("lm", "masked_lm"):
        raise UsageError("--predictions-out: only for the classification and generation tasks")
    from llmkit.storage.checkpoint import load_generation_config, read_config
    from llmkit.inference.generation import ENCODER_MODELS, decoder_start_id, refuse_encoder

    ckpt = Path(checkpoint)
    config = read_config(ckpt)
    if opts.task == "lm":
        refuse_encoder(
            ckpt,
            config,
            "has no next-token perplexity; evaluate its masked-LM head with --task masked_lm",
        )
    elif opts.task == "generation":
        refuse_encoder(ckpt, config)
    elif opts.task == "masked_lm" and config.get("model") not in ENCODER_MODELS:
        raise UsageError(
            f"{ckpt}: a {config.get('model')} checkpoint has no masked-LM head; --task masked_lm "
            f"is for encoders ({', '.join(ENCODER_MODELS)}); use --task lm"
        )
    model = llmkit.load_model(ckpt, device=_device(opts.device), dtype=opts.dtype)
    encoder_decoder = hasattr(model, "encode") and hasattr(model, "decode")
    if encoder_decoder and (
        opts.task == "lm" or (opts.task == "classification" and not hasattr(model, "classify"))
    ):
        raise UsageError(
            f"{ckpt}: a {config.get('model')} checkpoint is an encoder-decoder, which --task "
            f"{opts.task} cannot score (it needs a decoder-only LM); use --task generation"
        )
    if opts.task == "masked_lm":
        from llmkit.data.shards import TokenShards

        tokenizer = _tokenizer(ckpt, "masked_lm")
        context = _context(model, opts.context)
        shards = TokenShards(data, opts.split)
        try:
            masked = masked_lm_windows(shards, context, opts.batch_size, tokenizer, seed=opts.seed)
        except UsageError as exc:
            raise UsageError(f"{ckpt}: {exc}") from None
        result = core.evaluate_masked_lm(model, masked, max_batches=opts.max_batches)
        result["details"].update(
            context=context, split=opts.split, masking=f"{MASK_PROBABILITY:.0%}, seed {opts.seed}"
        )
    elif opts.task == "lm":
        from llmkit.data.shards import TokenShards

        context = _context(model, opts.context)
        shards = TokenShards(data, opts.split)
        batches = lm_windows(shards, context, opts.batch_size, stride=opts.stride)
        tokenizer = _tokenizer(ckpt, None)
        token_bytes = core.token_byte_lengths(tokenizer) if tokenizer is not None else None
        result = core.evaluate_lm(
            model, batches, token_bytes=token_bytes, max_batches=opts.max_batches
        )
        result["details"]["context"] = context
        result["details"]["stride"] = opts.stride or context
        result["details"]["split"] = opts.split
    elif opts.task == "classification":
        tokenizer = _tokenizer(ckpt, "classification")
        rows = read_jsonl(data, (opts.text_field, opts.label_field), opts.limit)
        gold = [str(r[opts.label_field]) for r in rows]
        names = opts.labels or _checkpoint_labels(ckpt) or sorted(set(gold))
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(gold) - set(index))
        if unknown:
            raise UsageError(
                f"{data}: labels {', '.join(unknown[:5])} are not among the label names "
                f"{', '.join(names)}; pass --labels"
            )
        preds = core.classify(
            model,
            tokenizer,
            [str(r[opts.text_field]) for r in rows],
            names,
            batch_size=opts.batch_size,
            max_length=opts.max_length,
            template=opts.template,
        )
        result = core.evaluate_classification(preds, [index[g] for g in gold], names)
        _write_lines(opts.predictions_out, [names[p] for p in preds])
    else:
        tokenizer = _tokenizer(ckpt, "generation")
        rows = read_jsonl(data, (opts.prompt_field, opts.reference_field), opts.limit)
        sampling = _sampling(ckpt, opts)
        start = decoder_start_id(tokenizer, load_generation_config(ckpt))
        hyps = core.generate_texts(
            model,
            tokenizer,
            [str(r[opts.prompt_field]) for r in rows],
            max_new_tokens=opts.max_new_tokens,
            length_penalty=opts.length_penalty,
            stop=opts.stop,
            seed=opts.seed,
            batch_size=opts.batch_size,
            bos_token_id=start,
            **sampling,
        )
        refs = [r[opts.reference_field] for r in rows]
        _write_lines(opts.predictions_out, hyps)
        result = core.evaluate_generation(hyps, refs)
        result["details"]["decoding"] = {"max_new_tokens": opts.max_new_tokens, **sampling}
        result["details"]["examples"] = [
            {"prompt": r[opts.prompt_field], "hypothesis": h}
            for r, h in zip(rows[:5], hyps[:5], strict=False)
        ]
    return {"model": str(ckpt), "data": str(data), **result}


def lm_windows(
    shards: Any,
    context: int,
    batch_size: int,
    stride: int | None = None,
    rank: int | None = None,
    world: int | None = None,
) -> Iterator[tuple[Any, Any]]:
    """(inputs, targets) batches over the split that score every token but the first exactly once.

    A window holds up to `context` input tokens and starts every `stride` tokens (default
    `context`: no overlap). With a smaller stride each window re-reads `context - stride` tokens as
    context only (their targets are -100), so every scored token sees at least that much context:
    the strided perplexity evaluation of Hugging Face's guide. The last, shorter window gets a
    batch of its own. With torch.distributed, rank r takes windows r, r + world, ...
    """
    import numpy as np
    import torch

    from llmkit.data.batching import dist_info

    stride = context if stride is None else stride
    if not 0 < stride <= context:
        raise UsageError(f"--stride {stride}: must be between 1 and the context ({context})")
    rank, world = dist_info(rank, world)
    n = len(shards)
    if n < 2:
        raise UsageError(f"{shards.path} ({shards.split}): fewer than 2 tokens to evaluate")
    windows: list[tuple[int, int, int]] = []  # start, end, targets to mask
    start, last = 0, 0
    while True:
        end = min(start + context + 1, n)
        windows.append((start, end, max(0, last - start)))
        last = end - 1
        if end == n:
            break
        start += stride
    mine = windows[rank::world]

    def pair(rows: list[tuple[int, int, int]]) -> tuple[Any, Any]:
        block = np.stack([shards.window(s, e - s) for s, e, _ in rows])
        targets = block[:, 1:].copy()
        for i, (_, _, masked) in enumerate(rows):
            targets[i, :masked] = -100
        return torch.from_numpy(block[:, :-1].copy()), torch.from_numpy(targets)

    full = [w for w in mine if w[1] - w[0] == context + 1]
    for lo in range(0, len(full), batch_size):
        yield pair(full[lo : lo + batch_size])
    for w in mine:
        if w[1] - w[0] != context + 1:
            yield pair([w])


MASK_PROBABILITY = 0.15  # the share of tokens masked-LM training (`MaskedLMBatches`) predicts


def masked_lm_windows(
    shards: Any,
    context: int,
    batch_size: int,
    tokenizer: Any,
    seed: int = 0,
    rank: int | None = None,
    world: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Masked-LM batches over the whole split: consecutive windows of `context` tokens.

    Each window is masked as `MaskedLMBatches` trains (`MASK_PROBABILITY` of the non-special
    tokens: 80% the mask token, 10% a random token, 10% kept; labels -100 elsewhere) by a generator
    seeded with (seed, window index), so the masks, and the scores, do not depend on the batch
    size or the number of ranks. The last, shorter window gets a batch of its own. With
    torch.distributed, rank r takes windows r, r + world, ...
    """
    import numpy as np
    import torch

    from llmkit.data.batching import dist_info, mask_tokens
    from llmkit.tokenizers.base import MASK_TOKENS, find_special

    if context < 1 or batch_size < 1:
        raise UsageError(f"context ({context}) and batch size ({batch_size}) must be positive")
    mask_id = find_special(tokenizer, MASK_TOKENS)
    if mask_id is None:
        raise UsageError(
            "the tokenizer has no mask token (" + ", ".join(MASK_TOKENS) + "), which masked-LM "
            "training and evaluation need"
        )
    named = (getattr(tokenizer, "special_tokens", {}) or {}).values()
    specials = {int(shards.eos_id), *(int(i) for i in named)}
    rank, world = dist_info(rank, world)
    n = len(shards)
    if n < 1:
        raise UsageError(f"{shards.path} ({shards.split}): no tokens to evaluate")
    starts = list(range(0, n, context))[rank::world]

    def masked(start: int) -> tuple[Any, Any]:
        ids = shards.window(start, min(context, n - start)).astype(np.int64)[None]
        rng = np.random.default_rng([seed % (1 << 63), start // context])
        return mask_tokens(ids, rng, mask_id, shards.vocab_size, specials, MASK_PROBABILITY)

    def batch(group: list[int]) -> dict[str, Any]:
        pairs = [masked(s) for s in group]
        inputs = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
        return {
            "input_ids": inputs,
            "labels": torch.from_numpy(np.concatenate([p[1] for p in pairs])),
            "attention_mask": torch.ones(inputs.shape, dtype=torch.long),
        }

    def batches() -> Iterator[dict[str, Any]]:
        full = [s for s in starts if s + context <= n]
        for lo in range(0, len(full), batch_size):
            yield batch(full[lo : lo + batch_size])
        for s in starts:
            if s + context > n:
                yield batch([s])

    return batches()  # the checks above run now, the masking as batches are drawn


def _write_lines(path: str | None, lines: list[str]) -> None:
    """One prediction per line (newlines inside a prediction become spaces), written atomically."""
    if not path:
        return
    from llmkit.atomic import write_text

    text = "".join(" ".join(line.splitlines()) + "\n" for line in lines)
    write_text(path, text)


def _checkpoint_labels(ckpt: Path) -> list[str] | None:
    """Label names stored with the checkpoint (labels.json, or labels/label_vocab/id2label in its
    config), if any."""
    from llmkit.storage.checkpoint import read_config

    stored = ckpt / "labels.json"  # written next to the model by `llmkit run` pipelines
    if stored.is_file():
        try:
            value = json.loads(stored.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UsageError(f"{stored}: not valid JSON ({exc})") from None
        if isinstance(value, list) and value:
            return [str(v) for v in value]
        raise UsageError(f"{stored}: expected a JSON list of label names")
    config = read_config(ckpt)
    for key in ("labels", "label_vocab", "label_names"):
        value = config.get(key)
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    return None


def _sampling(ckpt: Path, opts: EvalOptions) -> dict[str, Any]:
    """Decoding settings: the options given, else the checkpoint's `generation` config, else greedy."""
    from llmkit.storage.checkpoint import read_config

    configured = read_config(ckpt).get("generation") or {}
    if not isinstance(configured, dict):
        configured = {}
    out: dict[str, Any] = {}
    for key in ("temperature", "top_k", "top_p", "beams"):
        value = getattr(opts, key)
        out[key] = value if value is not None else configured.get(key)
    if out["temperature"] is None:
        out["temperature"] = 0.0
    out["beams"] = int(out["beams"] or 1)
    return out
