"""Tokenizer files: the one `load_tokenizer`, from a checkpoint, a file, an encoding or a name.

Every reader of tokenizers (the CLI, data preparation, the pipeline, `llmkit.load_tokenizer`) goes
through `load_tokenizer`, so one spec means the same tokenizer everywhere. A Hugging Face byte-level
BPE `tokenizer.json` becomes an llmkit `BPETokenizer`; besides the layouts `BPETokenizer.from_hf`
reads, the StarCoder/SmolLM pre-tokenizer `Sequence[Digits(individual_digits), ByteLevel]` is
accepted and expressed as the equivalent single regex.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    from llmkit.tokenizers.base import Tokenizer

ENCODINGS = ("cl100k_base", "o200k_base")
FILE_SUFFIXES = (".json", ".tiktoken", ".gz", ".txt")

# GPT-2's pre-tokenizer; llama.cpp keeps text between matches as pieces, hence the final `\s+`.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# StarCoder/SmolLM: every digit alone first, then GPT-2's regex on the rest. One regex does both:
# digits match alone, and whitespace runs that end where a digit starts stay whole.
DIGITS_GPT2_PATTERN = (
    r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+"""
)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PRE_TOKENIZER_PATTERNS: dict[str, str] = {
    "default": GPT2_PATTERN,
    "gpt2": GPT2_PATTERN,
    "gpt-2": GPT2_PATTERN,
    "olmo": GPT2_PATTERN,
    "mpt": GPT2_PATTERN,
    "smollm": DIGITS_GPT2_PATTERN,
    "starcoder": DIGITS_GPT2_PATTERN,
    "refact": DIGITS_GPT2_PATTERN,
    "codeshell": DIGITS_GPT2_PATTERN,
    "llama3": LLAMA3_PATTERN,
    "llama-bpe": LLAMA3_PATTERN,
}


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """A tokenizer from `spec`, tried in this order: cl100k_base/o200k_base; an llmkit checkpoint
    directory (the tokenizer saved with it); a tokenizer file (`load_tokenizer_file`); the name of
    a registered tokenizer component (`byte`, built with its defaults)."""
    if str(spec) in ENCODINGS:
        from llmkit.tokenizers.bpe import BPETokenizer

        return BPETokenizer.from_encoding(str(spec))  # type: ignore[arg-type]
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_checkpoint_tokenizer(path)
    if path.is_file():
        try:
            return load_tokenizer_file(path)
        except UsageError:
            raise
        except (OSError, ValueError) as exc:
            raise UsageError(f"{spec}: cannot load tokenizer ({exc})") from None
    text = str(spec)
    looks_like_a_name = os.sep not in text and "/" not in text and not text.endswith(FILE_SUFFIXES)
    if isinstance(spec, str) and looks_like_a_name:
        from llmkit.api import create

        tokenizer: Tokenizer = create("tokenizer", text)
        return tokenizer
    raise UsageError(
        f"{spec}: no such tokenizer file (or give an encoding: {', '.join(ENCODINGS)})"
    )


def load_tokenizer_file(path: Path) -> Tokenizer:
    """A tokenizer from one file: an llmkit file (bpe, wordpiece, byte, char), a Hugging Face
    `tokenizer.json` (byte-level BPE or WordPiece), a `.tiktoken[.gz]` file or a `vocab.txt`."""
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


def _allowed_tokenizer_class(target: str) -> bool:
    """Only llmkit's own classes and registered tokenizers may be named in a checkpoint."""
    if target.startswith("llmkit."):
        return True
    from llmkit.api import components

    return any(c.target == target for c in components("tokenizer"))


def load_checkpoint_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer stored with an llmkit checkpoint; UsageError if it carries none."""
    from llmkit.storage.checkpoint import CONFIG_FILE, TOKENIZER_FILE, read_config

    path = Path(directory)
    config = read_config(path)
    info = config.get("tokenizer")
    if not info:
        raise UsageError(f"{path}: the checkpoint carries no tokenizer")
    if not isinstance(info, dict) or not isinstance(info.get("class"), str):
        raise UsageError(f"{path / CONFIG_FILE}: field 'tokenizer' must be {{'class', 'file'}}")
    target: str = info["class"]
    file = path / str(info.get("file", TOKENIZER_FILE))
    if not file.is_file():
        raise UsageError(f"{file}: missing; the checkpoint's tokenizer is incomplete")
    if ":" not in target or not _allowed_tokenizer_class(target):
        raise UsageError(f"{path / CONFIG_FILE}: tokenizer class {target!r} is not allowed")
    module_name, _, attr = target.partition(":")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"{path / CONFIG_FILE}: cannot import tokenizer {target!r}: {exc}"
        ) from None
    tokenizer: Tokenizer = cls.load(file)
    return tokenizer


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
