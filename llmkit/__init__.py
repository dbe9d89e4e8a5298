"""llmkit: a plugin-based toolkit for Transformer language models with a Rust tokenizer.

Importing llmkit is cheap: torch and the components load when a component is used.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import Any

from llmkit.api import components, create, describe, get, register, register_plugin
from llmkit.errors import LlmkitError, RegistryError, UsageError, WorkError
from llmkit.hookspecs import KINDS, hookimpl

try:
    __version__ = _metadata.version("llmkit")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Heavy entry points, imported on first access: name -> "module:attribute".
_LAZY: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'llmkit' has no attribute '{name}'")
    import importlib

    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


__all__ = [
    "KINDS",
    "LlmkitError",
    "RegistryError",
    "UsageError",
    "WorkError",
    "__version__",
    "components",
    "create",
    "describe",
    "get",
    "hookimpl",
    "register",
    "register_plugin",
]
