"""Parameter validation and description, read from a factory's own typed signature.

A plugin author writes a typed function or class; llmkit checks keyword parameters against it with
pydantic and reports problems as `optimizer 'lamb': lr: expected a number, got 'fast'`.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any

from llmkit.errors import RegistryError
from llmkit.registry import Component, unknown_message

#: pydantic error types as the phrase llmkit's messages use.
EXPECTED = {
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "missing": "missing required parameter",
}


@dataclass(frozen=True)
class Param:
    """One parameter of a component: its name, type as written, default and documentation."""

    name: str
    type: str
    default: Any
    required: bool
    doc: str


@dataclass(frozen=True)
class Description:
    """Everything `llmkit describe` shows about a component."""

    kind: str
    name: str
    summary: str
    plugin: str
    target: str
    doc: str
    params: tuple[Param, ...]


def _signature(factory: Any) -> inspect.Signature:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return inspect.Signature()


def _type_hints(factory: Any) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


def _config_params(sig: inspect.Signature) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in sig.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _format_error(error: Any) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "literal_error":
        phrase = f"expected one of {error.get('ctx', {}).get('expected', '')}"
    else:
        phrase = EXPECTED.get(kind) or str(error.get("msg", "invalid value"))
        phrase = phrase[0].lower() + phrase[1:] if phrase else phrase
    if kind == "missing":
        return f"{loc}: {phrase}"
    return f"{loc}: {phrase}, got {error.get('input')!r}"


def validate(component: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check `kwargs` against the factory's signature and types; return them coerced to those types.

    Positional arguments are runtime objects (parameters to optimise, a model) and pass through.
    """
    what = f"{component.kind} '{component.name}'"
    factory = component.factory
    sig = _signature(factory)
    params = _config_params(sig)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    positional = list(params)[: len(args)]
    for key in kwargs:
        if key in positional:
            raise RegistryError(f"{what}: {key}: given both positionally and by name")
        if key not in params and not accepts_any:
            raise RegistryError(f"{what}: {unknown_message('parameter', key, list(params))}")
    hints = _type_hints(factory)
    fields = {
        key: (hints.get(key, Any), ...)
        for key in kwargs
        if key in params and hints.get(key, Any) is not Any
    }
    checked = dict(kwargs)
    if fields:
        import pydantic

        model = pydantic.create_model(  # type: ignore[call-overload]
            f"{component.kind}_{component.name}_params",
            __config__=pydantic.ConfigDict(arbitrary_types_allowed=True),
            **fields,
        )
        try:
            validated = model(**{key: kwargs[key] for key in fields})
        except pydantic.ValidationError as exc:
            problems = "; ".join(_format_error(e) for e in exc.errors())
            raise RegistryError(f"{what}: {problems}") from None
        checked.update({key: getattr(validated, key) for key in fields})
    try:
        sig.bind(*args, **checked)
    except TypeError as exc:
        missing = re.search(r"missing a required argument: '(\w+)'", str(exc))
        detail = f"{missing.group(1)}: missing required parameter" if missing else str(exc)
        raise RegistryError(f"{what}: {detail}") from None
    return checked


def _param_docs(factory: Any) -> dict[str, str]:
    """Parameter docs from a Google-style ``Args:`` section of the factory's docstring(s)."""
    docs: dict[str, str] = {}
    sources = [inspect.getdoc(factory) or ""]
    if inspect.isclass(factory):
        sources.append(inspect.getdoc(factory.__init__) or "")
    for text in sources:
        in_args = False
        current: str | None = None
        for line in text.splitlines():
            stripped = line.strip()
            if stripped in ("Args:", "Arguments:", "Parameters:"):
                in_args = True
                continue
            if not in_args:
                continue
            if stripped.endswith(":") and " " not in stripped and not line.startswith(" "):
                break
            match = re.match(r"^\s{2,}(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if match and (current is None or len(line) - len(line.lstrip()) <= 4):
                current = match.group(1).lstrip("*")
                docs[current] = match.group(2).strip()
            elif current and stripped:
                docs[current] = f"{docs[current]} {stripped}".strip()
            elif not line.startswith(" ") and stripped:
                break
    return docs


def _type_text(param: inspect.Parameter) -> str:
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def describe(component: Component) -> Description:
    """The parameters (types, defaults, docs) and documentation of a component."""
    factory = component.factory
    params = _config_params(_signature(factory))
    docs = _param_docs(factory)
    doc = inspect.getdoc(factory) or ""
    target = (
        component.target
        if isinstance(component.target, str)
        else (f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}")
    )
    return Description(
        kind=component.kind,
        name=component.name,
        summary=component.summary or (doc.splitlines()[0] if doc else ""),
        plugin=component.plugin,
        target=target,
        doc=doc,
        params=tuple(
            Param(
                name=name,
                type=_type_text(p),
                default=None if p.default is inspect.Parameter.empty else p.default,
                required=p.default is inspect.Parameter.empty,
                doc=docs.get(name, ""),
            )
            for name, p in params.items()
        ),
    )
