"""Checking a pipeline before anything runs: names, parameters, model, objective, optimizer, files.

`check` is what `llmkit validate` prints and what `llmkit run` does first; every check that needs
no data runs here, so a bad file fails in a second, not after the tokenizer and data stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError
from llmkit.pipeline.config import ComponentSpec, PipelineConfig, TrainSection
from llmkit.plugins import get_host

if TYPE_CHECKING:
    from llmkit.objectives.base import Objective

PLACEHOLDER_VOCAB = 256  # the model's vocab_size in `check`, before any tokenizer exists
PLACEHOLDER_LABELS = ["a", "b"]  # and a classifier's labels, before the data is read


def check(config: PipelineConfig) -> list[str]:
    """Validate every component name and parameter without running anything; returns the plan."""
    plan = []
    if config.tokenizer is not None:
        plan.append(_check_tokenizer(config))
    if config.data is not None:
        plan.append(_check_data(config))
    if config.train is not None:
        plan.append(_check_train(config))
    if config.eval is not None:
        plan.append(f"eval: {', '.join(eval_metrics(config))}")
    if not plan:
        raise UsageError("the pipeline has no stage; add tokenizer, data, train or eval")
    check_inputs(config)  # the files last: a config error is worth knowing first
    return plan


def _check_tokenizer(config: PipelineConfig) -> str:
    import llmkit

    t = config.tokenizer
    assert t is not None
    if t.name:
        llmkit.get("tokenizer", t.name)
    return (
        f"tokenizer: {t.path or t.name or f'train {t.type} on {len(t.train_files)} file patterns'}"
    )


def _check_data(config: PipelineConfig) -> str:
    import llmkit
    from llmkit.data.prepare import PrepareConfig

    assert config.data is not None
    PrepareConfig.from_mapping(
        {**config.data.to_mapping(), "tokenizer": "byte", "output": "x"},
        source=f"{config.source}: data",
    )
    for step in config.data.clean:
        name = step if isinstance(step, str) else next(iter(step), "")
        if name and name != "none":
            llmkit.get("cleaner", name)
    return f"data: {len(config.data.inputs)} input patterns"


def _check_train(config: PipelineConfig) -> str:
    from llmkit.params import validate

    tr = config.train
    assert tr is not None
    objective = build_objective(config)
    if tr.model is not None:
        _validate_spec(config, "model", tr.model, validate, positional=0)
        check_model(config, objective)
    else:
        check_init_from(config, objective)
    check_adapter(config, objective)
    _validate_spec(config, "optimizer", tr.optimizer, validate, positional=1)
    if tr.scheduler is not None:
        scheduler = ComponentSpec(name=tr.scheduler.name, **scheduler_params(tr))
        _validate_spec(config, "scheduler", scheduler, validate, positional=1)
    check_optimization(config)
    _validate_spec(config, "loss", tr.loss, validate, positional=0)
    check_loss(config, objective)
    check_loggers(config, validate)
    source = f"model {tr.model.name}" if tr.model else f"init_from {tr.init_from}"
    return f"train: {tr.objective.name}, {source}, {tr.max_steps} steps"


def check_loggers(config: PipelineConfig, validate: Any) -> None:
    """Each of `train.loggers` is a registered logger whose parameters fit its signature."""
    import llmkit
    from llmkit.errors import RegistryError

    assert config.train is not None
    for i, spec in enumerate(config.train.loggers):
        try:
            validate(llmkit.get("logger", spec.name), (None,), spec.params)
        except RegistryError as exc:
            raise UsageError(f"{config.source}: train.loggers[{i}]: {exc}") from None


def build_objective(config: PipelineConfig) -> Objective:
    """The train section's objective component, its parameters checked; errors name the field."""
    import llmkit
    from llmkit.errors import LlmkitError

    assert config.train is not None
    spec = config.train.objective
    try:
        objective: Objective = llmkit.create("objective", spec.name, **spec.params)
        return objective
    except LlmkitError as exc:
        raise _spec_error(config, "objective", spec.name, str(exc)) from None


