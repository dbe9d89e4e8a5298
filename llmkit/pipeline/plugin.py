"""The pipeline room's commands: `llmkit eval`, registered through the same hook as a plugin's."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    """Add `llmkit eval` (a checkpoint evaluated by its objective's own evaluation)."""
    from llmkit.pipeline.eval_cli import evaluate

    cli.add_command(evaluate)
