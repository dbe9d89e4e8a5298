"""The four stages of a pipeline: tokenizer, data, train, eval; each writes under the run's output.

Re-running skips work whose inputs have not changed (tokenizer, data shards) and resumes training
from the latest checkpoint. What differs between objectives (which data, which batches, which
model facts, which evaluation) is asked of the objective component; no stage names one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.atomic import write_json
from llmkit.errors import UsageError
from llmkit.pipeline.checks import (
    build_objective,
    check_vocab,
    eval_metrics,
    model_params,
    resolve,
)
from llmkit.pipeline.checks import scheduler_params as _scheduler_params
from llmkit.pipeline.config import PipelineConfig
from llmkit.storage.checkpoint import COMPANION_FILES

if TYPE_CHECKING:
    from llmkit.data.records import Record
    from llmkit.objectives.base import Objective
    from llmkit.train.distributed import Dist

Log = Callable[[str], None]
OBJECTIVE_FILE, LABELS_FILE = COMPANION_FILES  # the trained objective's spec, class names


def reads_shards(config: PipelineConfig) -> bool:
    """Whether the run's objective trains on token shards (so the data stage writes them)."""
    return config.train is None or build_objective(config).reads == "shards"


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

        tok = load_tokenizer(resolve(base, t.path))
    elif t.name:
        accepted = {p.name for p in llmkit.describe("tokenizer", t.name).params}
        extra = {"special_tokens": list(t.special_tokens)} if "special_tokens" in accepted else {}
        tok = llmkit.create("tokenizer", t.name, **extra)
    else:
        from llmkit.data.readers import expand_paths

        files = [resolve(base, f) for f in t.train_files]
        if t.exclude:
            files = [str(p) for p in expand_paths(files, (), t.exclude)]
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

            tok = WordPieceTokenizer.train(
                files, vocab_size=t.vocab_size, limit_alphabet=t.limit_alphabet
            )
        log(f"tokenizer: trained {t.type}, vocab {tok.vocab_size}")
    out.mkdir(parents=True, exist_ok=True)
    tok.save(target)
    stamp.write_text(fingerprint + "\n")
    return target


def stage_data(
    config: PipelineConfig,
    base: Path,
    out: Path,
    tokenizer: Path,
    log: Log,
    dist: Dist | None = None,
) -> Path:
    """Clean and tokenize the corpus into shards under `out/data` (skipped when up to date).

    Under torchrun (`dist`) every rank calls this: each tokenizes its share of the input files and
    rank 0 joins the parts into the shards and manifest one process writes, byte for byte.
    """
    from llmkit.data.prepare import PrepareConfig, prepare

    data = config.data.to_mapping() if config.data is not None else {}
    data["inputs"] = [resolve(base, p) for p in (data.get("inputs") or [])]
    data.setdefault("seed", config.seed)
    data["tokenizer"] = str(tokenizer)
    data["output"] = str(out / "data")
    cfg = PrepareConfig.from_mapping(data, source="data")
    if dist is not None and dist.world_size > 1:
        from llmkit.data.prepare_ranks import prepare_across_ranks, several_ranks
        from llmkit.pipeline.ranks import on_every_rank, on_main

        if several_ranks():  # a share may take hours longer than another: wait as long
            from llmkit.train.distributed import patient

            with patient(dist):
                result = on_every_rank(dist, lambda: prepare_across_ranks(cfg), "the data stage")
        else:  # a group its caller joined without torchrun's environment: rank 0 alone
            result = on_main(dist, lambda: prepare(cfg), "the data stage")
    else:
        result = prepare(cfg)
    log(f"data: {'up to date' if result.skipped else 'prepared'} ({result.out_dir})")
    return Path(result.out_dir)


def require_held_out(data_dir: Path) -> None:
    """A UsageError when the shards' validation split is empty, which the eval stage needs."""
    from llmkit.objectives.causal_lm import has_tokens

    if not has_tokens(str(data_dir), "validation"):
        raise UsageError(
            f"{data_dir}: the validation split is empty, so the eval stage would have nothing to "
            "score; raise data.validation (or use more data), or remove the eval section"
        )


def read_records(config: PipelineConfig, base: Path) -> tuple[list[Record], list[Record]]:
    """(train, validation) records read and cleaned from the data section, for objectives that
    read records rather than shards."""
    from llmkit.data.pipeline import CleaningPipeline
    from llmkit.data.prepare import PrepareConfig, is_validation, make_cleaners, make_reader

    data = config.data.to_mapping() if config.data is not None else {}
    data["inputs"] = [resolve(base, p) for p in (data.get("inputs") or [])]
    cfg = PrepareConfig.from_mapping(data, source="data")
    records = CleaningPipeline(make_cleaners(cfg.clean)).run(iter(make_reader(cfg)))
    train: list[Record] = []
    valid: list[Record] = []
    for rec in records:
        key = (rec.text or "") + "\x00" + (rec.target or "")
        (valid if is_validation(key, cfg.seed, cfg.validation) else train).append(rec)
    if not train:
        raise UsageError("data: no training records after cleaning; check inputs and cleaners")
    return train, valid


