"""Running a pipeline: tokenizer -> data -> train -> eval, each stage from the registry.

Relative input paths in a pipeline file (data inputs, tokenizer files, `init_from`) are resolved
against the file's directory; `output` is relative to the working directory. Every stage writes
under `output`, and re-running skips work whose inputs have not changed (data shards, tokenizer)
and resumes training from the latest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from llmkit.atomic import write_json
from llmkit.errors import UsageError
from llmkit.pipeline.config import ComponentSpec, PipelineConfig, TrainSection

if TYPE_CHECKING:
    from llmkit.train.distributed import Dist

STAGES = ("tokenizer", "data", "train", "eval")
Log = Callable[[str], None]
T = TypeVar("T")


def _resolve(base: Path, path: str) -> str:
    """`path` as given when absolute, else relative to the pipeline file's directory."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


def check(config: PipelineConfig) -> list[str]:
    """Validate every component name and parameter without running anything; returns the plan."""
    import llmkit
    from llmkit.params import validate

    plan = []
    if config.tokenizer is not None:
        t = config.tokenizer
        if t.name:
            llmkit.get("tokenizer", t.name)
        plan.append(
            f"tokenizer: {t.path or t.name or f'train {t.type} on {len(t.train_files)} file patterns'}"
        )
    if config.data is not None:
        from llmkit.data.prepare import PrepareConfig

        PrepareConfig.from_mapping(
            {**config.data, "tokenizer": "byte", "output": "x"}, source=f"{config.source}: data"
        )
        for step in config.data.get("clean", []) or []:
            name = step if isinstance(step, str) else next(iter(step), "")
            if name and name != "none":
                llmkit.get("cleaner", name)
        plan.append(f"data: {len(config.data.get('inputs', []) or [])} input patterns")
    if config.train is not None:
        tr = config.train
        if tr.model is not None:
            _validate_spec(config, "model", tr.model, validate, positional=0)
            check_model(config)
        _validate_spec(config, "optimizer", tr.optimizer, validate, positional=1)
        if tr.scheduler is not None:
            scheduler = ComponentSpec(name=tr.scheduler.name, **_scheduler_params(tr))
            _validate_spec(config, "scheduler", scheduler, validate, positional=1)
        check_optimization(config)
        _validate_spec(config, "loss", tr.loss, validate, positional=0)
        source = f"model {tr.model.name}" if tr.model else f"init_from {tr.init_from}"
        plan.append(f"train: {tr.objective}, {source}, {tr.max_steps} steps")
    if config.eval is not None:
        from llmkit.inference.generation import ENCODER_MODELS

        train = config.train
        name = train.model.name if train is not None and train.model is not None else None
        if train is not None and train.objective == "causal_lm" and name in ENCODER_MODELS:
            raise UsageError(  # an encoder sees the next token: its perplexity means nothing
                f"{config.source}: train.objective: causal_lm with model {name}, a bidirectional "
                "encoder, has no next-token perplexity to evaluate; use objective masked_lm (or "
                "classification)"
            )
        plan.append(f"eval: {', '.join(eval_metrics(config))}")
    if not plan:
        raise UsageError("the pipeline has no stage; add tokenizer, data, train or eval")
    check_inputs(config)  # the files last: a config error is worth knowing first
    return plan


def check_inputs(config: PipelineConfig) -> None:
    """The files the tokenizer trains on and the data stage reads must exist (paths as `run`
    resolves them: relative to the pipeline file's directory)."""
    from llmkit.data.readers import expand_paths

    base = Path(config.source).resolve().parent if config.has_file else Path.cwd()
    checks: list[tuple[str, list[str], dict[str, Any]]] = []
    if config.tokenizer is not None and config.tokenizer.train_files:
        checks.append(("tokenizer.train_files", config.tokenizer.train_files, {}))
    if config.data is not None and config.data.get("inputs"):
        inputs = config.data["inputs"]
        patterns = {k: config.data.get(k) or () for k in ("include", "exclude")}
        checks.append(("data.inputs", [inputs] if isinstance(inputs, str) else inputs, patterns))
    for field, paths, patterns in checks:
        try:
            expand_paths([_resolve(base, str(p)) for p in paths], **patterns)
        except UsageError as exc:
            raise UsageError(f"{config.source}: {field}: {exc}") from None


