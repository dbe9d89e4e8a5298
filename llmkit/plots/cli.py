"""`llmkit plot`: the training curves of one or more runs in one PNG."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out", default="curves.png", show_default=True,
    type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write.",
)  # fmt: skip
@click.option(
    "--x", "x", type=click.Choice(["step", "tokens"]), default="step", show_default=True,
    help="The x axis: optimizer step or tokens seen.",
)  # fmt: skip
@click.option(
    "--label", "labels", multiple=True,
    help="A legend label per run, in order (default: the run directories' names).",
)  # fmt: skip
@click.option("--title", default=None, help="The figure's title.")
def plot(
    runs: tuple[Path, ...], out: Path, x: str, labels: tuple[str, ...], title: str | None
) -> None:
    """Draw training loss, eval loss, learning rate and tokens/s of RUNS (run directories with a
    metrics.jsonl), overlaid and labelled, against step or tokens seen."""
    from llmkit.plots.curves import plot_runs

    path = plot_runs(list(runs), out, list(labels) or None, x=x, title=title)  # type: ignore[arg-type]
    click.echo(f"wrote {path}")
