"""Type stub of the Rust extension `llmkit._rust` (kept in step with rust/src/py*.rs)."""

import os

__version__: str

# --- WordPiece (rust/src/py_wordpiece.rs) -------------------------------------------------------

class WordPiece:
    def __init__(
        self,
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
    ) -> None: ...
    def encode(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = True
    ) -> list[int]: ...
    def encode_batch(
        self, texts: list[str], add_special_tokens: bool = False, split_special_tokens: bool = True
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

class WordPieceTrainer:
    def __init__(
        self,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
    ) -> None: ...
    def feed(self, texts: list[str]) -> None: ...
    def feed_files(self, paths: list[str]) -> None: ...
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
