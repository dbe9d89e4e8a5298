"""The programmatic entry points: build, list and describe components by kind and name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.plugins import get_host

if TYPE_CHECKING:
    from llmkit.params import Description
    from llmkit.registry import Component, Factory


def create(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Build component `name` of `kind`; keyword parameters are validated against its signature.

    Example: ``llmkit.create("optimizer", "lamb", model.parameters(), lr=1e-3)``.
    """
    from llmkit.params import validate

    component = get_host().registry.get(kind, name)
    checked = validate(component, args, kwargs)
    return component.factory(*args, **checked)


def get(kind: str, name: str) -> Component:
    """The registered component `name` of `kind` (its factory, summary and plugin)."""
    return get_host().registry.get(kind, name)


def components(kind: str | None = None) -> list[Component]:
    """Every registered component, or those of one kind, sorted by kind then name."""
    registry = get_host().registry
    if kind is None:
        return list(registry)
    return [registry.get(kind, name) for name in registry.names(kind)]


def describe(kind: str, name: str) -> Description:
    """The summary, origin and parameters (types, defaults, docs) of a component."""
    from llmkit.params import describe as describe_component

    return describe_component(get_host().registry.get(kind, name))


def register(kind: str, name: str, factory: Factory | str, summary: str | None = None) -> None:
    """Register one component from a script or notebook, as the plugin '__main__'."""
    host = get_host()
    plugin = "__main__"
    if plugin not in host.plugins:
        from llmkit.plugins import PluginInfo

        host.plugins[plugin] = PluginInfo(plugin)
    host.registry.add(host.registry.make_component(kind, name, factory, summary, plugin))
    host.plugins[plugin].components.setdefault(kind, []).append(name)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module (with `@hookimpl` functions) without packaging it."""
    return get_host().register_plugin(plugin, name)
