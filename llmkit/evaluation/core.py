"""Evaluation of models and predictions: LM perplexity, classification, generation; JSON and tables.

A result is a plain dict ``{"task", "metrics": {name: float}, "details": {...}}`` (plus whatever the
caller adds, such as the checkpoint), so it can be written as JSON, printed as a table and compared.
Every metric comes from the `metric` plugins, so DDP ranks are summed with `Metric.sync()`
(except inside `this_process_only`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llmkit
from llmkit.atomic import write_text
from llmkit.errors import UsageError, WorkError
from llmkit.inference.generation import logits_of, model_device
from llmkit.metrics.render import confusion_table, table
from llmkit.progress import track

if TYPE_CHECKING:
    import torch
    from torch import nn


_this_process_only = False


@contextlib.contextmanager
def this_process_only() -> Iterator[None]:
    """Inside: metrics count this process's batches alone, not summed across torch.distributed
    ranks (for an evaluation that one rank runs while the others wait, as `llmkit run` does)."""
    global _this_process_only
    before, _this_process_only = _this_process_only, True
    try:
        yield
    finally:
        _this_process_only = before


def is_this_process_only() -> bool:
    """Whether evaluation is inside `this_process_only` (one process scores every batch)."""
    return _this_process_only


def _sync(metric: Any) -> None:
    """`metric.sync()`: sum its counts across ranks, unless inside `this_process_only`."""
    if not _this_process_only:
        metric.sync()


# -- language modelling ---------------------------------------------------------------------------


def _split_batch(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) from a dict with input_ids/labels, a pair, or a (B, T+1) token block."""
    if isinstance(batch, dict):
        if "input_ids" not in batch:
            raise UsageError("an LM batch dict needs 'input_ids' (and 'labels' or 'targets')")
        targets = batch.get("labels", batch.get("targets"))
        if targets is None:
            ids = batch["input_ids"]
            return ids[:, :-1], ids[:, 1:]
        return batch["input_ids"], targets
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    return batch[:, :-1], batch[:, 1:]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without autograd for the block; the model's training flag is restored after."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def evaluate_lm(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    token_bytes: Sequence[int] | None = None,
    ignore_index: int = -100,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Perplexity (and bits per byte when `token_bytes` is given) of `model` over `batches`.

    A batch is a dict with ``input_ids`` and ``labels`` (as `CausalLMBatches` yields), an
    ``(inputs, targets)`` pair, or a (B, T+1) block of token ids split into inputs and next tokens.
    `model(inputs)` must return logits (B, T, V) (or an object with `.logits`). Counts are summed
    across torch.distributed ranks when a process group is initialised.
    """
    import torch

    ppl = llmkit.create("metric", "perplexity", ignore_index=ignore_index)
    bpb = None
    if token_bytes is not None:
        bpb = llmkit.create(
            "metric", "bits_per_byte", ignore_index=ignore_index, token_bytes=list(token_bytes)
        )
    device = model_device(model)
    seen = 0
    with evaluating(model):
        for batch in track(itertools.islice(batches, max_batches), "eval", max_batches, "batch"):
            inputs, targets = _split_batch(batch)
            inputs = torch.as_tensor(inputs, dtype=torch.long).to(device)
            targets = torch.as_tensor(targets, dtype=torch.long).to(device)
            logits = logits_of(model(inputs))
            ppl.update(logits, targets)
            if bpb is not None:
                bpb.update(logits, targets)
            seen += 1
    _sync(ppl)  # every rank syncs, even one that had no batch, or the others would wait forever
    if bpb is not None:
        _sync(bpb)
    try:
        result = ppl.compute()
    except UsageError:
        raise UsageError("evaluate_lm: no batches: the data gave nothing to evaluate") from None
    metrics = {
        "perplexity": float(result),
        "nll": result.details["nll"],
        "bits_per_token": result.details["bits_per_token"],
    }
    details: dict[str, Any] = {"tokens": result.details["tokens"], "batches": seen}
    if bpb is not None:
        bpb_result = bpb.compute()
        metrics["bits_per_byte"] = float(bpb_result)
        details["bytes"] = bpb_result.details["bytes"]
    return {"task": "lm", "metrics": metrics, "details": details}


def evaluate_masked_lm(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    ignore_index: int = -100,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Perplexity and accuracy of a masked-LM head at the masked positions of `batches`.

    A batch is a dict with masked ``input_ids``, ``labels`` (the original token where one was
    masked, `ignore_index` elsewhere) and optionally ``attention_mask``, as `MaskedLMBatches` and
    `masked_lm_windows` yield; `model(input_ids, attention_mask=...)` must return logits (B, T, V).
    Perplexity is exp(mean NLL of the masked tokens), the loss masked-LM training minimises (the
    number Hugging Face's run_mlm reports); it is not comparable with a causal LM's perplexity.
    Accuracy is the share of masked tokens whose argmax is the original token.
    """
    import torch

    ppl = llmkit.create("metric", "perplexity", ignore_index=ignore_index)
    acc = llmkit.create("metric", "accuracy", ignore_index=ignore_index)
    device = model_device(model)
    seen = 0
    with evaluating(model):
        for batch in track(itertools.islice(batches, max_batches), "eval", max_batches, "batch"):
            ids = torch.as_tensor(batch["input_ids"], dtype=torch.long).to(device)
            labels = torch.as_tensor(batch["labels"], dtype=torch.long).to(device)
            mask = batch.get("attention_mask")
            if mask is not None:
                mask = torch.as_tensor(mask).to(device)
            logits = logits_of(model(ids, attention_mask=mask))
            ppl.update(logits, labels)
            acc.update(logits.argmax(-1), labels)
            seen += 1
    _sync(ppl)
    _sync(acc)
    try:
        result = ppl.compute()
    except UsageError:
        raise UsageError(
            "evaluate_masked_lm: no masked tokens: the data gave nothing to evaluate"
        ) from None
    return {
        "task": "masked_lm",
        "metrics": {
            "perplexity": float(result),
            "nll": result.details["nll"],
            "bits_per_token": result.details["bits_per_token"],
            "accuracy": float(acc.compute()),
        },
        "details": {"masked_tokens": result.details["tokens"], "batches": seen},
    }


