"""The one tokenizer interface the rest of llmkit uses (data preparation, models, generation)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: End-of-text tokens by convention (GPT-2/tiktoken, Llama/SentencePiece, others), first match wins.
EOS_TOKENS = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "<|end_of_text|>", "<|im_end|>")


def find_eos(tokenizer: Any) -> int | None:
    """The id of the tokenizer's end-of-text special token, if it has a conventional one."""
    specials: dict[str, int] = dict(getattr(tokenizer, "special_tokens", {}) or {})
    return next((specials[name] for name in EOS_TOKENS if name in specials), None)


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
        """Ids of `text`."""
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