def check_inputs(config: PipelineConfig) -> None:
    """The files the tokenizer trains on and the data stage reads must exist (paths as `run`
    resolves them: relative to the pipeline file's directory)."""
    from llmkit.data.readers import expand_paths

    base = Path(config.source).resolve().parent if config.has_file else Path.cwd()
    checks: list[tuple[str, list[str], dict[str, Any]]] = []
    if config.tokenizer is not None and config.tokenizer.train_files:
        exclude = {"exclude": config.tokenizer.exclude}
        checks.append(("tokenizer.train_files", config.tokenizer.train_files, exclude))
    if config.data is not None and config.data.inputs:
        patterns = {"include": config.data.include, "exclude": config.data.exclude}
        checks.append(("data.inputs", config.data.inputs, patterns))
    for field, paths, patterns in checks:
        try:
            expand_paths([resolve(base, str(p)) for p in paths], **patterns)
        except UsageError as exc:
            raise UsageError(f"{config.source}: {field}: {exc}") from None


def resolve(base: Path, path: str) -> str:
    """`path` as given when absolute, else relative to the pipeline file's directory."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


def model_params(
    train: TrainSection, objective: Objective, vocab_size: int, facts: dict[str, Any]
) -> dict[str, Any]:
    """The new model's keyword parameters: the tokenizer's vocab (unless given), then what the
    objective needs from the data (a classifier's label count), unless the file sets them."""
    import llmkit

    assert train.model is not None
    params = {"vocab_size": vocab_size, **train.model.params}
    accepted = {p.name for p in llmkit.describe("model", train.model.name).params}
    for key, value in objective.model_params(facts).items():
        if key in accepted:
            params.setdefault(key, value)
    return params


def _refuse_model(config: PipelineConfig, objective: Objective, name: str, traits: Any) -> None:
    """`FILE: train.objective: X with model Y, <why>` when the objective cannot train the model."""
    reason = objective.check_model(traits)
    if reason is not None:
        raise UsageError(
            f"{config.source}: train.objective: {objective.name} with model {name}, {reason}"
        )


def check_model(config: PipelineConfig, objective: Objective) -> None:
    """Build the train section's model as the train stage does, without weights, to check it.

    The config's own checks (names, head counts, choices) and the attention options are only
    validated when the model is built, so this builds it on the meta device, with a placeholder
    vocab size; errors name the file and the field, e.g. `train.model.attention: unknown ...`.
    The objective is asked whether it can train the model (its declared traits).
    """
    import torch

    import llmkit
    from llmkit.errors import LlmkitError
    from llmkit.models.traits import registered_traits

    t = config.train
    assert t is not None and t.model is not None
    _refuse_model(config, objective, t.model.name, registered_traits(t.model.name))
    floor = _tokenizer_ids_floor(config)
    if floor is not None:
        check_vocab(config, floor)
    params = model_params(t, objective, PLACEHOLDER_VOCAB, {"labels": PLACEHOLDER_LABELS})
    try:
        try:
            with torch.device("meta"):
                model = llmkit.create("model", t.model.name, **params)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc).lower():
                raise
            # A plugin module that insists on CPU tensors cannot be built on meta; build it on the
            # CPU without the random init (untouched weight memory is never paged in).
            from llmkit.storage.checkpoint import no_weight_init

            with no_weight_init():
                model = llmkit.create("model", t.model.name, **params)
    except LlmkitError as exc:
        raise _spec_error(config, "model", t.model.name, str(exc)) from None
    except Exception as exc:
        raise _spec_error(config, "model", t.model.name, f"{type(exc).__name__}: {exc}") from exc
    check_context(config, objective, model, "raise train.model.max_positions")


