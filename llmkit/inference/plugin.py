"""The inference room's commands (import, export, generate), registered through the hooks."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    """`llmkit import hf|gguf`, `llmkit export hf` and `llmkit generate`."""
    from llmkit.inference.cli import add_commands

    add_commands(cli)
