"""Type stub of the Rust extension `llmkit._rust` (rust/src/py*.rs).

Checked against the built extension by `python -m mypy.stubtest llmkit._rust` (.ci/run).
"""

import os
from collections.abc import Callable
from typing import final

from typing_extensions import Self

__all__ = [
    "Bpe",
    "BpeTrainer",
    "RankFile",
    "WordPiece",
    "WordPieceTrainer",
    "__version__",
    "named_pattern",
    "pretokenize",
]

__version__: str

# --- WordPiece (rust/src/py_wordpiece.rs) -------------------------------------------------------

@final
class WordPiece:
    def __new__(
        cls,
        tokens: list[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        special_tokens: list[str] | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
    ) -> Self: ...
    def encode(
        self,
        text: str,
        add_special_tokens: bool = False,
        split_special_tokens: bool = True,
        allowed: list[int] | None = None,
    ) -> list[int]: ...
    def encode_batch(
        self,
        texts: list[str],
        add_special_tokens: bool = False,
        split_special_tokens: bool = True,
        allowed: list[int] | None = None,
    ) -> list[list[int]]: ...
    def tokenize(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = True
    ) -> list[str]: ...
    def decode(
        self, ids: list[int], skip_special_tokens: bool = False, cleanup: bool = True
    ) -> str: ...
    def normalize(self, text: str) -> str: ...
    def pre_tokenize(self, text: str) -> list[str]: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str | None: ...
    def vocab(self) -> list[str]: ...
    def to_vocab_txt(self) -> str: ...
    def config(self) -> dict[str, object]: ...
    def __len__(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def special_tokens(self) -> dict[str, int]: ...
    @property
    def unk_id(self) -> int: ...
    @property
    def cls_sep_ids(self) -> tuple[int | None, int | None]: ...

@final
class WordPieceTrainer:
    def __new__(
        cls,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
    ) -> Self: ...
    def feed_texts(self, texts: list[str]) -> None: ...
    def feed_file(self, path: str | os.PathLike[str]) -> None: ...
    def feed_bytes(self, data: bytes) -> None: ...
    def word_count(self, word: str) -> int: ...
    def train(
        self,
        vocab_size: int,
        *,
        min_frequency: int = 0,
        special_tokens: list[str] | None = None,
        limit_alphabet: int | None = None,
        initial_alphabet: list[str] | None = None,
        continuing_subword_prefix: str = "##",
        continuation_order: list[str] | None = None,
    ) -> list[str]: ...
    @property
    def invalid_utf8(self) -> int: ...
    @property
    def num_words(self) -> int: ...

# --- Byte-level BPE (rust/src/py_bpe.rs) --------------------------------------------------------

_Specials = bool | list[str] | None

@final
class RankFile:
    @staticmethod
    def parse(data: bytes) -> RankFile | None: ...
    def __len__(self) -> int: ...

@final
class Bpe:
    @staticmethod
    def from_merges(
        tokens: list[tuple[bytes, int]],
        merges: list[tuple[int, int]],
        specials: list[tuple[str, int]],
        pattern: str,
        ignore_merges: bool = False,
    ) -> Bpe: ...
    @staticmethod
    def from_ranks(
        tokens: list[tuple[bytes, int]], specials: list[tuple[str, int]], pattern: str
    ) -> Bpe: ...
    @staticmethod
    def from_rank_file(ranks: RankFile, specials: list[tuple[str, int]], pattern: str) -> Bpe: ...
    def encode(
        self, text: str, allowed: _Specials = None, disallowed: _Specials = None
    ) -> list[int]: ...
    def encode_u32(
        self, text: str, allowed: _Specials = None, disallowed: _Specials = None
    ) -> bytes: ...
    def encode_bytes(self, data: bytes) -> list[int]: ...
    def encode_batch(
        self,
        texts: list[str],
        allowed: _Specials = None,
        disallowed: _Specials = None,
        threads: int | None = None,
    ) -> list[list[int]]: ...
    def encode_batch_u32(
        self,
        texts: list[str],
        allowed: _Specials = None,
        disallowed: _Specials = None,
        threads: int | None = None,
    ) -> tuple[bytes, bytes]: ...
    def decode_bytes(self, ids: list[int]) -> bytes: ...
    def decode_bytes_u32(self, data: bytes) -> bytes: ...
    def token_bytes(self, id: int) -> bytes: ...
    def token_id(self, token: bytes) -> int | None: ...
    def is_special(self, id: int) -> bool: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    @property
    def pattern_name(self) -> str | None: ...
    @property
    def ignore_merges(self) -> bool: ...
    def specials(self) -> list[tuple[str, int]]: ...
    def tokens(self) -> list[tuple[bytes, int]]: ...
    def merge_list(self) -> list[tuple[int, int]] | None: ...
    def all_merges(self) -> list[tuple[int, int, int, int]]: ...
    def pretokenize(self, text: str) -> list[str]: ...

@final
class BpeTrainer:
    def __new__(cls, pattern: str, threads: int | None = None) -> Self: ...
    def feed_texts(self, texts: list[str]) -> None: ...
    def feed_file(self, path: str) -> None: ...
    def feed_bytes(self, data: bytes) -> None: ...
    def stats(self) -> tuple[int, int, int]: ...
    def train(
        self,
        vocab_size: int,
        min_frequency: int,
        specials: list[str],
        progress: Callable[[int, int], object] | None = None,
    ) -> tuple[list[bytes], int, list[tuple[int, int]]]: ...

def pretokenize(pattern: str, text: str, regex_only: bool = False) -> list[str]: ...
def named_pattern(name: str) -> str | None: ...
