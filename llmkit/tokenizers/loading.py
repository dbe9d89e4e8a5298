"""Open any llmkit tokenizer from a file name or a built-in encoding name (used by the CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

ENCODINGS = ("cl100k_base", "o200k_base")


def load_tokenizer(spec: str | Path) -> Any:
    """A tokenizer from `spec`: cl100k_base/o200k_base, an llmkit file (bpe, wordpiece, byte,
    char), a Hugging Face `tokenizer.json` (byte-level BPE), a `.tiktoken` file or a `vocab.txt`."""
    if str(spec) in ENCODINGS:
        from llmkit.tokenizers.bpe import BPETokenizer

        return BPETokenizer.from_encoding(str(spec))  # type: ignore[arg-type]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UsageError(
            f"{spec}: no such tokenizer file (or give an encoding: {', '.join(ENCODINGS)})"
        )
    name = path.name.lower()
    if ".tiktoken" in name or name.endswith(".json.gz"):
        from llmkit.tokenizers.bpe import BPETokenizer

        return BPETokenizer.load(path)
    if name.endswith(".txt"):
        from llmkit.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.from_vocab(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a tokenizer JSON file ({exc})") from None
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "byte":
        from llmkit.tokenizers.simple import ByteTokenizer

        return ByteTokenizer.load(path)
    if kind == "char":
        from llmkit.tokenizers.simple import CharTokenizer

        return CharTokenizer.load(path)
    hf_model = doc.get("model") if isinstance(doc, dict) else None
    if kind == "wordpiece" or (isinstance(hf_model, dict) and hf_model.get("type") == "WordPiece"):
        from llmkit.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.load(path)
    from llmkit.tokenizers.bpe import BPETokenizer

    return BPETokenizer.load(path)
