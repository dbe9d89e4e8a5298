"""The analysis room's commands, registered through the same hook as a plugin's."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    """Add `llmkit summary` (per-layer cost) and `llmkit attention` (attention maps)."""
    from llmkit.analysis.cli import attention, summary

    cli.add_command(summary)
    cli.add_command(attention)
