"""Build a model part (norm, MLP, position scheme) from the registry, so a plugin's part works like a built-in."""

from __future__ import annotations

from typing import Any, TypeVar

from llmkit.errors import RegistryError, UsageError

T = TypeVar("T")


def build_part(kind: str, name: str, base: type[T], *args: Any, **kwargs: Any) -> T:
    """Component `name` of `kind` built with the model's arguments; it must be an instance of `base`.

    An unknown name is a UsageError listing the registered names and the closest one.
    """
    from llmkit.api import create

    try:
        part = create(kind, name, *args, **kwargs)
    except RegistryError as exc:
        raise UsageError(f"{kind}: {exc}") from None
    if not isinstance(part, base):
        raise UsageError(
            f"{kind} '{name}': its factory returned {type(part).__name__}, not a "
            f"{base.__module__}.{base.__qualname__}; see the {kind} contract in docs/plugins.md"
        )
    return part
