"""llmkit: a plugin-based toolkit for Transformer language models with a Rust tokenizer.

Importing llmkit is cheap: the plugin machinery, torch and the components load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.errors import LlmkitError, RegistryError, UsageError, WorkError

if TYPE_CHECKING:
    from llmkit.api import components, create, describe, get, register, register_plugin
    from llmkit.hookspecs import KINDS, hookimpl
    from llmkit.inference.generation import generate
    from llmkit.storage.checkpoint import load_model, save_model
    from llmkit.storage.tokenizer_files import load_tokenizer

# Attributes imported on first access: name -> "module:attribute".
_LAZY: dict[str, str] = {
    "components": "llmkit.api:components",
    "create": "llmkit.api:create",
    "describe": "llmkit.api:describe",
    "get": "llmkit.api:get",
    "register": "llmkit.api:register",
    "register_plugin": "llmkit.api:register_plugin",
    "KINDS": "llmkit.hookspecs:KINDS",
    "hookimpl": "llmkit.hookspecs:hookimpl",
    "load_model": "llmkit.storage.checkpoint:load_model",
    "load_tokenizer": "llmkit.storage.tokenizer_files:load_tokenizer",
    "save_model": "llmkit.storage.checkpoint:save_model",
    "generate": "llmkit.inference.generation:generate",
}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llmkit")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        import importlib

        module_name, _, attr = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module_name), attr)
    else:
        raise AttributeError(f"module 'llmkit' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "__version__"])


__all__ = [
    "KINDS",
    "LlmkitError",
    "RegistryError",
    "UsageError",
    "WorkError",
    "components",
    "create",
    "describe",
    "generate",
    "get",
    "hookimpl",
    "load_model",
    "load_tokenizer",
    "register",
    "register_plugin",
    "save_model",
]
