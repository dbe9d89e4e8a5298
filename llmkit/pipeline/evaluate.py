"""What `llmkit eval` does: load a checkpoint, read the evaluation data, run one task.

An objective's task runs the objective's own `evaluate` (the pipeline's eval stage runs the same).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

GENERATION = "generation"  # the one task that is not an objective
TASK_ALIASES = {"lm": "causal_lm"}  # the old task name of causal_lm


@dataclass
class EvalOptions:
    """Settings of one evaluation run (the `llmkit eval` options)."""

    task: str = "causal_lm"
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
    metrics: list[str] | None = None  # an objective's metric names (default: its defaults)
    limit: int | None = None
    predictions_out: str | None = None
    verify: bool = True  # check the checkpoint's files against its manifest before loading


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


def _tokenizer(checkpoint: Path, required: str | None, verify: bool = True) -> Any:
    import llmkit
    from llmkit.storage.manifest import DamagedError

    try:
        return llmkit.load_tokenizer(checkpoint, verify=verify)
    except DamagedError:
        raise
    except UsageError:
        if required:
            raise UsageError(
                f"{checkpoint}: the checkpoint carries no tokenizer, which the {required} task "
                "needs; save the model with its tokenizer"
            ) from None
        return None


def objective_for_task(task: str, checkpoint: Path | None = None) -> Any:
    """The objective a `--task` names (`lm` is causal_lm's old name), or None for `generation`;
    with the parameters the checkpoint was trained with when it was trained with that objective."""
    import llmkit
    from llmkit.errors import RegistryError

    if task == GENERATION:
        return None
    name = TASK_ALIASES.get(task, task)
    params = _trained_objective(checkpoint, name) if checkpoint is not None else {}
    try:
        return llmkit.create("objective", name, **params)
    except RegistryError:
        names = [*TASK_ALIASES, *(c.name for c in llmkit.components("objective")), GENERATION]
        raise UsageError(f"--task {task}: choose one of {', '.join(names)}") from None


def _trained_objective(checkpoint: Path, name: str) -> dict[str, Any]:
    """The parameters of objective `name` saved with a pipeline-trained model (else none)."""
    from llmkit.pipeline.stages import OBJECTIVE_FILE

    saved = checkpoint / OBJECTIVE_FILE
    if not saved.is_file():
        return {}
    try:
        spec = json.loads(saved.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{saved}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("name") != name:
        return {}
    return {k: v for k, v in spec.items() if k != "name"}


def _records(data: str | Path, objective: Any, opts: EvalOptions) -> list[Any]:
    """The JSONL rows of `data` as records with the fields the objective reads."""
    from llmkit.data.readers import _none_if_missing
    from llmkit.data.records import Record

    fields = {"text": opts.text_field, "label": opts.label_field, "target": opts.reference_field}
    wanted = tuple(fields[f] for f in objective.record_fields)
    rows = read_jsonl(data, wanted, opts.limit)
    return [
        Record(
            text=_none_if_missing(r[opts.text_field]),  # chat messages as JSON text (sft)
            label=str(r[opts.label_field]) if "label" in objective.record_fields else None,
            target=str(r[opts.reference_field]) if "target" in objective.record_fields else None,
            source=str(data),
        )
        for r in rows
    ]


def evaluate_checkpoint(
    checkpoint: str | Path, data: str | Path, opts: EvalOptions
) -> dict[str, Any]:
    """Run `opts.task` for the checkpoint on `data`; returns the result dict (with 'model').

    Every objective's task runs the objective's own `evaluate`, the one a pipeline's eval stage
    runs, so both report the same numbers for the same checkpoint, data and settings.
    """
    import llmkit
    from llmkit.inference.generation import refuse_encoder
    from llmkit.models.traits import traits_of
    from llmkit.objectives.base import EvalData, EvalSettings
    from llmkit.storage.checkpoint import read_config

    ckpt = Path(checkpoint)
    objective = objective_for_task(opts.task, ckpt)
    if opts.predictions_out and objective is not None and objective.reads == "shards":
        raise UsageError("--predictions-out: only for the classification and generation tasks")
    config = read_config(ckpt)
    if objective is None:
        refuse_encoder(ckpt, config)
        return _generation(ckpt, data, opts)
    model = llmkit.load_model(
        ckpt, device=_device(opts.device), dtype=opts.dtype, verify=opts.verify
    )
    traits = traits_of(model)
    reason = objective.check_evaluation(traits)
    if reason is not None:
        name = config.get("model")
        if traits.is_encoder_decoder:
            raise UsageError(
                f"{ckpt}: a {name} checkpoint is an encoder-decoder, which --task {opts.task} "
                "cannot score (it needs a decoder-only LM); use --task generation"
            )
        raise UsageError(f"{ckpt}: a {name} checkpoint {reason}")
    tokenizer = _tokenizer(ckpt, opts.task if objective.needs_tokenizer else None, opts.verify)
    settings = EvalSettings(
        context=opts.context,
        stride=opts.stride,
        batch_size=opts.batch_size,
        max_batches=opts.max_batches,
        max_length=opts.max_length,
        seed=opts.seed,
        model_dir=ckpt,
        labels=opts.labels or _checkpoint_labels(ckpt),
        template=opts.template,
        keys=[k for ks in objective.metric_keys(opts.metrics or None).values() for k in ks],
    )
    if objective.reads == "shards":
        held_out = EvalData(shards=Path(data), split=opts.split)
    else:
        held_out = EvalData(records=_records(data, objective, opts))
    result = objective.evaluate(model, tokenizer, held_out, settings)
    _write_lines(opts.predictions_out, result.pop("predictions", None) or [])
    return {"model": str(ckpt), "data": str(data), **result}


def _generation(ckpt: Path, data: str | Path, opts: EvalOptions) -> dict[str, Any]:
    """The generation task: BLEU/chrF/TER/exact match of generated text against references."""
    import llmkit
    from llmkit.evaluation import core
    from llmkit.inference.generation import decoder_start_id
    from llmkit.storage.checkpoint import load_generation_config

    model = llmkit.load_model(
        ckpt, device=_device(opts.device), dtype=opts.dtype, verify=opts.verify
    )
    tokenizer = _tokenizer(ckpt, GENERATION, opts.verify)
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
