"""A CLI command added by the plugin; it imports only click at module level."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("example-jaccard")
@click.argument("hyp", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ref", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def example_jaccard(hyp: Path, ref: Path) -> None:
    """Mean token-set Jaccard similarity between HYP and REF, line by line."""
    import llmkit

    predictions = hyp.read_text(encoding="utf-8").splitlines()
    targets = ref.read_text(encoding="utf-8").splitlines()
    if len(predictions) != len(targets):
        raise llmkit.UsageError(
            f"{hyp} has {len(predictions)} lines but {ref} has {len(targets)}; they must pair up"
        )
    metric = llmkit.create("metric", "jaccard")
    metric.update(predictions, targets)
    click.echo(f"jaccard = {metric.compute():.4f} over {len(targets)} lines")