def _train_data(
    config: PipelineConfig, objective: Objective, base: Path, data_dir: Path | None, tok: Any
) -> Any:
    """What the objective batches from: the shards, or the data section's records."""
    from llmkit.objectives.base import TrainData

    t = config.train
    assert t is not None
    data = TrainData(tok, t.context, t.batch_size, t.max_length, config.seed, shards=data_dir)
    data.init_from = Path(resolve(base, t.init_from)) if t.init_from else None
    data.teacher = Path(resolve(base, t.teacher)) if t.teacher else None
    if objective.reads == "records":
        data.train_records, data.valid_records = read_records(config, base)
    return data


def _tokenizer(
    config: PipelineConfig, base: Path, tokenizer_path: Path | None, verify: bool = True
) -> Any:
    """The run's tokenizer: the tokenizer stage's file, else the `init_from` checkpoint's."""
    from llmkit.storage.tokenizer_files import load_tokenizer

    t = config.train
    assert t is not None
    if tokenizer_path is not None:
        return load_tokenizer(tokenizer_path)
    if t.init_from:
        return load_tokenizer(resolve(base, t.init_from), verify=verify)
    raise UsageError(
        "train: no tokenizer; add a tokenizer section or init_from a checkpoint with one"
    )


def fit_model(config: PipelineConfig, model: Any, needs: dict[str, Any]) -> Any:
    """The model as the run trains it: a loaded decoder grows the classification head the
    objective needs (`needs`: its model_params, e.g. n_labels), then `train.adapter` goes in."""
    from llmkit.models.traits import traits_of

    t = config.train
    assert t is not None
    traits = traits_of(model)
    n_labels = needs.get("n_labels")
    if n_labels and not traits.classifier and traits.grows_classifier:
        model.add_classifier(int(n_labels))
    if t.adapter is not None:
        from llmkit.adapters import apply_adapter

        try:
            model = apply_adapter(model, {"name": t.adapter.name, **t.adapter.params})
        except UsageError as exc:
            raise UsageError(f"{config.source}: train.adapter: {exc}") from None
    return model


def stage_train(
    config: PipelineConfig,
    base: Path,
    out: Path,
    data_dir: Path | None,
    tokenizer_path: Path | None,
    log: Log,
    verify: bool = True,
) -> dict[str, Any]:
    """Build objective, model, optimizer, schedule and loss from the registry and train
    (`verify`: check an `init_from` checkpoint against its manifest)."""
    import torch

    import llmkit
    from llmkit.train import distributed, fsdp
    from llmkit.train.trainer import Trainer, TrainSettings, write_result

    t = config.train
    assert t is not None
    objective = build_objective(config)
    # Under torchrun `run` has joined the process group already and leaves it after every stage;
    # a caller of this function alone has it joined and left here.
    from llmkit.loggers.base import open_loggers

    with (
        distributed.process_group(t.device) as dist,
        open_loggers(t.loggers, out, dist.is_main) as loggers,
    ):
        torch.manual_seed(config.seed)
        tokenizer = _tokenizer(config, base, tokenizer_path, verify)
        prepared = objective.batches(_train_data(config, objective, base, data_dir, tokenizer))
        if t.model is not None:
            check_vocab(config, tokenizer.vocab_size)

        def make() -> Any:
            if t.model is not None:
                params = model_params(t, objective, tokenizer.vocab_size, prepared.facts)
                model = llmkit.create("model", t.model.name, **params)
            else:
                model = llmkit.load_model(resolve(base, str(t.init_from)), verify=verify)
                model.train()
            return fit_model(config, model, objective.model_params(prepared.facts))

        # Under fsdp rank 0 alone builds (or loads) the whole model and sends each rank its shards.
        model = fsdp.build(make, dist, fsdp.DistributedSettings(**t.distributed.model_dump()))
        trainable = [p for p in model.parameters() if p.requires_grad]  # an adapter's alone
        optimizer = llmkit.create("optimizer", t.optimizer.name, trainable, **t.optimizer.params)
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
            strategy=t.distributed.strategy,
        )
        trainer = Trainer(
            model,
            objective,
            optimizer,
            scheduler,
            loss,
            prepared.train,
            settings,
            out,
            dist,
            eval_batches=prepared.held_out,
            tokenizer=tokenizer,
            log=log,
            loggers=loggers,
        )
        if t.resume:
            trainer.resume()
        if trainer.step >= t.max_steps:
            log(f"train: already at step {trainer.step} of {t.max_steps}")
        trained = trainer.step < t.max_steps
        result = trainer.fit() if trained else trainer.finished_result()
        facts = {k: v for k, v in prepared.facts.items() if k == "labels"}
        if facts.get("labels"):
            facts["n_labels"] = len(facts["labels"])
        summary: dict[str, Any] = {"objective": objective.name, **facts}
        model_dir = out / "model"
        if not trained and trainer.step >= t.max_steps and not _published(model_dir, trainer.step):
            log(
                f"train: the run is complete at step {trainer.step} but {model_dir} is missing or "
                "incomplete; publishing it from the last checkpoint"
            )
            trained = True
        if trained:
            step = trainer.step

            def save() -> None:
                from llmkit.storage.checkpoint import save_model
                from llmkit.storage.train_state import tidy

                generation = objective.generation_config(prepared)
                # The objective and its parameters, so that `llmkit eval --task NAME` evaluates
                # as this run's eval stage does (a masked_lm's mask_rate, say), and a
                # classifier's class names in index order.
                companions: dict[str, Any] = {OBJECTIVE_FILE: t.objective.model_dump()}
                if prepared.facts.get("labels"):
                    companions[LABELS_FILE] = prepared.facts["labels"]
                save_model(
                    whole,
                    model_dir,
                    tokenizer=tokenizer,
                    generation=generation,
                    companions=companions,
                    step=step,
                )
                remove_stale_copies(model_dir)
                tidy(trainer.checkpoints)

            # Rank 0 writes while the others wait, so no rank reads `out/model` before it is whole;
            # under fsdp every rank first sends rank 0 its shards of the weights.
            with fsdp.gathered(model) as whole:
                distributed.on_main(dist, save, "saving the trained model")
        if result is not None:
            finished = result
            if trained or not (out / "train_result.json").is_file():
                distributed.on_main(dist, lambda: write_result(finished, out), "train_result.json")
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


