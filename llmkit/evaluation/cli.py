"""`llmkit eval`: evaluate a checkpoint (language modelling, classification, generation)."""

from __future__ import annotations

import click


@click.command(name="eval")
def evaluate() -> None:
    """Evaluate a checkpoint (work in progress)."""
    raise click.UsageError("llmkit eval is not implemented yet")
