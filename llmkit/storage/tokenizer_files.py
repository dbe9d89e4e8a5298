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


def load_tokenizer(spec: str | Path, verify: bool = True) -> Tokenizer:
    """A tokenizer from `spec`, tried in this order: cl100k_base/o200k_base; an llmkit checkpoint
    directory (the tokenizer saved with it, checked against its manifest unless `verify` is
    False); a tokenizer file (`load_tokenizer_file`); the name of a registered tokenizer component
    (`byte`, built with its defaults)."""
    if str(spec) in ENCODINGS:
        from llmkit.tokenizers.bpe import BPETokenizer

        return BPETokenizer.from_encoding(str(spec))  # type: ignore[arg-type]
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_checkpoint_tokenizer(path, verify=verify)
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


#: The built-in tokenizer components and the class each one saves and loads.
BUILTIN_TOKENIZERS = {
    "bpe": "llmkit.tokenizers.bpe:BPETokenizer",
    "wordpiece": "llmkit.tokenizers.wordpiece:WordPieceTokenizer",
    "byte": "llmkit.tokenizers.simple:ByteTokenizer",
    "char": "llmkit.tokenizers.simple:CharTokenizer",
}


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def tokenizer_name(tokenizer: Any) -> str:
    """The registry name a checkpoint records for `tokenizer` (never an import path)."""
    from llmkit.api import components

    cls = type(tokenizer)
    path = _class_path(cls)
    for component in components("tokenizer"):
        target = component.target
        if target is cls or target == path or BUILTIN_TOKENIZERS.get(component.name) == path:
            return component.name
    names = ", ".join(c.name for c in components("tokenizer"))
    raise UsageError(
        f"save_model: the tokenizer {path} is not a registered tokenizer component ({names}); "
        "register its class with register_tokenizers so a checkpoint can name it"
    )


def _registered_name(info: dict[str, Any], where: Path) -> str:
    """The registry name in a checkpoint's `tokenizer` field; an older checkpoint's `class` is
    accepted only when it is a registered tokenizer's own class (it is never imported)."""
    from llmkit.api import components

    registered = {c.name: c for c in components("tokenizer")}
    name = info.get("name")
    if name is None and isinstance(info.get("class"), str):
        legacy = info["class"]
        name = next(
            (
                n
                for n, c in registered.items()
                if BUILTIN_TOKENIZERS.get(n) == legacy or c.target == legacy
            ),
            legacy,
        )
    if not isinstance(name, str) or name not in registered:
        raise UsageError(
            f"{where}: tokenizer {name!r} is not a registered tokenizer (registered: "
            f"{', '.join(registered)}); install the plugin that provides it"
        )
    return name


def tokenizer_class(name: str, where: Path) -> Any:
    """The class that loads a saved tokenizer of the registered component `name`."""
    from llmkit.api import get

    if name in BUILTIN_TOKENIZERS:
        module_name, _, attr = BUILTIN_TOKENIZERS[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    factory = get("tokenizer", name).factory
    if not callable(getattr(factory, "load", None)):
        raise UsageError(
            f"{where}: the tokenizer component {name!r} cannot read a saved file (its factory "
            "has no load method)"
        )
    return factory


def load_checkpoint_tokenizer(directory: str | Path, verify: bool = True) -> Tokenizer:
    """The tokenizer stored with an llmkit checkpoint; UsageError if it carries none.

    With `verify`, config.json and the tokenizer file are checked against the manifest first.
    """
    from llmkit.storage.checkpoint import (
        CONFIG_FILE,
        TOKENIZER_FILE,
        read_config,
        verify_checkpoint,
    )

    path = Path(directory)
    config = read_config(path)
    info = config.get("tokenizer")
    if not info:
        raise UsageError(f"{path}: the checkpoint carries no tokenizer")
    if not isinstance(info, dict) or not isinstance(info.get("file", TOKENIZER_FILE), str):
        raise UsageError(f"{path / CONFIG_FILE}: field 'tokenizer' must be {{'name', 'file'}}")
    file_name = str(info.get("file", TOKENIZER_FILE))
    if Path(file_name).name != file_name or file_name in ("", ".", ".."):
        raise UsageError(
            f"{path / CONFIG_FILE}: tokenizer file {file_name!r} must be a file in the checkpoint"
        )
    file = path / file_name
    name = _registered_name(info, path / CONFIG_FILE)
    if verify:
        verify_checkpoint(path, config, (CONFIG_FILE, file_name))
    if not file.is_file():
        raise UsageError(f"{file}: missing; the checkpoint's tokenizer is incomplete")
    cls = tokenizer_class(name, path / CONFIG_FILE)
    try:
        tokenizer: Tokenizer = cls.load(file)
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{file}: cannot load the checkpoint's tokenizer ({exc})") from None
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