def _published(model_dir: Path, step: int) -> bool:
    """Whether `model_dir` is a complete model (its manifest verifies) of training step `step`."""
    from llmkit.storage.checkpoint import is_complete

    return is_complete(model_dir, step)


def remove_stale_copies(model_dir: Path) -> None:
    """Delete the hidden staged and aside copies of `model_dir` that a killed publish left."""
    import shutil

    for entry in model_dir.parent.glob(f".{model_dir.name}.*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def _trained_steps(out: Path) -> int:
    """The steps of the run's finished training (its train_result.json), 0 when unknown."""
    try:
        return int(json.loads((out / "train_result.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def stage_eval(
    config: PipelineConfig, base: Path, out: Path, data_dir: Path | None, log: Log
) -> dict[str, Any]:
    """Evaluate `out/model` on the held-out split with its objective's own evaluation (the one
    `llmkit eval --task OBJECTIVE` runs, same windows, same numbers); writes eval.json.

    eval.json holds every key of every requested metric (`eval_metrics`). This process evaluates
    alone (under torchrun, rank 0 while the others wait): batches are not split across ranks.
    """
    import llmkit
    from llmkit.evaluation import core
    from llmkit.objectives.base import EvalData, EvalSettings

    e = config.eval
    assert e is not None
    keys = list(dict.fromkeys(k for ks in eval_metrics(config).values() for k in ks))
    model_dir = out / "model"
    t = config.train
    objective = (
        build_objective(config) if t is not None else llmkit.create("objective", "causal_lm")
    )
    model = llmkit.load_model(model_dir)
    tokenizer = llmkit.load_tokenizer(model_dir)
    labels_file = model_dir / LABELS_FILE
    settings = EvalSettings(
        context=t.context if t is not None else 256,
        batch_size=e.batch_size or (t.batch_size if t is not None else 8),
        max_batches=e.batches,
        max_length=t.max_length if t is not None else 128,
        seed=config.seed,
        keys=keys,
        model_dir=model_dir,
        labels=json.loads(labels_file.read_text()) if labels_file.is_file() else None,
        teacher=Path(resolve(base, t.teacher)) if t is not None and t.teacher else None,
    )
    if objective.reads == "shards":
        if data_dir is None:
            raise UsageError("eval: needs the data section (held-out shards)")
        held_out = EvalData(shards=data_dir, split="validation")
    else:
        _, valid = read_records(config, base)
        if not valid:
            raise UsageError("eval: no validation records; raise data.validation")
        held_out = EvalData(records=valid)
    with core.this_process_only():
        result = objective.evaluate(model, tokenizer, held_out, settings)
    result.pop("predictions", None)
    missing = [k for k in keys if k not in result["metrics"]]
    if missing:
        raise UsageError(f"eval: {missing[0]} could not be computed for this model or tokenizer")
    metrics = {k: result["metrics"][k] for k in keys}
    write_json(out / "eval.json", {"metrics": metrics, "details": result.get("details", {})})
    if t is not None:
        from llmkit.loggers.base import log_eval_metrics

        log_eval_metrics(t.loggers, out, _trained_steps(out), metrics)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log(f"eval: {shown or 'see eval.json'} -> {out / 'eval.json'}")
    return metrics
