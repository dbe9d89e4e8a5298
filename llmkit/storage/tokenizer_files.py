"""Open any llmkit tokenizer from a file name or a built-in encoding name (used by the CLI)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    from llmkit.tokenizers.base import Tokenizer

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


def _digits_then_bytelevel(pre: Any) -> bool:
    if not isinstance(pre, dict) or pre.get("type") != "Sequence":
        return False
    steps = pre.get("pretokenizers") or []
    return (
        len(steps) == 2
        and steps[0].get("type") == "Digits"
        and bool(steps[0].get("individual_digits"))
        and steps[1].get("type") == "ByteLevel"
        and steps[1].get("use_regex", True)
        and not steps[1].get("add_prefix_space")
    )


def read_hf_tokenizer(path: str | Path) -> Tokenizer:
    """An llmkit BPETokenizer from a Hugging Face byte-level BPE `tokenizer.json`."""
    from llmkit.storage.gguf import DIGITS_GPT2_PATTERN
    from llmkit.tokenizers.bpe import BPETokenizer

    file = Path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{file}: not a readable tokenizer.json ({exc})") from None
    if isinstance(doc, dict) and _digits_then_bytelevel(doc.get("pre_tokenizer")):
        doc["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": DIGITS_GPT2_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        }
        with tempfile.TemporaryDirectory() as tmp:
            rewritten = Path(tmp) / "tokenizer.json"
            rewritten.write_text(json.dumps(doc), encoding="utf-8")
            return BPETokenizer.from_hf(rewritten)
    return BPETokenizer.from_hf(file)
