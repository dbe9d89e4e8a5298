"""Import a Hugging Face model directory (weights, tokenizer, generation ids) into llmkit objects.

The weights go through `llmkit.models.hf` (GPT-2, BERT, Llama). A byte-level BPE `tokenizer.json`
becomes an llmkit `BPETokenizer`; besides the layouts `BPETokenizer.from_hf` reads, the
StarCoder/SmolLM pre-tokenizer `Sequence[Digits(individual_digits), ByteLevel]` is accepted and
expressed as the equivalent single regex.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from llmkit.tokenizers.base import Tokenizer


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
    from llmkit.inference.gguf import DIGITS_GPT2_PATTERN
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


def import_hf(
    src_dir: str | Path,
) -> tuple[nn.Module, Tokenizer | None, dict[str, Any], str | None]:
    """(model, tokenizer or None, generation settings, why the tokenizer was skipped or None)."""
    from llmkit.models.hf import from_hf, read_hf_dir

    src = Path(src_dir)
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (expected a Hugging Face model directory)")
    config, weights = read_hf_dir(src)
    # random init stays where BERT heads are absent from the file
    model = from_hf(config, weights, source=str(src / "config.json"))
    generation: dict[str, Any] = {
        k: config[k] for k in ("bos_token_id", "eos_token_id") if config.get(k) is not None
    }
    gen_file = src / "generation_config.json"
    if gen_file.is_file():
        try:
            gen = json.loads(gen_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{gen_file}: not valid JSON ({exc})") from None
        generation |= {
            k: gen[k] for k in ("bos_token_id", "eos_token_id") if gen.get(k) is not None
        }
    tokenizer, skipped = None, None
    tok_file = src / "tokenizer.json"
    if tok_file.is_file():
        try:
            tokenizer = read_hf_tokenizer(tok_file)
        except UsageError as exc:
            skipped = str(exc)
        tok_config = src / "tokenizer_config.json"
        if tok_config.is_file():
            try:
                template = json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template")
            except (UnicodeDecodeError, json.JSONDecodeError):
                template = None
            if isinstance(template, str):
                generation["chat_template"] = template
    return model, tokenizer, generation, skipped