def evaluate_seq2seq(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    ignore_index: int = -100,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Teacher-forced perplexity of an encoder-decoder model on its targets.

    A batch is what `Seq2SeqBatches` yields (``input_ids``, ``attention_mask``,
    ``decoder_input_ids``, ``decoder_attention_mask``, ``labels``); every target token and the end
    token after it are scored, as the seq2seq objective trains them.
    """
    import torch

    ppl = llmkit.create("metric", "perplexity", ignore_index=ignore_index)
    device = model_device(model)
    seen = 0

    def on_device(batch: dict[str, Any], key: str) -> Any:
        value = batch.get(key)
        return None if value is None else torch.as_tensor(value).to(device)

    with evaluating(model):
        for batch in track(itertools.islice(batches, max_batches), "eval", max_batches, "batch"):
            logits = logits_of(
                model(
                    on_device(batch, "input_ids"),
                    on_device(batch, "decoder_input_ids"),
                    src_mask=on_device(batch, "attention_mask"),
                    tgt_mask=on_device(batch, "decoder_attention_mask"),
                )
            )
            ppl.update(logits, on_device(batch, "labels"))
            seen += 1
    _sync(ppl)
    try:
        result = ppl.compute()
    except UsageError:
        raise UsageError(
            "evaluate_seq2seq: no batches: the data gave nothing to evaluate"
        ) from None
    return {
        "task": "seq2seq",
        "metrics": {
            "perplexity": float(result),
            "nll": result.details["nll"],
            "bits_per_token": result.details["bits_per_token"],
        },
        "details": {"tokens": result.details["tokens"], "batches": seen},
    }


def token_byte_lengths(tokenizer: Any) -> list[int] | None:
    """UTF-8 byte length of every token id (0 for special tokens), or None if it cannot be known.

    Uses the tokenizer's `decode_bytes` / `id_to_bytes` when it has one (exact); otherwise decodes
    ids one at a time, which is exact unless a token holds part of a multi-byte character.
    """
    vocab = int(getattr(tokenizer, "vocab_size", 0) or 0)
    if vocab <= 0:
        return None
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    exact = getattr(tokenizer, "decode_bytes", None) or getattr(tokenizer, "id_to_bytes", None)
    lengths = []
    for i in range(vocab):
        if i in special:
            lengths.append(0)
            continue
        try:
            if exact is not None:
                piece = exact([i]) if exact.__name__ == "decode_bytes" else exact(i)
                lengths.append(len(piece))
            else:
                lengths.append(len(tokenizer.decode([i]).encode("utf-8")))
        except Exception:
            lengths.append(0)
    return lengths


# -- classification -------------------------------------------------------------------------------


def evaluate_classification(
    predictions: Sequence[Any] | Any,
    labels: Sequence[Any] | Any,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro/micro/weighted precision, recall and F1, per-class scores, confusion matrix.

    `predictions` and `labels` are class labels (or indices into `label_names`, which then names
    the classes in the output and fixes their order). Ill-defined ratios count as 0.
    """
    names: list[Any] | None = list(label_names) if label_names is not None else None
    kw: dict[str, Any] = {"zero_division": 0}
    if names is not None:
        kw["labels"] = list(range(len(names)))
        for what, values in (("predictions", predictions), ("labels", labels)):
            bad = [v for v in _as_list(values) if not (isinstance(v, int) and 0 <= v < len(names))]
            if bad:
                raise UsageError(
                    f"evaluate_classification: {what} hold {bad[0]!r}, not a class index for the "
                    f"{len(names)} label names {names}; give the label names the model was "
                    "trained with"
                )
    metrics: dict[str, float] = {}
    acc = llmkit.create("metric", "accuracy")
    acc.update(predictions, labels)
    _sync(acc)
    metrics["accuracy"] = float(acc.compute())
    per_class: dict[str, Any] = {}
    for average in ("macro", "micro", "weighted"):
        for name in ("precision", "recall", "f1"):
            metric = llmkit.create("metric", name, average=average, **kw)
            metric.update(predictions, labels)
            _sync(metric)
            result = metric.compute()
            metrics[f"{name}_{average}"] = float(result)
            if average == "macro" and name == "f1":
                per_class = result.details["per_class"]
    cm = llmkit.create("metric", "confusion_matrix", **({"labels": kw["labels"]} if names else {}))
    cm.update(predictions, labels)
    _sync(cm)
    matrix = cm.compute()
    shown = names if names is not None else list(matrix.labels)
    if names is not None:
        per_class = {**per_class, "labels": names}
    return {
        "task": "classification",
        "metrics": metrics,
        "details": {
            "samples": int(sum(sum(row) for row in matrix.matrix)),
            "per_class": per_class,
            "confusion_matrix": {"labels": shown, "matrix": matrix.matrix},
        },
    }


def _as_list(values: Any) -> list[Any]:
    """Python scalars from a list, numpy array or torch tensor."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [v.item() if hasattr(v, "item") else v for v in values]


def per_class_table(per_class: dict[str, Any]) -> str:
    """Precision, recall, F1 and support of each class as a text table."""
    rows = [
        [str(label), p, r, f, s]
        for label, p, r, f, s in zip(
            per_class["labels"],
            per_class["precision"],
            per_class["recall"],
            per_class["f_score"],
            per_class["support"],
            strict=True,
        )
    ]
    return table(["class", "precision", "recall", "f1", "support"], rows)


def classify(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    label_names: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 512,
    template: str = "{text}\nLabel:",
) -> list[int]:
    """Predicted class index of each text.

    A model with a classification head (`model.classify(input_ids, attention_mask=...)`) is used
    directly; any other causal LM picks the label whose text (" " + name) is most likely after
    `template` filled with the text (zero-shot scoring by summed token log-probabilities).
    """

    device = model_device(model)
    predictions: list[int] = []
    from llmkit.models.traits import traits_of

    with evaluating(model):
        if traits_of(model).classifier:  # a decoder without its head scores zero-shot
            pad = _pad_id(tokenizer)
            for lo in range(0, len(texts), batch_size):
                rows = [ids[:max_length] for ids in _encode(tokenizer, texts[lo : lo + batch_size])]
                ids, mask = _pad(rows, pad, device)
                logits = model.classify(ids, attention_mask=mask)  # type: ignore[operator]
                predictions.extend(int(i) for i in logits.argmax(dim=-1).tolist())
            return predictions
        options = [tokenizer.encode(" " + str(name)) for name in label_names]
        if any(not o for o in options):
            raise UsageError("a label encodes to no tokens; give non-empty label names")
        from llmkit.inference.generation import context_length

        limit = min(max_length, context_length(model) or max_length)
        for text in texts:
            prompt = list(tokenizer.encode(template.format(text=text)))
            scores = _option_logprobs(model, prompt, options, limit, device)
            predictions.append(max(range(len(scores)), key=scores.__getitem__))
    return predictions


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if hasattr(tokenizer, "encode_batch"):
        return [list(x) for x in tokenizer.encode_batch(list(texts))]
    return [list(tokenizer.encode(t)) for t in texts]


def _pad_id(tokenizer: Any) -> int:
    special = dict(getattr(tokenizer, "special_tokens", {}) or {})
    for name in ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>", "</s>", "<eos>"):
        if name in special:
            return int(special[name])
    return 0


def _pad(rows: list[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _option_logprobs(
    model: nn.Module, prompt: list[int], options: list[list[int]], limit: int, device: Any
) -> list[float]:
    """Sum of log p(option | prompt) for each option, in one right-padded batch.

    The prompt is cut on the left so that prompt + option fits in `limit` tokens; right padding
    cannot change a causal model's earlier positions.
    """
    import torch

    rows, starts = [], []
    for option in options:
        keep = max(1, limit - len(option))
        ids = (prompt[-keep:] if prompt else [0]) + option
        rows.append(ids)
        starts.append(len(ids) - len(option) - 1)
    width = max(len(r) for r in rows)
    x = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    x = x.to(device)
    with torch.inference_mode():
        logp = torch.log_softmax(logits_of(model(x[:, :-1])).float(), dim=-1)
    scores = []
    for i, (start, option) in enumerate(zip(starts, options, strict=True)):
        targets = torch.tensor(option, device=device)[:, None]
        scores.append(float(logp[i, start : start + len(option)].gather(1, targets).sum()))
    return scores


# -- generation -----------------------------------------------------------------------------------


def evaluate_generation(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    metrics: Sequence[str] = ("bleu", "chrf", "ter", "exact_match"),
) -> dict[str, Any]:
    """Corpus BLEU/chrF/TER (sacrebleu, with signatures) and exact match of `hypotheses`.

    Each reference is a string or a list of acceptable references.
    """
    out: dict[str, float] = {}
    signatures: dict[str, str] = {}
    refs = [[r] if isinstance(r, str) else [str(x) for x in r] for r in references]
    for name in metrics:
        kwargs = {"multiple_targets": True} if name == "exact_match" else {}
        metric = llmkit.create("metric", name, **kwargs)
        metric.update(list(hypotheses), refs)
        _sync(metric)
        result = metric.compute()
        out[name] = float(result)
        if result.signature is not None:
            signatures[name] = result.signature
    return {
        "task": "generation",
        "metrics": out,
        "details": {"segments": len(hypotheses), "signatures": signatures},
    }


def _cut(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first stop string."""
    from llmkit.inference.generation import first_stop

    cut = first_stop(text, stop)
    return text[:cut] if cut >= 0 else text


def generate_texts(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    beams: int = 1,
    length_penalty: float = 1.0,
    stop: Sequence[str] = ("\n",),
    seed: int | None = 0,
    batch_size: int = 16,
    bos_token_id: int | None = None,
) -> list[str]:
    """The output for each prompt: greedy by default, sampled, or by beam search (`beams` > 1).

    Decoder-only models continue the prompt (truncated on the left to fit the context); greedy
    decoding runs `batch_size` prompts at a time in left-padded batches (the same outputs as one
    by one). An encoder-decoder model (with `encode`/`decode`) translates it (its source cut to
    the model's context) by beam search from `bos_token_id`, else the start token
    `decoder_start_id` picks (as `llmkit generate` does), `batch_size` sources at a time,
    right-padded with a source mask. Output stops at an end token or at the first of the `stop`
    strings.
    """
    from llmkit.inference.batch import beam_search_batched, generate_texts_batched
    from llmkit.inference.generation import (
        beam_search,
        context_length,
        decoder_start_id,
        generate_text,
    )
    from llmkit.tokenizers.base import PAD_TOKENS, SEPARATOR_TOKENS, find_special

    eos = find_special(tokenizer, SEPARATOR_TOKENS)
    seq2seq = hasattr(model, "encode") and hasattr(model, "decode")
    limit = context_length(model)

    def prompt_ids(prompt: str) -> list[int]:
        ids = list(tokenizer.encode(prompt))
        if limit is not None:
            ids = ids[:limit] if seq2seq else ids[-max(1, limit - max_new_tokens) :]
        return ids or [eos if eos is not None else 0]

    if not seq2seq and beams <= 1 and (temperature == 0 or top_k == 1):
        texts = generate_texts_batched(
            model,
            tokenizer,
            [prompt_ids(p) for p in prompts],
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            stop=list(stop),
            stop_token_ids=[] if eos is None else [eos],
        )
        return [text.strip() for text in texts]  # already cut before the first stop string
    bos = bos_token_id if bos_token_id is not None else decoder_start_id(tokenizer)
    if seq2seq:
        if bos is None:
            raise UsageError("the tokenizer has no BOS, PAD or EOS token to start decoding")
        hyps = beam_search_batched(
            model,
            [prompt_ids(p) for p in prompts],
            batch_size=batch_size,
            pad_id=find_special(tokenizer, PAD_TOKENS) or 0,
            beam_size=max(1, beams),
            max_new_tokens=max_new_tokens,
            bos_token_id=bos,
            eos_token_id=eos,
            length_penalty=length_penalty,
        )
        return [_cut(tokenizer.decode(h.tokens), stop).strip() for h in hyps]
    outputs: list[str] = []
    for prompt in prompts:
        ids = prompt_ids(prompt)
        if beams > 1:
            best = beam_search(
                model,
                [ids],
                beam_size=max(1, beams),
                max_new_tokens=max_new_tokens,
                bos_token_id=bos,
                eos_token_id=eos,
                length_penalty=length_penalty,
            )[0][0]
            text = tokenizer.decode(best.tokens)
        else:
            text = generate_text(
                model,
                tokenizer,
                ids,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                stop=list(stop),
                stop_token_ids=[] if eos is None else [eos],
                seed=seed,
            )
        outputs.append(_cut(text, stop).strip())
    return outputs


# -- results --------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def write_results(path: str | Path, results: Any) -> Path:
    """Write results as indented JSON, atomically (a temp file renamed into place)."""
    text = json.dumps(jsonable(results), indent=2, sort_keys=False, allow_nan=False) + "\n"
    try:
        return write_text(path, text)
    except OSError as exc:
        raise WorkError(f"{path}: cannot write results ({exc.strerror or exc})") from None


def load_results(path: str | Path) -> dict[str, Any]:
    """A results JSON written by `write_results` (or `llmkit eval --out`)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: no such results file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: not a JSON results file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise UsageError(f"{p}: not an llmkit results file (no 'metrics' object)")
    return data


def format_results(result: dict[str, Any]) -> str:
    """A result as text: the metrics table, then per-class scores and the confusion matrix."""
    title = f"{result.get('task', 'eval')}" + (f": {result['model']}" if "model" in result else "")
    parts = [title, table(["metric", "value"], [[k, v] for k, v in result["metrics"].items()])]
    details = result.get("details", {})
    extra = {k: v for k, v in details.items() if not isinstance(v, dict | list)}
    if extra:
        parts.append(", ".join(f"{k}: {v}" for k, v in extra.items()))
    if isinstance(details.get("decoding"), dict):
        parts.append("decoding: " + ", ".join(f"{k}={v}" for k, v in details["decoding"].items()))
    if details.get("examples"):
        shown = [
            f"{e.get('prompt', e.get('source'))!r} -> {e['hypothesis']!r}"
            for e in details["examples"]
        ]
        parts.append("examples:\n" + "\n".join(shown))
    signatures = details.get("signatures", {})
    if signatures:
        parts.append("\n".join(f"{name} signature: {sig}" for name, sig in signatures.items()))
    if details.get("per_class"):
        parts.append(per_class_table(details["per_class"]))
    if details.get("confusion_matrix"):
        cm = details["confusion_matrix"]
        parts.append("confusion matrix (rows true, columns predicted):")
        parts.append(confusion_table(cm["labels"], cm["matrix"]))
    return "\n\n".join(parts)


def compare_results(
    a: dict[str, Any], b: dict[str, Any], names: Sequence[str] | None = None
) -> str:
    """Two results side by side: every metric either has, with the difference B - A."""
    names = list(names) if names is not None else [a.get("model", "A"), b.get("model", "B")]
    keys = list(dict.fromkeys([*a["metrics"], *b["metrics"]]))
    rows = []
    for key in keys:
        va, vb = a["metrics"].get(key), b["metrics"].get(key)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows.append([key, va, vb, delta])
    legend = f"A: {names[0]}\nB: {names[1]}"
    return legend + "\n" + table(["metric", "A", "B", "B - A"], rows)
