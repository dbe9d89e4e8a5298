"""The component registry: names -> factories, per kind, with the plugin each came from.

Factories may be given as lazy ``"module:attribute"`` strings so that registering a component
never imports its heavy dependencies (torch); they are imported when the component is used.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmkit.errors import RegistryError
from llmkit.hookspecs import KINDS, Factory


@dataclass
class Component:
    """A registered component: its kind, name, factory (or lazy import path), summary and origin."""

    kind: str
    name: str
    target: Factory | str
    summary: str
    plugin: str
    _resolved: Factory | None = field(default=None, repr=False, compare=False)

    @property
    def factory(self) -> Factory:
        """The callable that builds the component, importing it on first use."""
        if self._resolved is None:
            self._resolved = resolve(self.target, f"{self.kind} '{self.name}'")
        return self._resolved


def resolve(target: Factory | str, what: str) -> Factory:
    """Turn a ``"module:attr.path"`` string into the object it names (callables pass through)."""
    if not isinstance(target, str):
        return target
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise RegistryError(f"{what}: factory {target!r} must look like 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"{what}: cannot import factory {target!r}: {exc}") from exc
    if not callable(obj):
        raise RegistryError(f"{what}: factory {target!r} is not callable")
    return obj


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(unknown_message("component kind", kind, list(KINDS)))


def unknown_message(what: str, name: str, available: list[str]) -> str:
    """`unknown attention 'gqq'; did you mean 'gqa'? available: gqa, mha` (the close match is optional)."""
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    listing = ", ".join(sorted(available)) if available else "(none)"
    return f"unknown {what} '{name}'{hint} available: {listing}"


def first_doc_line(obj: Any) -> str:
    """The first line of an object's docstring, or '' if it has none."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Holds every component by kind and name; plugins fill it through `register` callbacks."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    def add(self, component: Component) -> None:
        """Add one component; a name already taken in its kind is an error naming both plugins."""
        _check_kind(component.kind)
        if not component.name or not isinstance(component.name, str):
            raise RegistryError(
                f"plugin '{component.plugin}': {component.kind} name must be a non-empty string"
            )
        existing = self._components[component.kind].get(component.name)
        if existing is not None:
            raise RegistryError(
                f"duplicate {component.kind} '{component.name}': registered by plugin "
                f"'{existing.plugin}' and again by plugin '{component.plugin}'; rename one of them"
            )
        self._components[component.kind][component.name] = component

    def make_component(
        self, kind: str, name: str, factory: Factory | str, summary: str | None, plugin: str
    ) -> Component:
        """Build a `Component`, checking the factory's form and filling the summary from its docstring."""
        _check_kind(kind)
        if not isinstance(factory, str) and not callable(factory):
            raise RegistryError(
                f"plugin '{plugin}': {kind} '{name}': factory must be callable or a "
                f"'module:attribute' string, got {type(factory).__name__}"
            )
        if isinstance(factory, str) and ":" not in factory:
            raise RegistryError(
                f"plugin '{plugin}': {kind} '{name}': factory {factory!r} must look like "
                "'package.module:Name'"
            )
        if summary is None:
            summary = "" if isinstance(factory, str) else first_doc_line(factory)
        return Component(kind, name, factory, summary, plugin)

    def remove(self, kind: str, name: str) -> None:
        """Drop a component (used to roll back a plugin whose registration failed)."""
        self._components[kind].pop(name, None)

    def get(self, kind: str, name: str) -> Component:
        """The component `name` of `kind`, or an error listing what exists and the closest name."""
        _check_kind(kind)
        try:
            return self._components[kind][name]
        except KeyError:
            raise RegistryError(unknown_message(kind, name, list(self._components[kind]))) from None

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for `kind`."""
        _check_kind(kind)
        return sorted(self._components[kind])

    def __iter__(self) -> Iterator[Component]:
        for kind in KINDS:
            yield from (self._components[kind][n] for n in sorted(self._components[kind]))

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return kind in self._components and name in self._components[kind]