PLACEHOLDER_VOCAB = 256  # the model's vocab_size in `check`, before any tokenizer exists
PLACEHOLDER_LABELS = 2  # and a classifier's label count, before the data is read


def model_params(train: TrainSection, vocab_size: int, n_labels: int | None) -> dict[str, Any]:
    """The model's keyword parameters: the tokenizer's vocab (unless given) and BERT's labels."""
    assert train.model is not None
    params = {"vocab_size": vocab_size, **train.model.params}
    if n_labels is not None and train.model.name == "bert":
        params.setdefault("n_labels", n_labels)
    return params


def check_model(config: PipelineConfig) -> None:
    """Build the train section's model as `stage_train` does, without weights, to check its config.

    The config's own checks (names, head counts, choices) and the attention options are only
    validated when the model is built, so this builds it on the meta device, with a placeholder
    vocab size; errors name the file and the field, e.g. `train.model.attention: unknown ...`.
    """
    import torch

    import llmkit
    from llmkit.errors import LlmkitError

    t = config.train
    assert t is not None and t.model is not None
    n_labels = PLACEHOLDER_LABELS if t.objective == "classification" else None
    params = model_params(t, PLACEHOLDER_VOCAB, n_labels)
    try:
        try:
            with torch.device("meta"):
                llmkit.create("model", t.model.name, **params)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc).lower():
                raise
            # A plugin module that insists on CPU tensors cannot be built on meta; build it on the
            # CPU without the random init (untouched weight memory is never paged in).
            from llmkit.storage.checkpoint import no_weight_init

            with no_weight_init():
                llmkit.create("model", t.model.name, **params)
    except LlmkitError as exc:
        raise _spec_error(config, "model", t.model.name, str(exc)) from None
    except Exception as exc:
        raise _spec_error(config, "model", t.model.name, f"{type(exc).__name__}: {exc}") from exc


def check_optimization(config: PipelineConfig) -> None:
    """Build the optimizer and scheduler around one stand-in parameter, as `stage_train` does.

    Their factories check values against each other (`total_steps` must exceed `warmup_steps`, a
    learning rate must be positive), which only building them does.
    """
    import torch

    import llmkit
    from llmkit.errors import LlmkitError

    t = config.train
    assert t is not None
    stand_in = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = llmkit.create("optimizer", t.optimizer.name, stand_in, **t.optimizer.params)
    except (LlmkitError, ValueError, TypeError) as exc:  # torch's optimizers raise ValueError
        raise _spec_error(config, "optimizer", t.optimizer.name, str(exc)) from None
    if t.scheduler is not None:
        try:
            llmkit.create("scheduler", t.scheduler.name, optimizer, **_scheduler_params(t))
        except (LlmkitError, ValueError, TypeError) as exc:
            raise _spec_error(config, "scheduler", t.scheduler.name, str(exc)) from None


def _spec_error(config: PipelineConfig, kind: str, name: str, message: str) -> UsageError:
    """`FILE: train.KIND.FIELD: problem` when the message is about one field, else `train.KIND`."""
    import llmkit

    message = (message.strip().splitlines() or [f"invalid {kind} config"])[0]
    message = message.removeprefix(f"{kind} '{name}': ")
    field, sep, rest = message.partition(": ")
    fields = {p.name for p in llmkit.describe(kind, name).params}
    if sep and field in fields:
        return UsageError(f"{config.source}: train.{kind}.{field}: {rest}")
    return UsageError(f"{config.source}: train.{kind}: {message}")


def _scheduler_params(train: TrainSection) -> dict[str, Any]:
    """The scheduler's parameters, with `total_steps` defaulting to the run's `max_steps`."""
    assert train.scheduler is not None
    params = dict(train.scheduler.params)
    if train.scheduler.name in ("cosine", "linear"):
        params.setdefault("total_steps", train.max_steps)
    return params