def check_context(config: PipelineConfig, objective: Objective, model: Any, fix: str) -> None:
    """`train.context` must fit every fixed position table of the model (a learned table of
    `max_positions` rows), else the first forward fails after the tokenizer and data stages."""
    from llmkit.nn.positions import Positions

    t = config.train
    field = objective.length_field
    if t is None or field is None:
        return
    length = getattr(t, field)
    for module in model.modules():
        if not isinstance(module, Positions):
            continue
        try:
            module.fit(length)
        except UsageError:
            limit = getattr(module, "max_positions", "?")
            raise UsageError(
                f"{config.source}: train.{field}: {length} is longer than the model's "
                f"{limit} positions; lower train.{field} or {fix}"
            ) from None
        except Exception:
            continue  # a table that grows (RoPE, sinusoids) cannot be grown on meta: it fits


def _tokenizer_ids_floor(config: PipelineConfig) -> int | None:
    """The fewest ids the pipeline's tokenizer will have, when known before it exists."""
    import llmkit
    from llmkit.errors import LlmkitError
    from llmkit.limits import BYTE_ALPHABET

    t = config.tokenizer
    if t is not None and t.name:  # a registered tokenizer, built as the tokenizer stage builds it
        accepted = {p.name for p in llmkit.describe("tokenizer", t.name).params}
        extra = {"special_tokens": list(t.special_tokens)} if "special_tokens" in accepted else {}
        try:
            return int(llmkit.create("tokenizer", t.name, **extra).vocab_size)
        except (LlmkitError, TypeError, ValueError, AttributeError):
            return None
    if t is None or not t.train_files:
        return None
    return (BYTE_ALPHABET if t.type == "bpe" else 1) + len(set(t.special_tokens))


def check_vocab(config: PipelineConfig, tokenizer_ids: int) -> None:
    """A model's own `vocab_size` must hold every id of the tokenizer (else the embedding lookup
    fails mid-run); errors name the field and the tokenizer's size."""
    t = config.train
    given = t.model.params.get("vocab_size") if t is not None and t.model is not None else None
    if isinstance(given, int) and not isinstance(given, bool) and given < tokenizer_ids:
        raise UsageError(
            f"{config.source}: train.model.vocab_size: {given} is smaller than the tokenizer's "
            f"{tokenizer_ids} ids; remove it (the tokenizer's size is used) or raise it"
        )


def check_init_from(config: PipelineConfig, objective: Objective) -> None:
    """A checkpoint to fine-tune, when it is already there, must suit the objective."""
    from llmkit.models.traits import registered_traits
    from llmkit.storage.checkpoint import read_config

    t = config.train
    assert t is not None and t.init_from is not None
    base = Path(config.source).resolve().parent if config.has_file else Path.cwd()
    directory = Path(resolve(base, t.init_from))
    if not (directory / "config.json").is_file():
        return  # made by an earlier stage of another pipeline, or missing: the train stage says
    checkpoint = read_config(directory)
    name = str(checkpoint.get("model", ""))
    if ("model", name) in get_host().registry:
        _refuse_model(config, objective, name, registered_traits(name))
        _check_checkpoint_context(config, objective, checkpoint, directory)


def _check_checkpoint_context(
    config: PipelineConfig, objective: Objective, checkpoint: dict[str, Any], directory: Path
) -> None:
    """`train.context` against the position table of an `init_from` model (built on meta)."""
    import torch

    from llmkit.models import build_model
    from llmkit.storage.checkpoint import model_fields

    try:
        with torch.device("meta"):
            model = build_model(model_fields(checkpoint))
    except Exception:
        return  # the train stage loads it and says what is wrong
    check_context(config, objective, model, f"start from a checkpoint with more ({directory})")


