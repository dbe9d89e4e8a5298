"""The plots room's command, `llmkit plot`, registered through the same hook as a plugin's."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    """Add `llmkit plot` (training curves of one or more runs)."""
    from llmkit.plots.cli import plot

    cli.add_command(plot)