def _validate_spec(
    config: PipelineConfig, kind: str, spec: ComponentSpec, validate: Any, positional: int
) -> None:
    import llmkit
    from llmkit.errors import RegistryError

    component = llmkit.get(kind, spec.name)
    params = {k: v for k, v in spec.params.items() if k != "vocab_size" or kind != "model"}
    try:
        validate(component, (None,) * positional, params)
    except RegistryError as exc:
        raise _spec_error(config, kind, spec.name, str(exc)) from None


# -- stages ---------------------------------------------------------------------------------------


def stage_tokenizer(config: PipelineConfig, base: Path, out: Path, log: Log) -> Path:
    """Load, pick or train the tokenizer and save it as `out/tokenizer.json`; returns the path."""
    import llmkit

    t = config.tokenizer
    assert t is not None
    target = out / "tokenizer.json"
    fingerprint = hashlib.sha256(json.dumps(t.model_dump(), sort_keys=True).encode()).hexdigest()
    stamp = out / "tokenizer.fingerprint"
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        log(f"tokenizer: up to date ({target})")
        return target
    if t.path:
        from llmkit.storage.tokenizer_files import load_tokenizer

        tok = load_tokenizer(_resolve(base, t.path))
    elif t.name:
        accepted = {p.name for p in llmkit.describe("tokenizer", t.name).params}
        extra = {"special_tokens": list(t.special_tokens)} if "special_tokens" in accepted else {}
        tok = llmkit.create("tokenizer", t.name, **extra)
    else:
        files = [_resolve(base, f) for f in t.train_files]
        if t.type == "bpe":
            from llmkit.tokenizers.bpe import BPETokenizer

            tok = BPETokenizer.train(
                files,
                vocab_size=t.vocab_size,
                pattern=t.pattern,
                special_tokens=list(t.special_tokens),
                min_frequency=t.min_frequency,
            )
        else:
            from llmkit.tokenizers.wordpiece import WordPieceTokenizer

            tok = WordPieceTokenizer.train(files, vocab_size=t.vocab_size)
        log(f"tokenizer: trained {t.type}, vocab {tok.vocab_size}")
    out.mkdir(parents=True, exist_ok=True)
    tok.save(target)
    stamp.write_text(fingerprint + "\n")
    return target


def stage_data(config: PipelineConfig, base: Path, out: Path, tokenizer: Path, log: Log) -> Path:
    """Clean and tokenize the corpus into shards under `out/data` (skipped when up to date)."""
    from llmkit.data.prepare import PrepareConfig, prepare

    data = dict(config.data or {})
    data["inputs"] = [_resolve(base, p) for p in (data.get("inputs") or [])]
    data.setdefault("seed", config.seed)
    data["tokenizer"] = str(tokenizer)
    data["output"] = str(out / "data")
    result = prepare(PrepareConfig.from_mapping(data, source="data"))
    log(f"data: {'up to date' if result.skipped else 'prepared'} ({result.out_dir})")
    return Path(result.out_dir)


def _records(config: PipelineConfig, base: Path) -> tuple[list[Any], list[Any]]:
    """(train, validation) records read and cleaned from the data section, for labelled objectives."""
    from llmkit.data.pipeline import CleaningPipeline
    from llmkit.data.prepare import PrepareConfig, is_validation, make_cleaners, make_reader

    data = dict(config.data or {})
    data["inputs"] = [_resolve(base, p) for p in (data.get("inputs") or [])]
    cfg = PrepareConfig.from_mapping(data, source="data")
    records = CleaningPipeline(make_cleaners(cfg.clean)).run(iter(make_reader(cfg)))
    train: list[Any] = []
    valid: list[Any] = []
    for rec in records:
        key = (rec.text or "") + "\x00" + (rec.target or "")
        (valid if is_validation(key, cfg.seed, cfg.validation) else train).append(rec)
    if not train:
        raise UsageError("data: no training records after cleaning; check inputs and cleaners")
    return train, valid


