"""The sweep room's command, `llmkit sweep`, registered through the same hook as a plugin's."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    """Add `llmkit sweep` (a pipeline over a grid of settings, with a report)."""
    from llmkit.sweep.cli import sweep

    cli.add_command(sweep)
