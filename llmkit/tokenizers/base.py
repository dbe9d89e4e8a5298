"""The one tokenizer interface the rest of llmkit uses (data preparation, models, generation)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# Special tokens by convention (GPT-2/tiktoken, Llama/SentencePiece, BERT, others); first match wins.
#: End of a text or document.
END_TOKENS = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|end_of_text|>")
#: Where generation stops: an end of text, or the end of a chat turn.
EOS_TOKENS = (*END_TOKENS, "<|im_end|>")
#: Between packed documents and after seq2seq targets: an end of text, else BERT's separator.
SEPARATOR_TOKENS = (*END_TOKENS, "[SEP]")
BOS_TOKENS = ("<s>", "<bos>", "<|startoftext|>", "[CLS]", "<|begin_of_text|>")
PAD_TOKENS = ("<pad>", "[PAD]", "<|pad|>")
MASK_TOKENS = ("<mask>", "[MASK]", "<|mask|>")


def find_special(tokenizer: Any, names: Sequence[str]) -> int | None:
    """The id of the first of `names` that is one of the tokenizer's special tokens, if any."""
    specials: dict[str, int] = dict(getattr(tokenizer, "special_tokens", {}) or {})
    return next((int(specials[name]) for name in names if name in specials), None)


def find_eos(tokenizer: Any) -> int | None:
    """The id of the tokenizer's end-of-text special token, if it has a conventional one."""
    return find_special(tokenizer, EOS_TOKENS)


@runtime_checkable
class Tokenizer(Protocol):
    """What every `tokenizer` component provides: encode/decode, batch encoding, save/load."""

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        ...

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of `text` (special tokens in it: `allowed_special`/`disallowed_special`, see
        docs/tokenizers.md, "Special tokens in `encode`")."""
        ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text, encoded in parallel."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to `path` atomically, in a format `load` reads back."""
        ...
