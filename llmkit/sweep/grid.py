"""A sweep's grid: `--grid KEY=V1,V2,...` axes, their combinations, run names and overrides.

Values are YAML, split at top-level commas (a comma inside `{...}`, `[...]` or quotes belongs to
the value). A value that is a mapping sets several keys under KEY at once, so one axis can vary
linked settings: `--grid 'train.model={attention: gqa, n_kv_heads: 2},{attention: linear}'`.
Every combination becomes the pipeline's own dotted overrides (llmkit.pipeline.config).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from llmkit.errors import UsageError

#: Keys the sweep sets itself for every run.
RESERVED = ("output",)


@dataclass(frozen=True)
class Axis:
    """One grid key and the values it takes."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Combination:
    """One run of the grid: a value per axis, its directory name and its overrides."""

    values: tuple[tuple[str, Any], ...]  # (key, value) per axis, in axis order
    name: str

    @property
    def overrides(self) -> list[str]:
        """The dotted `key=value` overrides that make this run (mappings set each leaf)."""
        result: list[str] = []
        for key, value in self.values:
            result.extend(leaf_overrides(key, value))
        return result


def split_values(text: str) -> list[str]:
    """Split `a,{b: 1, c: 2},[3, 4]` at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_axis(text: str) -> Axis:
    """`KEY=V1,V2,...` -> Axis; one-line errors for a missing `=`, an empty or repeated value."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
        raise UsageError(
            f"--grid {text!r}: expected KEY=V1,V2,... with a dotted pipeline key, "
            "e.g. train.model.attention=sdpa,gqa"
        )
    if key.split(".")[0] in RESERVED:
        raise UsageError(f"--grid {key}: the sweep sets '{key}' itself (-o DIR); vary another key")
    values = []
    for part in split_values(raw):
        if not part:
            raise UsageError(f"--grid {text!r}: an empty value; write KEY=V1,V2 without ',,'")
        try:
            values.append(yaml.safe_load(part))
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(
                f"--grid {key}: value {part!r} is not valid YAML ({problem})"
            ) from None
    texts = [json.dumps(v, sort_keys=True) for v in values]
    repeated = next(
        (p for p, t in zip(split_values(raw), texts, strict=True) if texts.count(t) > 1), None
    )
    if repeated is not None:
        raise UsageError(f"--grid {key}: value {repeated!r} is given twice")
    return Axis(key, tuple(values))


def parse_grid(texts: list[str] | tuple[str, ...]) -> list[Axis]:
    """Every `--grid` option as an axis; a key given twice (or inside another) is an error."""
    if not texts:
        raise UsageError("sweep: give at least one --grid KEY=V1,V2,...")
    axes = [parse_axis(t) for t in texts]
    keys = [a.key for a in axes]
    for a, b in itertools.permutations(keys, 2):
        if a == b or b.startswith(a + "."):
            raise UsageError(f"--grid {b}: also set by --grid {a}; give each key once")
    return axes


def leaf_overrides(key: str, value: Any) -> list[str]:
    """`key=value` overrides in the pipeline's syntax; a mapping value sets each of its leaves."""
    if isinstance(value, dict) and value:
        result: list[str] = []
        for sub, inner in value.items():
            result.extend(leaf_overrides(f"{key}.{sub}", inner))
        return result
    return [f"{key}={json.dumps(value)}"]


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "_".join(f"{k}-{_text(v)}" for k, v in value.items()) or "empty"
    if isinstance(value, list):
        return "-".join(_text(v) for v in value) or "empty"
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def value_text(value: Any, nested: bool = False) -> str:
    """A value as shown in the report: scalars as they are, mappings as `k: v` pairs."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}: {value_text(v, True)}" for k, v in value.items())
        return "{" + text + "}" if nested else text
    return _text(value)


def _leaves(value: dict[str, Any]) -> list[tuple[str, Any]]:
    """(last key, value) of each leaf of a nested mapping, in order."""
    result: list[tuple[str, Any]] = []
    for key, inner in value.items():
        result.extend(_leaves(inner) if isinstance(inner, dict) and inner else [(key, inner)])
    return result


def _safe(text: str) -> str:
    return re.sub(r"[^\w.+-]+", "-", text).strip("-") or "x"


def combinations(axes: list[Axis]) -> list[Combination]:
    """Every combination of the axes' values (the first axis varies slowest), uniquely named.

    A run is named from its varied values (`attention-gqa_n_kv_heads-2`): the last part of each
    key and its value; keys whose last parts clash are named in full.
    """
    short = [a.key.rsplit(".", 1)[-1] for a in axes]
    labels = [a.key if short.count(s) > 1 else s for a, s in zip(axes, short, strict=True)]
    result = []
    for values in itertools.product(*(a.values for a in axes)):
        parts: list[str] = []
        for label, value in zip(labels, values, strict=True):
            pairs = _leaves(value) if isinstance(value, dict) else [(label, value)]
            parts.extend(f"{_safe(str(k))}-{_safe(_text(v))}" for k, v in pairs)
        result.append(
            Combination(
                tuple((a.key, v) for a, v in zip(axes, values, strict=True)), "_".join(parts)
            )
        )
    names = [c.name for c in result]
    if len(set(names)) != len(names):  # values that differ only in characters a name drops
        result = [Combination(c.values, f"{i:03d}-{c.name}") for i, c in enumerate(result)]
    return result
