"""The `llmkit` command line: a thin Click shell over the library; plugins add their own commands.

Errors become one line on stderr and an exit code (2 for bad input, 1 for failures during work);
`--debug` (or LLMKIT_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from llmkit.errors import LlmkitError, UsageError

ENV_DEBUG = "LLMKIT_DEBUG"
ENV_THP = "THP_MEM_ALLOC_ENABLE"


class OneLineUsageError(click.UsageError):
    """Click's usage error as one line (the message and where the help is), not three."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=True)


def _one_line(exc: click.UsageError) -> OneLineUsageError:
    return OneLineUsageError(exc.format_message(), exc.ctx)  # exit code 2, as click's


class LlmkitGroup(click.Group):
    """A group that loads plugin commands only when a command is looked up or listed.

    Listing (`llmkit --help`) loads llmkit's own plugins only and names the third-party ones from
    their entry-point metadata, so a slow or broken plugin cannot slow or break the help; a
    command that is not llmkit's own loads every plugin to find it.
    """

    _tiers: frozenset[str] = frozenset()

    def _add_plugin_commands(self, third_party: bool = True) -> None:
        tier = "all" if third_party else "builtin"
        if "all" in self._tiers or tier in self._tiers:
            return
        self._tiers = self._tiers | {tier}
        from llmkit.plugins import get_host

        get_host(third_party).add_commands(self, third_party)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        for third_party in (False, True):
            if command is None:
                self._add_plugin_commands(third_party)
                command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(third_party=False)
        return super().list_commands(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        if "all" in self._tiers:
            return
        from llmkit.plugins import third_party_names

        names = third_party_names()
        if names:
            with formatter.section("Plugins"):
                formatter.write_text(
                    f"{', '.join(names)} may add commands (not loaded for this help); "
                    "`llmkit plugins` lists them with their import times"
                )

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except LlmkitError as exc:
            _fail(ctx, exc, exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            _fail(ctx, exc, 1)
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":  # a Rust panic, which PyO3 raises
                raise
            _fail(ctx, exc, 1)


def _debug_enabled(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or os.environ.get(ENV_DEBUG, "") not in ("", "0")


def _fail(ctx: click.Context, exc: BaseException, code: int) -> None:
    if _debug_enabled(ctx):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    message = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, LlmkitError | OSError):
        message = f"{type(exc).__name__}: {message}"
    click.echo(f"Error: {message.splitlines()[0]}", err=True)
    if not _debug_enabled(ctx) and not isinstance(exc, LlmkitError | OSError):
        click.echo("(run with --debug for the traceback)", err=True)
    ctx.exit(code)


@click.group(cls=LlmkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=None, package_name="llmkit", message="llmkit %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no progress lines.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """llmkit: tokenizers, models, data and training for Transformer language models."""
    ctx.obj = {"debug": debug}
    from llmkit.progress import set_quiet

    set_quiet(True if quiet else None)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: version, origin, import time, components and commands they add, and
    errors (a plugin that failed, exited or tried to replace a built-in command)."""
    from llmkit.plugins import get_host

    host = get_host()
    cli._add_plugin_commands()
    infos = sorted(host.plugins.values(), key=lambda i: (not i.builtin, i.name))
    if as_json:
        import json

        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    rows = []
    for info in infos:
        adds = ", ".join(f"{len(v)} {k}" for k, v in sorted(info.components.items()))
        if info.commands:
            adds = ", ".join(filter(None, [adds, "commands: " + " ".join(info.commands)]))
        status = f"ERROR {info.error}" if info.error else (adds or "-")
        origin = "built-in" if info.builtin else (info.distribution or "local")
        took = f"{info.load_seconds:.2f}s" if info.load_seconds is not None else "-"
        rows.append((info.name, info.version or "-", origin, took, status))
    _table(("plugin", "version", "from", "import", "adds"), rows)


@cli.command()
@click.argument("kind", required=False)
def components(kind: str | None) -> None:
    """List registered components (all, or of one KIND): name, kind, summary, origin."""
    import llmkit

    items = llmkit.components(kind)
    _table(
        ("name", "kind", "summary", "plugin"),
        [(c.name, c.kind, c.summary, c.plugin) for c in items],
    )


@cli.command()
@click.argument("kind")
@click.argument("name")
def describe(kind: str, name: str) -> None:
    """Show a component's summary, origin and parameters with types, defaults and docs."""
    import llmkit

    d = llmkit.describe(kind, name)
    click.echo(f"{d.kind} '{d.name}': {d.summary}")
    click.echo(f"plugin: {d.plugin}    factory: {d.target}")
    if d.params:
        click.echo("")
        _table(
            ("parameter", "type", "default", "doc"),
            [
                (p.name, p.type, "(required)" if p.required else repr(p.default), p.doc)
                for p in d.params
            ],
        )


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option(
    "--stage",
    "stages",
    multiple=True,
    type=click.Choice(["tokenizer", "data", "train", "eval"]),
    help="Run only these stages (repeatable); default: every stage the file has.",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Load train.init_from without checking its files against manifest.json (edited weights).",
)
def run(
    pipeline: Path, overrides: tuple[str, ...], stages: tuple[str, ...], no_verify: bool
) -> None:
    """Run PIPELINE (a YAML file); OVERRIDES are KEY=VALUE (train.max_steps=10) or ~KEY (~eval
    removes a key or a whole section)."""
    from llmkit.pipeline import config, runner

    cfg = config.load(pipeline, list(overrides))
    runner.check(cfg)
    base = pipeline.resolve().parent
    summary = runner.run(cfg, base, list(stages) or None, log=click.echo, verify=not no_verify)
    if runner.is_main_process():  # under torchrun, rank 0 alone reports
        click.echo(f"done: {summary['output']}")


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
def validate(pipeline: Path, overrides: tuple[str, ...]) -> None:
    """Check PIPELINE's keys, component names and parameters without running it."""
    from llmkit.pipeline import config, runner

    plan = runner.check(config.load(pipeline, list(overrides)))
    click.echo(f"{pipeline}: valid")
    for line in plan:
        click.echo(f"  {line}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as aligned columns; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, str(row[-1])]).rstrip())


def tune_process() -> None:
    """Back torch's large CPU tensors with transparent huge pages on Linux, unless the user chose.

    A CPU training step allocates fresh tokens x vocab tensors (logits, log-softmax, their
    gradients); faulting those in 4 KiB at a time took 5-20% of a small GPT's step here
    (docs/benchmarks.md). torch reads the variable at allocation time, so setting it is enough.
    """
    if sys.platform.startswith("linux"):
        os.environ.setdefault(ENV_THP, "1")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    tune_process()
    try:
        cli.main(args=argv, prog_name="llmkit", standalone_mode=True)
    except UsageError as exc:  # errors raised while building the command list
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
