"""`llmkit data`: prepare token shards, clean to JSONL, print cleaning reports, show a prepared dir."""

from __future__ import annotations

import os
from typing import Any

import click


def _config(config: str | None, **flags: Any) -> Any:
    """Settings from the YAML file (if any), overridden by the flags that were given."""
    from llmkit.data.prepare import PrepareConfig, load_config

    data: dict[str, Any] = load_config(config) if config else {}
    inputs = [*flags.pop("input", ()), *flags.pop("inputs", ())]
    if inputs:
        data["inputs"] = inputs
    for key, value in flags.items():
        if value is None or value == ():
            continue
        data[key] = list(value) if isinstance(value, tuple) else value
    return PrepareConfig.from_mapping(data, config or "options")


def _common(fn: Any) -> Any:
    options = [
        click.argument("inputs", nargs=-1, type=click.Path()),
        click.option("--config", type=click.Path(), help="YAML file with these settings."),
        click.option("--input", "input", multiple=True, help="Input files, globs or directories."),
        click.option(
            "--format",
            type=click.Choice(["text", "jsonl", "csv", "tsv", "parallel"]),
            help="Input format (default text); parallel: 'source<sep>target' lines.",
        ),
        click.option("--field", help="JSONL field / CSV column with the text (default text)."),
        click.option("--label-field", help="JSONL field / CSV column with a label."),
        click.option("--target-field", help="JSONL field / CSV column with a target text."),
        click.option(
            "--unit",
            type=click.Choice(["file", "paragraph", "line"]),
            help="Plain text: a document per file, blank-line paragraph or line.",
        ),
        click.option("--separator", help="Parallel format: separator of the two sides (tab)."),
        click.option("--comment", help="Parallel format: skip lines starting with this."),
        click.option("--subentries", help="Parallel format: aligned sub-entry separator."),
        click.option("--include", multiple=True, help="Only files matching this glob."),
        click.option("--exclude", multiple=True, help="Skip files matching this glob."),
        click.option(
            "--on-error",
            type=click.Choice(["error", "skip"]),
            help="JSONL lines that are not JSON: stop (error) or skip and count.",
        ),
        click.option(
            "--clean",
            help="Comma-separated cleaners in order (see `llmkit components cleaner`); default "
            "nfc,control_chars,missing; 'none' for none.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _clean_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _workers(value: str | None) -> int | None:
    """`--workers` as a number of processes; anything but a whole number >= 1 is a usage error."""
    if value is None:
        return None
    from llmkit.errors import UsageError
    from llmkit.limits import MAX_WORKERS

    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise UsageError(
            f"--workers: expected a whole number of processes from 1 to {MAX_WORKERS}, "
            f"got {value!r}"
        )
    return count


@click.group()
def data() -> None:
    """Data: read, clean, deduplicate and tokenize corpora into token shards."""


@data.command()
@_common
@click.option(
    "--tokenizer",
    help="Tokenizer file or checkpoint dir, cl100k_base/o200k_base, or a registered name ('byte').",
)
@click.option("-o", "--output", type=click.Path(), help="Output directory for shards.")
@click.option("--validation", type=float, help="Fraction of documents for validation (0.01).")
@click.option("--seed", type=int, help="Seed of the train/validation split (0).")
@click.option("--shard-tokens", type=int, help="Tokens per shard, about (100M).")
@click.option("--eos", help="Special token put after every document (default: found).")
@click.option(
    "--workers",
    metavar="N",
    help="Processes that clean and tokenize (default: every core); the output is the same for any.",
)
@click.option("--force", is_flag=True, help="Rebuild even if the output is up to date.")
@click.option("--quiet", is_flag=True, help="Print only the summary line.")
def prepare(
    inputs: tuple[str, ...],
    config: str | None,
    clean: str | None,
    force: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Clean and tokenize INPUTS into memory-mapped token shards with a manifest."""
    from llmkit.data.pipeline import format_report
    from llmkit.data.prepare import prepare as run_prepare

    flags["workers"] = _workers(flags.get("workers"))
    cfg = _config(config, inputs=inputs, clean=_clean_list(clean), **flags)

    if quiet:
        from llmkit.progress import set_quiet

        set_quiet(True)  # no bar either

    def warn(line: str) -> None:
        if quiet:  # otherwise the report printed below holds the warning
            click.echo(line, err=True)

    from llmkit.data.prepare_ranks import prepare_across_ranks, several_ranks

    if several_ranks():  # under torchrun: each rank tokenizes its share, rank 0 reports
        result = prepare_across_ranks(cfg, force=force, warn=warn)
        if int(os.environ.get("RANK", "0")) != 0:
            return
    else:
        result = run_prepare(cfg, force=force, warn=warn)
    m = result.manifest
    if result.skipped:
        click.echo(
            f"{result.out_dir}: up to date (same inputs, tokenizer and config); nothing to do"
        )
        return
    if not quiet:
        click.echo(format_report(result.report))
    splits = m["splits"]
    click.echo(
        f"wrote {result.out_dir}: train {splits['train']['tokens']} tokens / "
        f"{splits['train']['documents']} docs, validation {splits['validation']['tokens']} tokens / "
        f"{splits['validation']['documents']} docs ({m['dtype']}, {m['seconds']:.1f}s)"
    )


@data.command(name="clean")
@_common
@click.option("-o", "--output", type=click.Path(), required=True, help="Output JSONL file.")
@click.option("--quiet", is_flag=True, help="Print only the summary line.")
def clean_command(
    inputs: tuple[str, ...],
    config: str | None,
    clean: str | None,
    output: str,
    quiet: bool,
    **flags: Any,
) -> None:
    """Clean INPUTS and write the kept records as JSONL (report beside it)."""
    from llmkit.data.pipeline import format_report
    from llmkit.data.prepare import clean as run_clean

    cfg = _config(config, inputs=inputs, clean=_clean_list(clean), **flags)
    report = run_clean(cfg, output)
    if not quiet:
        click.echo(format_report(report))
    click.echo(f"wrote {output}: {report['documents']} records")


@data.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-examples", is_flag=True, help="Leave out the examples of removals.")
def report(path: str, as_json: bool, no_examples: bool) -> None:
    """Print the cleaning report at PATH (a report file, or a prepared directory)."""
    import json

    from llmkit.data.pipeline import format_report, load_report

    rep = load_report(path)
    if as_json:
        click.echo(json.dumps(rep, indent=2, ensure_ascii=False))
    else:
        click.echo(format_report(rep, examples=not no_examples))


@data.command()
@click.argument("path", type=click.Path())
@click.option("--show", type=int, default=0, help="Decode and print the first N train documents.")
def info(path: str, show: int) -> None:
    """Summarise a prepared directory: splits, shards, tokenizer, inputs."""
    from llmkit.data.shards import TokenShards, read_manifest

    m = read_manifest(path)
    click.echo(f"{path}: {m['dtype']} tokens, vocab {m['vocab_size']}, eos id {m['eos_id']}")
    click.echo(f"tokenizer: {m['tokenizer']['spec']} (sha256 {m['tokenizer']['sha256'][:12]})")
    click.echo(f"inputs: {len(m['inputs'])} files, {sum(i['bytes'] for i in m['inputs'])} bytes")
    for name, split in m["splits"].items():
        click.echo(
            f"{name}: {split['tokens']} tokens, {split['documents']} documents, "
            f"{len(split['shards'])} shards"
        )
    if show:
        from llmkit.data.prepare import load_tokenizer

        tok = load_tokenizer(m["tokenizer"]["spec"])
        shards = TokenShards(path, "train")
        for i in range(min(show, shards.num_documents)):
            click.echo(f"--- document {i}")
            click.echo(tok.decode(shards.document(i).tolist()))
