"""Tokenizers: byte-level BPE and WordPiece (Rust), byte and char baselines.

`BPETokenizer` and `WordPieceTokenizer` are imported on first use, so importing this package
is cheap (no torch, no extension load).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.tokenizers.base import Tokenizer

if TYPE_CHECKING:
    from llmkit.tokenizers.bpe import BPETokenizer
    from llmkit.tokenizers.simple import ByteTokenizer, CharTokenizer
    from llmkit.tokenizers.wordpiece import WordPieceTokenizer

_LAZY = {
    "BPETokenizer": "llmkit.tokenizers.bpe",
    "WordPieceTokenizer": "llmkit.tokenizers.wordpiece",
    "ByteTokenizer": "llmkit.tokenizers.simple",
    "CharTokenizer": "llmkit.tokenizers.simple",
    "load_tokenizer": "llmkit.storage.tokenizer_files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmkit.tokenizers' has no attribute {name!r}")


__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
]