def _batches(
    config: PipelineConfig, base: Path, data_dir: Path | None, tokenizer: Any, seed: int
) -> tuple[Any, Callable[[], Iterator[Any]] | None, dict[str, Any]]:
    """Training batches, a maker of evaluation batches, and facts the model needs (labels)."""
    from llmkit.data import batching

    t = config.train
    assert t is not None
    if t.objective == "causal_lm" or t.objective == "masked_lm":
        if data_dir is None:
            raise UsageError(f"train: objective {t.objective} needs a data section to read shards")
        shards = str(data_dir)

        def windows(split: str, mode: Any, epochs: int | None) -> Any:
            if t.objective == "causal_lm":
                return batching.CausalLMBatches(
                    shards,
                    t.context,
                    t.batch_size,
                    split=split,
                    mode=mode,
                    seed=seed,
                    epochs=epochs,
                )
            return batching.MaskedLMBatches(
                shards,
                t.context,
                t.batch_size,
                tokenizer=tokenizer,
                split=split,
                mode=mode,
                seed=seed,
                epochs=epochs,
            )

        return windows("train", "random", None), lambda: windows("validation", "sequential", 1), {}
    train_records, valid_records = _records(config, base)
    if t.objective == "classification":
        train = batching.ClassificationBatches(
            train_records, tokenizer, t.batch_size, max_length=t.max_length, seed=seed, epochs=None
        )
        labels = train.label_vocab

        def held_out() -> Iterator[Any]:
            return batching.ClassificationBatches(
                valid_records,
                tokenizer,
                t.batch_size,
                max_length=t.max_length,
                labels=labels,
                shuffle=False,
                epochs=1,
            )

        facts = {"n_labels": len(labels), "labels": labels}
        return train, (held_out if valid_records else None), facts

    def pairs(records: list[Any], epochs: int | None, shuffle: bool) -> Any:
        return batching.Seq2SeqBatches(
            records,
            tokenizer,
            t.batch_size,
            max_source_len=t.max_length,
            max_target_len=t.max_length,
            shuffle=shuffle,
            seed=seed,
            epochs=epochs,
        )

    held = (lambda: pairs(valid_records, 1, False)) if valid_records else None
    return pairs(train_records, None, True), held, {}


def stage_train(
    config: PipelineConfig,
    base: Path,
    out: Path,
    data_dir: Path | None,
    tokenizer_path: Path | None,
    log: Log,
) -> dict[str, Any]:
    """Build model, optimizer, schedule and loss from the registry and train; returns the result."""
    import torch

    import llmkit
    from llmkit.train import distributed
    from llmkit.train.trainer import Trainer, TrainSettings, write_result

    t = config.train
    assert t is not None
    # Under torchrun `run` has joined the process group already and leaves it after every stage;
    # a caller of this function alone has it joined and left here.
    with distributed.process_group(t.device) as dist:
        torch.manual_seed(config.seed)
        tokenizer = None
        if tokenizer_path is not None:
            from llmkit.storage.tokenizer_files import load_tokenizer

            tokenizer = load_tokenizer(tokenizer_path)
        elif t.init_from:
            tokenizer = llmkit.load_tokenizer(_resolve(base, t.init_from))
        if tokenizer is None:
            raise UsageError(
                "train: no tokenizer; add a tokenizer section or init_from a checkpoint with one"
            )
        train_batches, eval_batches, facts = _batches(
            config, base, data_dir, tokenizer, config.seed
        )
        if t.model is not None:
            params = model_params(t, tokenizer.vocab_size, facts.get("n_labels"))
            model = llmkit.create("model", t.model.name, **params)
        else:
            model = llmkit.load_model(_resolve(base, str(t.init_from)))
            model.train()
        model = model.to(dist.device)
        optimizer = llmkit.create(
            "optimizer", t.optimizer.name, model.parameters(), **t.optimizer.params
        )
        scheduler = None
        if t.scheduler is not None:
            scheduler = llmkit.create(
                "scheduler", t.scheduler.name, optimizer, **_scheduler_params(t)
            )
        loss = llmkit.create("loss", t.loss.name, **t.loss.params)
        settings = TrainSettings(
            max_steps=t.max_steps,
            grad_accum=t.grad_accum,
            grad_clip=t.grad_clip,
            precision=t.precision,
            compile=t.compile,
            log_every=t.log_every,
            eval_every=t.eval_every,
            eval_batches=t.eval_batches,
            checkpoint_every=t.checkpoint_every,
            keep_checkpoints=t.keep_checkpoints,
        )
        trainer = Trainer(
            model,
            t.objective,
            optimizer,
            scheduler,
            loss,
            train_batches,
            settings,
            out,
            dist,
            eval_batches=eval_batches,
            tokenizer=tokenizer,
            log=log,
        )
        if t.resume:
            trainer.resume()
        if trainer.step >= t.max_steps:
            log(f"train: already at step {trainer.step} of {t.max_steps}")
        result = trainer.fit() if trainer.step < t.max_steps else None
        summary: dict[str, Any] = {"objective": t.objective, **facts}
        if result is not None:
            finished = result

            def save() -> None:
                write_result(finished, out)
                from llmkit.storage.checkpoint import save_model

                start = getattr(train_batches, "bos_id", None) if t.objective == "seq2seq" else None
                generation = {"bos_token_id": start} if start is not None else None
                save_model(model, out / "model", tokenizer=tokenizer, generation=generation)
                if facts.get("labels"):  # class names, in index order, for `llmkit eval`
                    write_json(out / "model" / "labels.json", facts["labels"])

            # Rank 0 writes while the others wait, so no rank reads `out/model` before it is whole.
            distributed.on_main(dist, save, "saving the trained model")
            summary.update(
                steps=result.steps,
                train_loss=result.train_loss,
                eval_loss=result.eval_loss,
                tokens_per_second=result.tokens_per_second,
            )
            log(
                f"train: {result.steps} steps, loss {result.train_loss:.4f}"
                + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
                + f", {result.tokens_per_second:,.0f} tokens/s -> {out / 'model'}"
            )
        return summary


