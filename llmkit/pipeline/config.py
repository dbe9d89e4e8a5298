"""The pipeline file: a YAML schema where unknown keys and wrong types are errors with a fix.

A pipeline names its components by registry name and passes them keyword parameters, which are
checked against each component's own signature before anything runs (`llmkit validate`).
Command-line overrides use dotted keys: `train.max_steps=10 train.optimizer.lr=3e-4`, and
`~eval` removes a key or section.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llmkit.data.options import ALIASES as DATA_ALIASES
from llmkit.data.options import DataOptions
from llmkit.errors import UsageError
from llmkit.limits import (
    BYTE_ALPHABET,
    MAX_BATCH_SIZE,
    MAX_BATCHES,
    MAX_CLIP,
    MAX_CONTEXT,
    MAX_COUNT,
    MAX_FREQUENCY,
    MAX_GRAD_ACCUM,
    MAX_SEED,
    MAX_STEPS,
    MAX_VOCAB_SIZE,
    MODEL_PARAM_BOUNDS,
    Int,
    Real,
    check_number,
)

# Bounded integer types (llmkit/limits.py): booleans refused, the bound named in the error.
Steps = Int(1, MAX_STEPS)
Every = Int(0, MAX_STEPS)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """A registry component: `name` plus its keyword parameters (checked against its signature)."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        """Every key but `name`: the component's keyword parameters."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _finite(self) -> ComponentSpec:
        for key, value in self.params.items():
            why = check_number(value, self._bound(key))
            if why is not None:
                raise PydanticCustomError(
                    "param_bound", "{param}: {why}", {"param": key, "why": why, "value": value}
                )
        return self

    def _bound(self, key: str) -> int | None:
        """The largest value parameter `key` may take (None: only finiteness is checked)."""
        return None


class ModelSpec(ComponentSpec):
    """A model component: its sizes (vocab_size, d_model, n_layers, ...) bounded by name."""

    def _bound(self, key: str) -> int | None:
        return MODEL_PARAM_BOUNDS.get(key)


class TokenizerSection(_Section):
    """Where the tokenizer comes from: a file, a registered name, or training on files."""

    path: str | None = None
    name: str | None = None
    type: Literal["bpe", "wordpiece"] = "bpe"
    train_files: list[str] = Field(default_factory=list)
    vocab_size: Int(1, MAX_VOCAB_SIZE) = 8192  # type: ignore[valid-type]
    pattern: str = "gpt2"
    special_tokens: list[str] = Field(default_factory=lambda: ["<|endoftext|>"])
    min_frequency: Int(1, MAX_FREQUENCY) = 2  # type: ignore[valid-type]
    exclude: list[str] = Field(default_factory=list)  # glob patterns of train_files to skip
    limit_alphabet: Int(1, MAX_VOCAB_SIZE) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _wordpiece_only(self) -> TokenizerSection:
        if self.limit_alphabet is not None and self.type != "wordpiece":
            raise ValueError(
                "limit_alphabet is a wordpiece setting; remove it or set type: wordpiece"
            )
        return self

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerSection:
        given = [k for k in ("path", "name") if getattr(self, k)] + (
            ["train_files"] if self.train_files else []
        )
        if len(given) != 1:
            raise ValueError(
                "give exactly one of path (a tokenizer file), name (a registered tokenizer) or "
                f"train_files (files to train on); got {', '.join(given) or 'none'}"
            )
        return self

    @model_validator(mode="after")
    def _room_for_the_alphabet(self) -> TokenizerSection:
        least = BYTE_ALPHABET + len(set(self.special_tokens))
        if self.type == "bpe" and self.train_files and self.vocab_size < least:
            raise PydanticCustomError(
                "vocab_bound",
                "vocab_size {value} is smaller than the {alphabet}-byte alphabet plus {n} special "
                "tokens; use at least {least}",
                {
                    "value": self.vocab_size,
                    "alphabet": BYTE_ALPHABET,
                    "n": least - BYTE_ALPHABET,
                    "least": least,
                    "field": "vocab_size",
                },
            )
        return self


