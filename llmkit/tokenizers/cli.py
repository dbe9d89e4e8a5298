"""`llmkit tokenizer train|encode|info`: train, run and inspect tokenizers from the shell.

Only click is imported at module level; tokenizers load inside the commands.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from llmkit.errors import UsageError


@click.group()
def tokenizer() -> None:
    """Train, run and inspect tokenizers (byte-level BPE, WordPiece, byte, char)."""


@tokenizer.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to save."
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["bpe", "wordpiece", "char", "byte"]),
    default="bpe",
    show_default=True,
)
@click.option("--vocab-size", type=int, default=8192, show_default=True)
@click.option(
    "--pattern",
    default="gpt2",
    show_default=True,
    help="BPE split pattern: gpt2, cl100k, o200k or a regex.",
)
@click.option("--special-token", "special_tokens", multiple=True, help="Repeat for several.")
@click.option("--min-frequency", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="Counting threads (default: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def train(
    files: tuple[str, ...],
    output: str,
    kind: str,
    vocab_size: int,
    pattern: str,
    special_tokens: tuple[str, ...],
    min_frequency: int,
    threads: int | None,
    quiet: bool,
) -> None:
    """Train a tokenizer on FILES (names, globs such as 'docs/**/*.md', or directories; .gz
    decompressed) and save it."""
    from llmkit.tokenizers.corpus import expand_corpus

    start = time.perf_counter()
    paths = expand_corpus(files, texts_hint=False)
    if kind == "bpe":
        from llmkit.tokenizers.bpe import BPETokenizer

        tok = BPETokenizer.train(
            paths,
            vocab_size=vocab_size,
            pattern=pattern,
            special_tokens=list(special_tokens),
            min_frequency=min_frequency,
            show_progress=not quiet,
            threads=threads,
        )
        stats = tok.last_train_stats or {}
        if stats.get("invalid_utf8_lines"):
            click.echo(
                f"warning: {stats['invalid_utf8_lines']} line(s) held invalid UTF-8; "
                "the bad bytes were replaced by U+FFFD",
                err=True,
            )
    elif kind == "wordpiece":
        from llmkit.tokenizers.wordpiece import DEFAULT_SPECIAL_TOKENS, WordPieceTokenizer

        # --special-token adds to BERT's [PAD] [UNK] [CLS] [SEP] [MASK], which WordPiece needs.
        specials = list(dict.fromkeys([*DEFAULT_SPECIAL_TOKENS, *special_tokens]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            tok = WordPieceTokenizer.train(  # type: ignore[assignment]
                paths, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials
            )
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
    elif kind == "char":
        from llmkit.tokenizers.simple import CharTokenizer

        tok = CharTokenizer.train(  # type: ignore[assignment]
            paths, vocab_size=vocab_size, special_tokens=list(special_tokens)
        )
    else:
        from llmkit.tokenizers.simple import ByteTokenizer

        tok = ByteTokenizer(list(special_tokens))  # type: ignore[assignment]
    tok.save(output)
    click.echo(
        f"saved {kind} tokenizer ({tok.vocab_size} ids) to {output} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def _read_input(text: str | None, file: str | None) -> str:
    if (text is None) == (file is None):
        raise UsageError("give the TEXT argument or --file (use '-' for stdin)")
    if file is None:
        assert text is not None
        return text
    if file == "-":
        return sys.stdin.read()
    p = Path(file)
    if not p.is_file():
        raise UsageError(f"{file}: no such file")
    return p.read_text(encoding="utf-8", errors="replace")


@tokenizer.command()
@click.argument("tokenizer_spec", metavar="TOKENIZER")
@click.argument("text", required=False)
@click.option("-f", "--file", "file", default=None, help="Encode this file ('-': stdin).")
@click.option("--show", is_flag=True, help="Print the tokens instead of the ids.")
@click.option("--allow-special", is_flag=True, help="Encode special tokens in the text as such.")
def encode(
    tokenizer_spec: str, text: str | None, file: str | None, show: bool, allow_special: bool
) -> None:
    """Encode TEXT (or --file) with TOKENIZER (a file, or cl100k_base/o200k_base); print ids."""
    from llmkit.storage.tokenizer_files import load_tokenizer

    tok = load_tokenizer(tokenizer_spec)
    data = _read_input(text, file)
    if allow_special:
        encode_text: Any = tok.encode  # every built-in tokenizer takes allowed_special
        ids = encode_text(data, allowed_special="all")
    elif hasattr(tok, "encode_ordinary"):
        ids = tok.encode_ordinary(data)
    else:
        ids = tok.encode(data)
    if not show:
        click.echo(" ".join(map(str, ids)))
        return
    if hasattr(tok, "id_to_token"):
        pieces = [str(tok.id_to_token(i)) for i in ids]
    else:
        pieces = [tok.decode([i]) for i in ids]
    click.echo(" ".join(repr(p)[1:-1] if p.strip() == p and p else repr(p) for p in pieces))


@tokenizer.command()
@click.argument("tokenizer_spec", metavar="TOKENIZER")
@click.option(
    "-f", "--file", "file", default=None, help="Measure compression (bytes per token) on this file."
)
def info(tokenizer_spec: str, file: str | None) -> None:
    """Show TOKENIZER's type, vocabulary size, pattern and special tokens (and bytes/token)."""
    from llmkit.storage.tokenizer_files import load_tokenizer

    tok = load_tokenizer(tokenizer_spec)
    click.echo(f"type: {type(tok).__name__}")
    click.echo(f"vocab size: {tok.vocab_size}")
    pattern = getattr(tok, "pattern", None)
    if pattern is not None:
        click.echo(f"pattern: {pattern}")
    specials = tok.special_tokens
    shown = ", ".join(f"{s}={i}" for s, i in list(specials.items())[:10])
    more = f" (+{len(specials) - 10} more)" if len(specials) > 10 else ""
    click.echo(f"special tokens: {len(specials)}" + (f": {shown}{more}" if specials else ""))
    if file is not None:
        data = _read_input(None, file)
        start = time.perf_counter()
        ids = tok.encode_ordinary(data) if hasattr(tok, "encode_ordinary") else tok.encode(data)
        took = time.perf_counter() - start
        nbytes = len(data.encode("utf-8"))
        ratio = nbytes / max(len(ids), 1)
        click.echo(
            f"{file}: {nbytes} bytes -> {len(ids)} tokens, {ratio:.3f} bytes/token "
            f"({nbytes / 1e6 / max(took, 1e-9):.1f} MB/s)"
        )
