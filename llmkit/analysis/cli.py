"""`llmkit summary` and `llmkit attention`: thin commands over llmkit.analysis."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--batch",
    type=int,
    default=None,
    help="Sequences per step (default: 1, or the pipeline's batch_size).",
)
@click.option(
    "--context",
    type=int,
    default=None,
    help="Tokens per sequence (default: max_positions, or the pipeline's context).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(target: Path, batch: int | None, context: int | None, as_json: bool) -> None:
    """Per-layer parameters, forward FLOPs per token and activation memory of TARGET (a
    checkpoint directory or a pipeline file), with the training-FLOPs estimate 6N + 12LTd."""
    from llmkit.analysis.summary import load_target, summarize, table_lines

    model, default_batch, default_context = load_target(target)
    result = summarize(model, batch or default_batch, context or default_context)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for line in table_lines(result):
        click.echo(line)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", required=True, help="Text whose attention weights to draw.")
@click.option("--layer", type=int, default=None, help="Layer to show (0-based; default: the last).")
@click.option(
    "--head", type=int, default=None, help="One head (0-based); default: a grid of all heads."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("attn.png"),
    show_default=True,
    help="PNG to write.",
)
def attention(
    checkpoint: Path, prompt: str, layer: int | None, head: int | None, output: Path
) -> None:
    """Draw CHECKPOINT's softmax attention weights for a prompt as a heat-map (tokens on both axes)."""
    from llmkit.analysis.attention_maps import draw, prompt_map

    if head is not None and head < 0:
        from llmkit.errors import UsageError

        raise UsageError(f"--head {head} is out of range: heads count from 0")
    amap = prompt_map(checkpoint, prompt, layer)
    path = draw(amap, output, head)
    click.echo(f"attention: layer {amap.layer}, {len(amap.tokens)} tokens -> {path}")