def stage_eval(
    config: PipelineConfig, base: Path, out: Path, data_dir: Path | None, log: Log
) -> dict[str, Any]:
    """Evaluate `out/model` on the held-out split, as its objective is trained; writes eval.json.

    causal_lm: perplexity (bits per byte) of the validation shards. masked_lm: perplexity and
    accuracy of the masked-LM head at the masked tokens of the validation shards (as `llmkit eval
    --task masked_lm`). seq2seq: teacher-forced perplexity of the validation pairs' targets, and
    BLEU/chrF/TER/exact match of greedy translations when asked. classification: accuracy,
    precision/recall/F1 and the confusion matrix. eval.json holds every key of every requested
    metric (`eval_metrics`). This process evaluates alone (under torchrun, rank 0 while the
    others wait): batches are not split across ranks, nor counts summed.
    """
    import llmkit
    from llmkit.data import batching
    from llmkit.evaluation import core
    from llmkit.storage.checkpoint import read_config
    from llmkit.inference.generation import refuse_encoder

    e = config.eval
    assert e is not None
    keys = list(dict.fromkeys(k for ks in eval_metrics(config).values() for k in ks))
    model_dir = out / "model"
    t = config.train
    objective = t.objective if t is not None else "causal_lm"
    if objective == "causal_lm":
        refuse_encoder(
            model_dir, read_config(model_dir), "has no next-token perplexity (objective causal_lm)"
        )
    model = llmkit.load_model(model_dir)
    tokenizer = llmkit.load_tokenizer(model_dir)
    batch_size = e.batch_size or (t.batch_size if t is not None else 8)
    context = t.context if t is not None else 256
    one: dict[str, Any] = {"rank": 0, "world_size": 1}  # this process reads every batch
    if objective in ("causal_lm", "masked_lm") and data_dir is None:
        raise UsageError("eval: needs the data section (held-out shards)")
    with core.this_process_only():
        if objective == "causal_lm":
            windows = batching.CausalLMBatches(
                str(data_dir), context, batch_size, "validation", "sequential", epochs=1, **one
            )
            token_bytes = core.token_byte_lengths(tokenizer)
            result = core.evaluate_lm(
                model, windows, token_bytes=token_bytes, max_batches=e.batches
            )
        elif objective == "masked_lm":
            from llmkit.data.shards import TokenShards
            from llmkit.evaluation.runner import masked_lm_windows

            shards = TokenShards(str(data_dir), "validation")
            masked = masked_lm_windows(
                shards, context, batch_size, tokenizer, seed=config.seed, rank=0, world=1
            )
            result = core.evaluate_masked_lm(model, masked, max_batches=e.batches)
        elif objective == "classification":
            _, valid = _records(config, base)
            if not valid:
                raise UsageError("eval: no validation records; raise data.validation")
            labels = json.loads((model_dir / "labels.json").read_text())
            batches = batching.ClassificationBatches(
                valid, tokenizer, batch_size, labels=labels, shuffle=False, epochs=1, **one
            )
            predictions: list[int] = []
            targets: list[int] = []
            classify: Any = model.classify
            with torch_no_grad():
                for batch in batches:
                    logits = classify(batch["input_ids"], attention_mask=batch["attention_mask"])
                    predictions += logits.argmax(-1).tolist()
                    targets += batch["labels"].tolist()
            result = core.evaluate_classification(predictions, targets, labels)
        else:
            result = _eval_seq2seq(config, base, model_dir, model, tokenizer, keys, batch_size)
    missing = [k for k in keys if k not in result["metrics"]]
    if missing:
        raise UsageError(f"eval: {missing[0]} could not be computed for this model or tokenizer")
    metrics = {k: result["metrics"][k] for k in keys}
    write_json(out / "eval.json", {"metrics": metrics, "details": result.get("details", {})})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log(f"eval: {shown or 'see eval.json'} -> {out / 'eval.json'}")
    return metrics


