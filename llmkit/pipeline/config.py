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

from llmkit.errors import UsageError


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


class TokenizerSection(_Section):
    """Where the tokenizer comes from: a file, a registered name, or training on files."""

    path: str | None = None
    name: str | None = None
    type: Literal["bpe", "wordpiece"] = "bpe"
    train_files: list[str] = Field(default_factory=list)
    vocab_size: int = Field(8192, ge=1)
    pattern: str = "gpt2"
    special_tokens: list[str] = Field(default_factory=lambda: ["<|endoftext|>"])
    min_frequency: int = Field(2, ge=1)
    exclude: list[str] = Field(default_factory=list)  # glob patterns of train_files to skip
    limit_alphabet: int | None = Field(None, ge=1)  # wordpiece: keep the N most frequent chars

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


class TrainSection(_Section):
    """The training stage: objective, model, optimizer, schedule, loss, batches and cadence."""

    objective: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="causal_lm"))
    model: ComponentSpec | None = None
    init_from: str | None = None
    teacher: str | None = None  # a checkpoint directory to distill from (objective distill)
    optimizer: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="adamw"))
    scheduler: ComponentSpec | None = None
    loss: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="cross_entropy"))
    context: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    max_steps: int = Field(100, ge=1)
    grad_accum: int = Field(1, ge=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    device: str = "auto"
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(20, ge=1)
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True
    max_length: int = Field(128, ge=1)
    label_field: str = "label"
    #: Where the run's scalars go: `[jsonl, tensorboard]`, each a name or {name, ...params}.
    loggers: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="jsonl")])

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
    batches: int = Field(50, ge=1)
    batch_size: int | None = Field(None, ge=1)


class PipelineConfig(_Section):
    """A whole pipeline: the stages present run in order tokenizer -> data -> train -> eval."""

    name: str = "run"
    output: str = Field("runs/run", min_length=1)
    seed: int = 0
    tokenizer: TokenizerSection | None = None
    data: dict[str, Any] | None = None
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


def _field_names(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `path` inside `model`, for did-you-mean hints."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if hasattr(a, "model_fields")), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        allowed = _field_names(PipelineConfig, loc[:-1])
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{dotted}'{hint} (allowed here: {', '.join(allowed)})"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    return f"{dotted or 'top level'}: {message[0].lower() + message[1:]}, got {error['input']!r}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override {text!r}: expected KEY=VALUE, e.g. train.max_steps=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
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


def load(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline file; errors name the file and the field."""
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{file}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: cannot read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{file}:{where}: invalid YAML: {problem}") from None
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
    config._source = str(file)
    return config
