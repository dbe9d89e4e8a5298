"""`llmkit sweep`: a thin command over llmkit.sweep (grid, runner, report)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option(
    "--grid",
    "grids",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A dotted pipeline key and its values (YAML; repeatable: every combination runs). A "
    "mapping value sets several keys: 'train.model={attention: gqa, n_kv_heads: 2},{attention: linear}'.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sweep directory (one run directory per combination); default: the pipeline's output + '-sweep'.",
)
def sweep(
    pipeline: Path, overrides: tuple[str, ...], grids: tuple[str, ...], output: Path | None
) -> None:
    """Run PIPELINE once per combination of the --grid values (OVERRIDES apply to every run), then
    write DIR/sweep.csv, DIR/sweep.md and DIR/sweep.png. Finished runs are skipped; killed runs resume."""
    from llmkit.errors import WorkError
    from llmkit.pipeline import config
    from llmkit.sweep import grid, report, runner

    axes = grid.parse_grid(grids)
    base = config.load(pipeline, list(overrides))
    out_dir = output or Path(f"{base.output.rstrip('/')}-sweep")
    runs = runner.plan(pipeline, list(overrides), axes, out_dir)
    click.echo(f"sweep: {len(runs)} runs -> {out_dir}")
    runner.run_all(pipeline, runs, runner.shares_preparation(axes), log=click.echo)
    for path in report.write_report(out_dir, runs, axes):
        click.echo(f"wrote {path}")
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        raise WorkError(
            f"{len(failed)} of {len(runs)} runs failed ({', '.join(r.combination.name for r in failed)}); "
            "see sweep.md"
        )
