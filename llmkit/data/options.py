"""The typed schema of the data settings: a pipeline's `data` section and `llmkit data --config`.

One pydantic model, so that `llmkit validate` checks every key and type of the data section before
anything runs (`data.validation: half` is one line naming the field, exit 2), and the data commands
check their YAML files the same way. `PrepareConfig` (llmkit.data.prepare) is built from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from llmkit.limits import (
    MAX_BATCH_SIZE,
    MAX_CHUNK_CHARS,
    MAX_SEED,
    MAX_SHARD_TOKENS,
    MAX_WORKERS,
    Int,
    Real,
)

FORMATS = ("text", "jsonl", "csv", "tsv", "parallel")
UNITS = ("file", "paragraph", "line")
ALIASES = {"input": "inputs", "out": "output", "out_dir": "output", "val": "validation"}
LISTS = ("inputs", "include", "exclude")


class DataOptions(BaseModel):
    """Every data setting with its type and bounds; the keys of `llmkit data prepare --config`."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = []
    format: str = "text"
    field: str = "text"
    label_field: str | None = None
    target_field: str | None = None
    unit: str = "file"
    include: list[str] = []
    exclude: list[str] = []
    delimiter: str | None = None
    separator: str = "\t"
    comment: str | None = None
    subentries: str | None = None
    on_error: str = "error"
    clean: list[str | dict[str, dict[str, Any] | None]] = []
    tokenizer: str | None = None  # in a pipeline, the tokenizer stage's file
    output: str | None = None  # in a pipeline, `output`/data
    validation: Real(0.0, 1.0) = 0.01  # type: ignore[valid-type]
    seed: Int(0, MAX_SEED) | None = None  # type: ignore[valid-type]
    shard_tokens: Int(1, MAX_SHARD_TOKENS) = 100_000_000  # type: ignore[valid-type]
    eos: str | None = None
    chunk_chars: Int(1, MAX_CHUNK_CHARS) = 4_000_000  # type: ignore[valid-type]
    batch_size: Int(1, MAX_BATCH_SIZE) = 512  # type: ignore[valid-type]
    workers: Int(1, MAX_WORKERS) | None = None  # type: ignore[valid-type]  # None: every core

    @model_validator(mode="before")
    @classmethod
    def _aliases_and_lists(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = ALIASES.get(str(key), str(key))
            if name in out:
                raise ValueError(f"'{key}' and '{name}' name the same setting; keep one")
            if name in LISTS and isinstance(value, str):
                value = [value]
            elif name == "clean" and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            out[name] = value
        return out

    @field_validator("format", "unit", "on_error")
    @classmethod
    def _one_of(cls, value: str, info: Any) -> str:
        """A choice field's value is one of its choices (`info`: pydantic's ValidationInfo)."""
        choices = {"format": FORMATS, "unit": UNITS, "on_error": ("error", "skip")}[info.field_name]
        if value not in choices:
            listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
            raise ValueError(f"{info.field_name} '{value}' unknown; use {listed}")
        return value

    @field_validator("validation")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if value >= 1.0:
            raise ValueError("validation must be a fraction in [0, 1)")
        return value

    @field_validator("clean")
    @classmethod
    def _steps(cls, steps: list[Any]) -> list[Any]:
        for step in steps:
            if isinstance(step, dict) and len(step) != 1:
                raise ValueError(f"each step is a name or {{name: {{params}}}}, got {step!r}")
        return steps

    def to_mapping(self) -> dict[str, Any]:
        """The settings given (defaults and nulls left out), by their canonical key names."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


def describe_error(exc: ValidationError, prefix: str = "") -> str:
    """The first error of `exc` as one line: `field: message, got value`."""
    error = exc.errors()[0]
    dotted = ".".join(str(p) for p in (*([prefix] if prefix else []), *error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else message
    if error["type"] == "extra_forbidden":
        return f"unknown key '{dotted}'"
    shown = repr(error["input"])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{dotted or 'data'}: {message}, got {shown}"