def check_adapter(config: PipelineConfig, objective: Objective) -> None:
    """`train.adapter`'s name and parameters, and its targets on the model (built on the meta
    device from `model` or from an existing `init_from` checkpoint's config)."""
    import torch

    import llmkit
    from llmkit.adapters.base import build_adapter
    from llmkit.models import build_model
    from llmkit.storage.checkpoint import model_fields, read_config

    t = config.train
    assert t is not None
    if t.adapter is None:
        return
    try:
        adapter = build_adapter({"name": t.adapter.name, **t.adapter.params})
    except UsageError as exc:
        raise UsageError(f"{config.source}: train.adapter: {exc}") from None
    base = Path(config.source).resolve().parent if config.has_file else Path.cwd()
    directory = Path(resolve(base, t.init_from)) if t.init_from else None
    try:
        with torch.device("meta"):
            if t.model is not None:
                facts = {"labels": PLACEHOLDER_LABELS}
                params = model_params(t, objective, PLACEHOLDER_VOCAB, facts)
                model = llmkit.create("model", t.model.name, **params)
            elif directory is not None and (directory / "config.json").is_file():
                model = build_model(model_fields(read_config(directory)))
            else:
                return  # made by an earlier stage: the train stage checks the targets
    except Exception:
        return  # a model that cannot be built on meta: the train stage checks the targets
    try:
        adapter.apply(model)
    except UsageError as exc:
        raise UsageError(f"{config.source}: train.adapter: {exc}") from None


def check_optimization(config: PipelineConfig) -> None:
    """Build the optimizer and scheduler around one stand-in parameter, as the train stage does.

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
            llmkit.create("scheduler", t.scheduler.name, optimizer, **scheduler_params(t))
        except (LlmkitError, ValueError, TypeError) as exc:
            raise _spec_error(config, "scheduler", t.scheduler.name, str(exc)) from None


def check_loss(config: PipelineConfig, objective: Objective) -> None:
    """The loss must score what every objective hands it: logits (..., classes) against integer
    targets (...); a loss that wants other inputs (a teacher's logits) fails here, not mid-run."""
    import torch

    import llmkit
    from llmkit.errors import LlmkitError

    t = config.train
    assert t is not None
    try:
        loss = llmkit.create("loss", t.loss.name, **t.loss.params)
    except LlmkitError as exc:
        raise _spec_error(config, "loss", t.loss.name, str(exc)) from None
    logits, targets = torch.zeros(2, 3, 8), torch.zeros(2, 3, dtype=torch.long)
    try:
        loss(logits, targets)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"{config.source}: train.loss: {t.loss.name} cannot score objective {objective.name}'s "
            f"logits against its integer targets ({first}); use a loss of (logits, targets) "
            "such as cross_entropy"
        ) from None


def scheduler_params(train: TrainSection) -> dict[str, Any]:
    """The scheduler's parameters, with `total_steps` defaulting to the run's `max_steps` for any
    scheduler that takes one."""
    import llmkit

    assert train.scheduler is not None
    params = dict(train.scheduler.params)
    accepted = {p.name for p in llmkit.describe("scheduler", train.scheduler.name).params}
    if "total_steps" in accepted:
        params.setdefault("total_steps", train.max_steps)
    return params


def eval_metrics(config: PipelineConfig) -> dict[str, list[str]]:
    """The eval section's metrics, each mapped to the keys it writes to eval.json.

    Without `metrics` in the file, the objective's defaults; a metric the objective's evaluation
    cannot report is `FILE: eval.metrics: ...`, raised by `check` before any stage runs.
    """
    import llmkit

    assert config.eval is not None
    objective = build_objective(config) if config.train is not None else None
    if objective is None:
        objective = llmkit.create("objective", "causal_lm")
    given = config.eval.metrics if "metrics" in config.eval.model_fields_set else None
    try:
        return objective.metric_keys(given)
    except UsageError as exc:
        raise UsageError(f"{config.source}: eval.metrics: {exc}") from None


def _spec_error(config: PipelineConfig, kind: str, name: str, message: str) -> UsageError:
    """`FILE: train.KIND.FIELD: problem` when the message is about one field, else `train.KIND`."""
    import llmkit
    from llmkit.errors import RegistryError

    message = (message.strip().splitlines() or [f"invalid {kind} config"])[0]
    message = message.removeprefix(f"{kind} '{name}': ")
    field, sep, rest = message.partition(": ")
    try:
        fields = {p.name for p in llmkit.describe(kind, name).params}
    except RegistryError:  # an unknown name: the registry's own line says which exist
        fields = set()
    if sep and field in fields:
        return UsageError(f"{config.source}: train.{kind}.{field}: {rest}")
    return UsageError(f"{config.source}: train.{kind}: {message}")


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