def _eval_seq2seq(
    config: PipelineConfig,
    base: Path,
    model_dir: Path,
    model: Any,
    tokenizer: Any,
    keys: list[str],
    batch_size: int,
) -> dict[str, Any]:
    """`stage_eval` for seq2seq: teacher-forced perplexity and/or scores of greedy translations,
    decoding from the start token the model was trained with (`decoder_start_id`)."""
    from llmkit.data import batching
    from llmkit.evaluation import core
    from llmkit.storage.checkpoint import load_generation_config
    from llmkit.inference.generation import context_length, decoder_start_id

    t, e = config.train, config.eval
    assert t is not None and e is not None
    _, valid = _records(config, base)
    if not valid:
        raise UsageError("eval: no validation records; raise data.validation")
    start = decoder_start_id(tokenizer, load_generation_config(model_dir))
    result: dict[str, Any] = {"task": "seq2seq", "metrics": {}, "details": {}}
    if any(k not in core.GENERATION_METRICS for k in keys):
        pairs = batching.Seq2SeqBatches(
            valid,
            tokenizer,
            batch_size,
            max_source_len=t.max_length,
            max_target_len=t.max_length,
            bos_id=start,
            shuffle=False,
            rank=0,
            world_size=1,
            epochs=1,
        )
        result = core.evaluate_seq2seq(model, pairs, max_batches=e.batches)
    generated = [k for k in keys if k in core.GENERATION_METRICS]
    if generated:
        rows = valid[: e.batches * batch_size]
        limit = context_length(model)
        hyps = core.generate_texts(
            model,
            tokenizer,
            [str(r.text) for r in rows],
            max_new_tokens=t.max_length if limit is None else min(t.max_length, limit - 1),
            stop=(),
            batch_size=batch_size,
            bos_token_id=start,
        )
        scored = core.evaluate_generation(hyps, [str(r.target) for r in rows], generated)
        result["metrics"].update(scored["metrics"])
        result["details"].update(scored["details"])
        result["details"]["examples"] = [
            {"source": r.text, "reference": r.target, "hypothesis": h}
            for r, h in zip(rows[:5], hyps[:5], strict=False)
        ]
    return result


def eval_metrics(config: PipelineConfig) -> dict[str, list[str]]:
    """The eval section's metrics, each mapped to the keys it writes to eval.json.

    Without `metrics` in the file, the objective's defaults; a metric the objective's evaluation
    cannot report is `FILE: eval.metrics: ...`, raised by `check` before any stage runs.
    """
    from llmkit.evaluation.core import objective_metrics

    assert config.eval is not None
    objective = config.train.objective if config.train is not None else "causal_lm"
    given = config.eval.metrics if "metrics" in config.eval.model_fields_set else None
    try:
        return objective_metrics(objective, given)
    except UsageError as exc:
        raise UsageError(f"{config.source}: eval.metrics: {exc}") from None