class DistributedSection(_Section):
    """How torchrun's ranks share the training: ddp (every rank holds everything) or fsdp (FSDP2
    shards parameters, gradients and optimizer state per transformer block; DCP checkpoints)."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    mixed_precision: Literal["none", "bf16"] = "none"  # fsdp: bf16 parameters, fp32 reduction
    cpu_offload: bool = Field(default=False, strict=True)  # fsdp: shards live in host memory


class TrainSection(_Section):
    """The training stage: objective, model, optimizer, schedule, loss, batches and cadence."""

    objective: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="causal_lm"))
    model: ModelSpec | None = None
    init_from: str | None = None
    adapter: ComponentSpec | None = None  # e.g. {name: lora, r: 8, targets: [q, v]}
    teacher: str | None = None  # a checkpoint directory to distill from (objective distill)
    optimizer: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="adamw"))
    scheduler: ComponentSpec | None = None
    loss: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="cross_entropy"))
    context: Int(1, MAX_CONTEXT) = 256  # type: ignore[valid-type]
    batch_size: Int(1, MAX_BATCH_SIZE) = 8  # type: ignore[valid-type]
    max_steps: Steps = 100  # type: ignore[valid-type]
    grad_accum: Int(1, MAX_GRAD_ACCUM) = 1  # type: ignore[valid-type]
    grad_clip: Real(0.0, MAX_CLIP) | None = Field(1.0, gt=0)  # type: ignore[valid-type]
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = Field(False, strict=True)
    device: str = "auto"
    log_every: Steps = 10  # type: ignore[valid-type]
    eval_every: Every = 0  # type: ignore[valid-type]
    eval_batches: Int(1, MAX_BATCHES) = 20  # type: ignore[valid-type]
    checkpoint_every: Every = 0  # type: ignore[valid-type]
    keep_checkpoints: Int(1, MAX_COUNT) = 2  # type: ignore[valid-type]
    resume: bool = Field(True, strict=True)
    max_length: Int(1, MAX_CONTEXT) = 128  # type: ignore[valid-type]
    label_field: str = "label"
    #: Where the run's scalars go: `[jsonl, tensorboard]`, each a name or {name, ...params}.
    loggers: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="jsonl")])
    distributed: DistributedSection = Field(default_factory=DistributedSection)

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("loggers", mode="before")
    @classmethod
    def _loggers_by_name(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _model_source(self) -> TrainSection:
        if (self.model is None) == (self.init_from is None):
            raise ValueError(
                "give exactly one of model (a new model: {name: gpt, ...}) or init_from "
                "(a checkpoint directory to fine-tune)"
            )
        return self


class EvalSection(_Section):
    """The evaluation stage: metrics over the held-out split of the run's data."""

    metrics: list[str] = Field(default_factory=lambda: ["perplexity"])
    batches: Int(1, MAX_BATCHES) = 50  # type: ignore[valid-type]
    batch_size: Int(1, MAX_BATCH_SIZE) | None = None  # type: ignore[valid-type]


class PipelineConfig(_Section):
    """A whole pipeline: the stages present run in order tokenizer -> data -> train -> eval."""

    name: str = "run"
    output: str = Field("runs/run", min_length=1)
    seed: Int(0, MAX_SEED) = 0  # type: ignore[valid-type]
    tokenizer: TokenizerSection | None = None
    data: DataOptions | None = None
    train: TrainSection | None = None
    eval: EvalSection | None = None
    _source: str | None = PrivateAttr(default=None)

    @field_validator("output")
    @classmethod
    def _output_is_a_directory(cls, value: str) -> str:
        path = Path(value)
        for part in (path, *path.parents):
            if part.exists():
                if not part.is_dir():
                    raise ValueError(f"'{part}' exists and is not a directory; choose another")
                break
        return value

    @property
    def has_file(self) -> bool:
        """True when the pipeline was read from a file (relative paths are relative to it)."""
        return self._source is not None

    @property
    def source(self) -> str:
        """The file the pipeline was read from, to name in errors ("pipeline" when built in code)."""
        return self._source or "pipeline"


def _section_model(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class of the section at `path` inside `model` (None: not a section)."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return None
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if hasattr(a, "model_fields")), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_names(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `path` inside `model`, for did-you-mean hints."""
    section = _section_model(model, path)
    return list(section.model_fields) if section is not None else []


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        allowed = _field_names(PipelineConfig, loc[:-1])
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{dotted}'{hint} (allowed here: {', '.join(allowed)})"
    ctx = error.get("ctx") or {}
    if error["type"] == "param_bound":  # a component parameter: name it, not the section
        return f"{dotted}.{ctx['param']}: {ctx['why']}, got {_shown(ctx['value'])}"
    if error["type"] == "vocab_bound":
        return f"{dotted}.{ctx['field']}: {error['msg']}"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else "invalid"
    return f"{dotted or 'top level'}: {message}, got {_shown(error['input'])}"


def _shown(value: Any) -> str:
    """A value as the error line shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    import yaml

    from llmkit.yamlfile import StrictLoader

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override {text!r}: expected KEY=VALUE, e.g. train.max_steps=10")
    try:
        value = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a copy of `data` (creating sections as needed)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        if text.startswith("~"):  # `~train.scheduler` removes a key or a whole section
            *parents, last = text[1:].split(".")
            node: Any = result
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict) or last not in node:
                raise UsageError(f"override {text!r}: there is no key '{text[1:]}' to remove")
            del node[last]
            continue
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise UsageError(f"override {text!r}: '{key}' is not a section")
            node = child
        node[keys[-1]] = value
    return result


def _key_check(file: Path, removed: set[str]) -> Any:
    """The check `yamlfile.parse` runs on every key before building values: unknown keys of the
    schema's sections are refused at once (a megabyte list under a typo costs no time)."""
    from llmkit.yamlfile import FreeSection

    def check(section: tuple[str, ...], key: str) -> None:
        model = _section_model(PipelineConfig, section)
        if model is None or model.model_config.get("extra") != "forbid":
            raise FreeSection  # a value, a list or a component's parameters: any keys
        if ".".join((*section, key)) in removed:
            raise FreeSection
        if key in model.model_fields or (model is DataOptions and key in DATA_ALIASES):
            return
        error = {"type": "extra_forbidden", "loc": (*section, key), "msg": "", "input": None}
        raise UsageError(f"{file}: {_describe(error)}")

    return check


def load(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline file; errors name the file and the field."""
    from llmkit.yamlfile import load_settings

    file = Path(path)
    removed = {o[1:] for o in overrides or [] if o.startswith("~")}
    data = load_settings(file, "pipeline file", _key_check(file, removed))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{file}: a pipeline must be a mapping of sections, got {type(data).__name__}"
        )
    data = apply_overrides(data, overrides or [])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{file}: {_describe(exc.errors()[0])}") from None
    except RecursionError:
        raise UsageError(f"{file}: nested too deeply") from None
    config._source = str(file)
    return config
