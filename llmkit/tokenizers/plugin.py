"""Built-in tokenizer components, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import Register, hookimpl


@hookimpl
def register_tokenizers(register: Register) -> None:
    """bpe, wordpiece, byte and char (lazy factories: nothing heavy is imported here)."""
    register(
        "bpe",
        "llmkit.tokenizers.bpe:load_bpe",
        summary="Byte-level BPE (Rust): tiktoken/HF-identical ids, fast training and encoding",
    )
    register(
        "wordpiece",
        "llmkit.tokenizers.wordpiece:load_wordpiece",
        summary="BERT WordPiece (Rust): ids identical to HF tokenizers' WordPiece",
    )
    register(
        "byte",
        "llmkit.tokenizers.simple:ByteTokenizer",
        summary="Baseline: UTF-8 bytes as ids 0-255 plus special tokens",
    )
    register(
        "char",
        "llmkit.tokenizers.simple:CharTokenizer",
        summary="Baseline: one id per character, <unk> for the rest",
    )


@hookimpl
def register_commands(cli: Any) -> None:
    """`llmkit tokenizer train|encode|info`."""
    from llmkit.tokenizers.cli import tokenizer

    cli.add_command(tokenizer)