def torch_no_grad() -> Any:
    """torch.no_grad(), imported when evaluation runs."""
    import torch

    return torch.no_grad()


def is_main_process() -> bool:
    """False on every rank of a torchrun job but rank 0 (which alone logs and writes results)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _several_ranks() -> bool:
    """Whether this process is one of several ranks: started by torchrun (WORLD_SIZE > 1) or in a
    process group its caller has joined. Imports no torch on a single process."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return True
    torch_dist = sys.modules.get("torch.distributed")
    return bool(
        torch_dist is not None
        and torch_dist.is_available()
        and torch_dist.is_initialized()
        and torch_dist.get_world_size() > 1
    )


def _quiet(line: str) -> None:
    """The log of every rank but rank 0."""


def run(
    config: PipelineConfig, base: Path, stages: list[str] | None = None, log: Log = print
) -> dict[str, Any]:
    """Run the pipeline's stages in order (all present ones unless `stages` names some).

    Under torchrun it joins the process group once for the whole run: rank 0 alone runs the
    tokenizer and data stages while the other ranks wait, every rank trains, and rank 0 alone
    evaluates, logs and writes `summary.json`; a failure on rank 0 stops the others with an error.
    """
    wanted = stages or [s for s in STAGES if getattr(config, s) is not None]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage '{unknown[0]}'; stages: {', '.join(STAGES)}")
    missing = [s for s in wanted if getattr(config, s) is None]
    if missing:
        raise UsageError(
            f"stage '{missing[0]}' asked for, but the pipeline has no '{missing[0]}' section"
        )
    if not _several_ranks():
        return _run_stages(config, base, wanted, log, None)
    from llmkit.train import distributed

    device = config.train.device if config.train is not None else "auto"
    with distributed.process_group(device) as dist:
        return _run_stages(config, base, wanted, log if dist.is_main else _quiet, dist)


def _run_stages(
    config: PipelineConfig, base: Path, wanted: list[str], log: Log, dist: Dist | None
) -> dict[str, Any]:
    """`run`'s stages; `dist` is this rank's `Dist` under torchrun, None in a single process."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"name": config.name, "output": str(out)}

    def prepare() -> tuple[Path | None, Path | None]:
        tokenizer_path = out / "tokenizer.json" if (out / "tokenizer.json").is_file() else None
        data_dir = out / "data" if (out / "data").is_dir() else None
        if (
            config.data is not None
            and config.train is not None
            and config.train.objective in ("classification", "seq2seq")
        ):
            data_dir = None
        if "tokenizer" in wanted:
            tokenizer_path = stage_tokenizer(config, base, out, log)
        if "data" in wanted and not (
            config.train and config.train.objective in ("classification", "seq2seq")
        ):
            if tokenizer_path is None:
                raise UsageError("data: needs a tokenizer; add a tokenizer section")
            data_dir = stage_data(config, base, out, tokenizer_path, log)
        return tokenizer_path, data_dir

    # Rank 0 alone writes the tokenizer and the shards; the other ranks wait for its paths.
    tokenizer_path, data_dir = _on_main(dist, prepare, "the tokenizer and data stages")
    if "train" in wanted:
        summary["train"] = stage_train(config, base, out, data_dir, tokenizer_path, log)

    def finish() -> dict[str, Any]:
        if "eval" in wanted:
            summary["eval"] = stage_eval(config, base, out, data_dir, log)
        write_json(out / "summary.json", summary)
        return summary

    return _on_main(dist, finish, "the eval stage" if "eval" in wanted else "writing summary.json")


def _on_main(dist: Dist | None, work: Callable[[], T], what: str) -> T:
    """`work()` here in a single process; under torchrun on rank 0 alone, the others waiting."""
    if dist is None:
        return work()
    from llmkit.train import distributed

    return distributed.on_main(dist, work, what)
