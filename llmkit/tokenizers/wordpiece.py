"""WordPiece tokenizer (BERT): typed facade over the Rust core in `llmkit._rust`.

Same ids as Hugging Face `tokenizers` (`WordPiece` + `BertNormalizer` + `BertPreTokenizer`) for
the same vocabulary; training follows `tokenizers`' `WordPieceTrainer`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Literal, TypeVar

from llmkit.atomic import write_text
from llmkit.errors import UsageError
from llmkit.tokenizers.corpus import Corpus, feed_corpus

DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FORMAT = "llmkit-tokenizer"
FORMAT_VERSION = 1

T = TypeVar("T")
#: "all", or a set of special tokens (as `allowed_special`/`disallowed_special` of `encode`).
SpecialArg = Literal["all"] | AbstractSet[str] | Sequence[str]


def _usage(call: Callable[[], T]) -> T:
    """Run a core call, turning its ValueError/OSError into a one-line UsageError."""
    try:
        return call()
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None


class WordPieceTokenizer:
    """BERT's WordPiece: normalize, split on whitespace/punctuation/CJK, greedy longest match.

    Args:
        vocab: Tokens in id order.
        lowercase: Lowercase the text.
        strip_accents: Remove accents (NFD, drop non-spacing marks); None follows `lowercase`.
        clean_text: Drop control characters and map every whitespace to a space.
        handle_chinese_chars: Make each CJK ideograph its own word.
        unk_token: Token of words that cannot be split; must be in `vocab`.
        continuing_subword_prefix: Prefix of pieces that continue a word.
        max_input_chars_per_word: Longer words become `unk_token`.
        special_tokens: Tokens recognized verbatim in text and skippable when decoding; None means
            those of [PAD], [UNK], [CLS], [SEP], [MASK] that `vocab` has.
        cls_token: Put first by `add_special_tokens=True`.
        sep_token: Put last by `add_special_tokens=True`.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        special_tokens: Sequence[str] | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
    ) -> None:
        self._init(
            list(vocab),
            None,
            lowercase=lowercase,
            strip_accents=strip_accents,
            clean_text=clean_text,
            handle_chinese_chars=handle_chinese_chars,
            unk_token=unk_token,
            continuing_subword_prefix=continuing_subword_prefix,
            max_input_chars_per_word=max_input_chars_per_word,
            special_tokens=special_tokens,
            cls_token=cls_token,
            sep_token=sep_token,
        )

    def _init(
        self,
        vocab: list[str] | None,
        path: Path | None,
        *,
        special_tokens: Sequence[str] | None,
        max_input_chars_per_word: int,
        **options: Any,
    ) -> None:
        from llmkit import _rust

        if isinstance(max_input_chars_per_word, bool) or max_input_chars_per_word < 1:
            raise UsageError(
                f"max_input_chars_per_word must be a positive integer, got "
                f"{max_input_chars_per_word!r}"
            )
        explicit = special_tokens is not None
        specials = list(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        if not explicit:
            known = (
                set(vocab)
                if vocab is not None
                else set(self._read_tokens(path) if path is not None else [])
            )
            specials = [s for s in specials if s in known]
        self._core = _usage(
            lambda: _rust.WordPiece(
                vocab,
                path=path,
                special_tokens=specials,
                max_input_chars_per_word=max_input_chars_per_word,
                **options,
            )
        )

    @staticmethod
    def _read_tokens(path: Path) -> list[str]:
        """Tokens of a vocab.txt, leniently (just to pick default special tokens)."""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror or e}") from None
        return [line.rstrip() for line in text.splitlines()]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_vocab(
        cls,
        path: str | Path,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        special_tokens: Sequence[str] | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
    ) -> WordPieceTokenizer:
        """Read a BERT `vocab.txt` (one token per line); a bad line is an error naming it."""
        self = cls.__new__(cls)
        self._init(
            None,
            Path(path),
            lowercase=lowercase,
            strip_accents=strip_accents,
            clean_text=clean_text,
            handle_chinese_chars=handle_chinese_chars,
            unk_token=unk_token,
            continuing_subword_prefix=continuing_subword_prefix,
            max_input_chars_per_word=max_input_chars_per_word,
            special_tokens=special_tokens,
            cls_token=cls_token,
            sep_token=sep_token,
        )
        return self

    @classmethod
    def train(
        cls,
        corpus: Corpus,
        vocab_size: int = 30_000,
        *,
        min_frequency: int = 0,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        limit_alphabet: int | None = None,
        initial_alphabet: Iterable[str] = (),
        lowercase: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
    ) -> WordPieceTokenizer:
        """Learn a vocabulary as `tokenizers`' WordPieceTrainer does (BPE over words with `##`).

        `corpus` is a file name, a glob, a directory, a list of them, or an iterator of texts,
        expanded and read by `llmkit.tokenizers.corpus` as for BPE (`.gz`, `.bz2` and `.xz`
        decompressed). Files are read as UTF-8 in parallel; invalid sequences are replaced (and
        dropped by the normalizer) with a warning giving their number. Deterministic: the same
        corpus gives the same vocabulary.

        Args:
            corpus: Files, globs or directories, or an iterator of strings.
            vocab_size: Number of tokens wanted, special tokens included.
            min_frequency: Stop at the first pair seen fewer times than this.
            special_tokens: The first ids; must include `unk_token`.
            limit_alphabet: Keep only this many characters (the most frequent).
            initial_alphabet: Characters always kept.
            lowercase: Lowercase the text.
            strip_accents: Remove accents; None follows `lowercase`.
            clean_text: Drop control characters, map whitespace to spaces.
            handle_chinese_chars: Make each CJK ideograph its own word.
            unk_token: Token of words that cannot be split.
            continuing_subword_prefix: Prefix of pieces that continue a word.
            max_input_chars_per_word: Longer words become `unk_token` when encoding.
            cls_token: Put first by `add_special_tokens=True`.
            sep_token: Put last by `add_special_tokens=True`.
        """
        from llmkit import _rust

        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise UsageError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if min_frequency < 0:
            raise UsageError(f"min_frequency must be >= 0, got {min_frequency}")
        specials = list(special_tokens)
        if unk_token not in specials:
            raise UsageError(
                f"special_tokens {specials} must include unk_token {unk_token!r} "
                "(words that cannot be split need it)"
            )
        alphabet = list(initial_alphabet)
        for ch in alphabet:
            if not isinstance(ch, str) or len(ch) != 1:
                raise UsageError(f"initial_alphabet item {ch!r} is not a single character")
        trainer = _rust.WordPieceTrainer(
            lowercase=lowercase,
            strip_accents=strip_accents,
            clean_text=clean_text,
            handle_chinese_chars=handle_chinese_chars,
        )
        feed_corpus(trainer, corpus)
        if trainer.invalid_utf8:
            warnings.warn(
                f"training corpus had {trainer.invalid_utf8} invalid UTF-8 sequence(s); "
                "each was replaced by U+FFFD, which the normalizer drops",
                UserWarning,
                stacklevel=2,
            )
        vocab = _usage(
            lambda: trainer.train(
                vocab_size,
                min_frequency=min_frequency,
                special_tokens=specials,
                limit_alphabet=limit_alphabet,
                initial_alphabet=alphabet,
                continuing_subword_prefix=continuing_subword_prefix,
            )
        )
        return cls(
            vocab,
            lowercase=lowercase,
            strip_accents=strip_accents,
            clean_text=clean_text,
            handle_chinese_chars=handle_chinese_chars,
            unk_token=unk_token,
            continuing_subword_prefix=continuing_subword_prefix,
            max_input_chars_per_word=max_input_chars_per_word,
            special_tokens=specials,
            cls_token=cls_token,
            sep_token=sep_token,
        )

    # ------------------------------------------------------------------ save / load

    @property
    def config(self) -> dict[str, Any]:
        """The settings (the keyword arguments of the constructor)."""
        return dict(self._core.config())

    def save(self, path: str | Path) -> None:
        """Write atomically: `*.txt` as a BERT vocab.txt (tokens only), else llmkit's JSON."""
        path = Path(path)
        if path.suffix == ".txt":
            self.save_vocab(path)
            return
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "type": "wordpiece",
            "config": self.config,
            "vocab": self._core.vocab(),
        }
        write_text(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")

    def save_vocab(self, path: str | Path) -> None:
        """Write the vocabulary as `vocab.txt` (one token per line, in id order), atomically."""
        write_text(Path(path), self._core.to_vocab_txt())

    @classmethod
    def load(cls, path: str | Path) -> WordPieceTokenizer:
        """Read what `save` wrote (llmkit JSON, or a `vocab.txt` with default settings), or a
        Hugging Face `tokenizer.json` with a WordPiece model."""
        path = Path(path)
        if path.suffix == ".txt":
            return cls.from_vocab(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror or e}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"{path}: not a llmkit tokenizer JSON file ({e})") from None
        if isinstance(doc, dict) and "model" in doc and "format" not in doc:
            return cls.from_hf(path)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f'{path}: not a llmkit tokenizer file (no "format": "{FORMAT}")')
        if doc.get("type") != "wordpiece":
            raise UsageError(f"{path}: a {doc.get('type')!r} tokenizer, not 'wordpiece'")
        if doc.get("version") != FORMAT_VERSION:
            raise UsageError(
                f"{path}: format version {doc.get('version')!r}; this llmkit reads {FORMAT_VERSION}"
            )
        vocab, config = doc.get("vocab"), doc.get("config")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise UsageError(f"{path}: field 'vocab' must be a list of strings")
        if not isinstance(config, dict):
            raise UsageError(f"{path}: field 'config' must be an object")
        known = {
            "lowercase",
            "strip_accents",
            "clean_text",
            "handle_chinese_chars",
            "unk_token",
            "continuing_subword_prefix",
            "max_input_chars_per_word",
            "special_tokens",
            "cls_token",
            "sep_token",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise UsageError(f"{path}: unknown config field(s) {unknown}")
        try:
            return cls(vocab, **config)
        except UsageError as e:
            raise UsageError(f"{path}: {e}") from None
        except TypeError as e:
            raise UsageError(f"{path}: bad config ({e})") from None

    @classmethod
    def from_hf(cls, path: str | Path) -> WordPieceTokenizer:
        """Read a Hugging Face `tokenizer.json` with a WordPiece model (e.g. BERT's).

        Supported: a `BertNormalizer` (or none), the `BertPreTokenizer`, special added tokens that
        are in the vocabulary, and `BertProcessing`/`TemplateProcessing` for [CLS]/[SEP].
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror or e}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"{path}: not a JSON file ({e})") from None
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece":
            kind = model.get("type") if isinstance(model, dict) else None
            raise UsageError(f"{path}: model type {kind!r}, not a WordPiece tokenizer.json")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
            raise UsageError(f"{path}: model.vocab must map tokens to the ids 0..n-1")
        options: dict[str, Any] = {
            "unk_token": model.get("unk_token", "[UNK]"),
            "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
            "max_input_chars_per_word": model.get("max_input_chars_per_word", 100),
        }
        norm = doc.get("normalizer")
        if norm is None:
            options.update(
                lowercase=False, strip_accents=False, clean_text=False, handle_chinese_chars=False
            )
        elif norm.get("type") == "BertNormalizer":
            options.update(
                lowercase=bool(norm.get("lowercase", True)),
                strip_accents=norm.get("strip_accents"),
                clean_text=bool(norm.get("clean_text", True)),
                handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
            )
        else:
            raise UsageError(f"{path}: normalizer {norm.get('type')!r} is not supported")
        pre = doc.get("pre_tokenizer")
        if not isinstance(pre, dict) or pre.get("type") != "BertPreTokenizer":
            kind = pre.get("type") if isinstance(pre, dict) else None
            raise UsageError(f"{path}: pre_tokenizer {kind!r} is not supported (BertPreTokenizer)")
        specials = []
        for added in doc.get("added_tokens") or []:
            content = added.get("content")
            if vocab.get(content) != added.get("id"):
                raise UsageError(f"{path}: added token {content!r} is not in model.vocab")
            if added.get("special"):
                specials.append(content)
        post = doc.get("post_processor") or {}
        if post.get("type") == "BertProcessing":
            options.update(cls_token=post["cls"][0], sep_token=post["sep"][0])
        elif post.get("type") == "TemplateProcessing":
            single = [
                p["SpecialToken"]["id"] for p in post.get("single", []) if "SpecialToken" in p
            ]
            if len(single) == 2:
                options.update(cls_token=single[0], sep_token=single[1])
        try:
            return cls(sorted(vocab, key=vocab.__getitem__), special_tokens=specials, **options)
        except UsageError as e:
            raise UsageError(f"{path}: {e}") from None

    def to_hf(self, path: str | Path) -> None:
        """Write a Hugging Face `tokenizer.json` that `tokenizers` loads to the same ids."""
        c = self._core.config()
        cls_id, sep_id = self._core.cls_sep_ids
        post = None
        if cls_id is not None and sep_id is not None:
            post = {
                "type": "BertProcessing",
                "sep": [c["sep_token"], sep_id],
                "cls": [c["cls_token"], cls_id],
            }
        doc = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {
                    "id": i,
                    "content": t,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
                for t, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])
            ],
            "normalizer": {
                "type": "BertNormalizer",
                "clean_text": c["clean_text"],
                "handle_chinese_chars": c["handle_chinese_chars"],
                "strip_accents": c["strip_accents"],
                "lowercase": c["lowercase"],
            },
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": post,
            "decoder": {
                "type": "WordPiece",
                "prefix": c["continuing_subword_prefix"],
                "cleanup": True,
            },
            "model": {
                "type": "WordPiece",
                "unk_token": c["unk_token"],
                "continuing_subword_prefix": c["continuing_subword_prefix"],
                "max_input_chars_per_word": c["max_input_chars_per_word"],
                "vocab": self.get_vocab(),
            },
        }
        write_text(Path(path), json.dumps(doc, ensure_ascii=False, indent=1) + "\n")

    # ------------------------------------------------------------------ encode / decode

    def encode(
        self,
        text: str,
        *,
        add_special_tokens: bool = False,
        allowed_special: SpecialArg = "all",
        disallowed_special: SpecialArg = (),
        split_special_tokens: bool = True,
    ) -> list[int]:
        """Ids of `text`; special tokens written in it follow llmkit's one rule (as BPE's).

        A special token in `allowed_special` becomes its id, one in `disallowed_special` is a
        `UsageError`, any other is ordinary text ("all" means every special token; for
        `disallowed_special`, every one not allowed). WordPiece's defaults are those of
        `tokenizers`: every special token is allowed ("[MASK]" becomes its id).

        Args:
            text: The text.
            add_special_tokens: Put `cls_token` first and `sep_token` last (BERT's template).
            allowed_special: "all" or the special tokens that become ids.
            disallowed_special: "all" or the special tokens that are an error in the text.
            split_special_tokens: False is the same as `allowed_special=set()`.
        """
        if add_special_tokens:
            self._check_template()
        allowed, disallowed = self._special_args(
            allowed_special, disallowed_special, split_special_tokens
        )
        self._check_disallowed([text], disallowed)
        try:
            return self._core.encode(
                text, add_special_tokens, allowed is None or bool(allowed), allowed or None
            )
        except UnicodeEncodeError as e:
            raise UsageError(f"text is not valid Unicode: {e.reason} at {e.start}") from None

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text` with special tokens written in it encoded as ordinary text."""
        return self.encode(text, allowed_special=frozenset())

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = False,
        allowed_special: SpecialArg = "all",
        disallowed_special: SpecialArg = (),
        split_special_tokens: bool = True,
    ) -> list[list[int]]:
        """Ids of each text (special tokens as in `encode`), in parallel without the GIL."""
        if add_special_tokens:
            self._check_template()
        if isinstance(texts, str):
            raise UsageError("encode_batch takes a sequence of texts, not one string")
        texts = list(texts)
        allowed, disallowed = self._special_args(
            allowed_special, disallowed_special, split_special_tokens
        )
        try:
            self._check_disallowed(texts, disallowed)
            return self._core.encode_batch(
                texts, add_special_tokens, allowed is None or bool(allowed), allowed or None
            )
        except (TypeError, UnicodeEncodeError) as e:
            raise UsageError(f"encode_batch takes valid Unicode strings ({e})") from None

    def _special_args(
        self, allowed: SpecialArg, disallowed: SpecialArg, split: bool
    ) -> tuple[list[int] | None, list[str]]:
        """(ids of the allowed special tokens, None for all; the disallowed special tokens)."""
        specials = self._core.special_tokens
        sets: list[set[str]] = []
        for name, arg in (("allowed_special", allowed), ("disallowed_special", disallowed)):
            if arg == "all":
                sets.append(set(specials))
                continue
            if isinstance(arg, str):
                raise UsageError(f'{name} must be "all" or a set of tokens, not {arg!r}')
            unknown = sorted(set(arg) - set(specials))
            if unknown:
                raise UsageError(f"{name} {unknown} are not special tokens {list(specials)}")
            sets.append(set(arg))
        allowed_set = sets[0] if split else set()
        banned = [t for t in specials if t in sets[1] and t not in allowed_set]
        if allowed_set == set(specials):
            return None, banned
        return [specials[t] for t in specials if t in allowed_set], banned

    @staticmethod
    def _check_disallowed(texts: Sequence[str], disallowed: list[str]) -> None:
        """A `UsageError` if a text holds a disallowed special token (BPE's message)."""
        for token in disallowed:
            if any(token in t for t in texts):
                raise UsageError(
                    f"the text contains the special token {token!r}, which is disallowed; pass "
                    "it in allowed_special to encode it as a special token, or exclude it from "
                    "disallowed_special to encode it as text"
                )

    def encode_pair(
        self, first: str, second: str, *, split_special_tokens: bool = True
    ) -> tuple[list[int], list[int]]:
        """BERT's sentence-pair input: ids of `[CLS] first [SEP] second [SEP]` and the token
        type ids (0 up to the first [SEP], 1 after)."""
        self._check_template()
        a, b = self._core.encode_batch([first, second], False, split_special_tokens)
        cls_id, sep_id = self._core.cls_sep_ids
        assert cls_id is not None and sep_id is not None
        ids = [cls_id, *a, sep_id, *b, sep_id]
        return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)

    def _check_template(self) -> None:
        cls_id, sep_id = self._core.cls_sep_ids
        if cls_id is None or sep_id is None:
            c = self._core.config()
            raise UsageError(
                f"add_special_tokens needs cls_token {c['cls_token']!r} and sep_token "
                f"{c['sep_token']!r} in the vocabulary"
            )

    def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[str]:
        """Token strings of `text` (what `encode` gives, as text)."""
        if add_special_tokens:
            self._check_template()
        return self._core.tokenize(text, add_special_tokens)

    def decode(
        self, ids: Iterable[int], *, skip_special_tokens: bool = False, cleanup: bool = True
    ) -> str:
        """Text of `ids`: `##` pieces rejoined, other tokens separated by spaces.

        Args:
            ids: Token ids.
            skip_special_tokens: Leave out special tokens.
            cleanup: Remove spaces before punctuation and in contractions, as `tokenizers`'
                WordPiece decoder does ("hello , world" -> "hello, world").
        """
        return _usage(lambda: self._core.decode(list(ids), skip_special_tokens, cleanup))

    def normalize(self, text: str) -> str:
        """`text` after BERT normalization (cleanup, CJK spacing, accents, case)."""
        return self._core.normalize(text)

    def pre_tokenize(self, text: str) -> list[str]:
        """The words `text` is split into before WordPiece."""
        return self._core.pre_tokenize(text)

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self._core.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id."""
        return dict(self._core.special_tokens)

    @property
    def unk_token_id(self) -> int:
        """Id of the unknown token."""
        return self._core.unk_id

    def token_to_id(self, token: str) -> int | None:
        """The id of `token`, or None if it is not in the vocabulary."""
        return self._core.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        """The token of `id`, or None if it is out of range."""
        return self._core.id_to_token(id)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id for the whole vocabulary."""
        return {t: i for i, t in enumerate(self._core.vocab())}

    def __len__(self) -> int:
        return self._core.vocab_size

    def __reduce__(self) -> tuple[Any, ...]:
        """Copy/pickle by vocabulary and settings (for multiprocessing and DataLoader workers)."""
        return (_rebuild, (self._core.vocab(), self.config))

    def __repr__(self) -> str:
        c = self._core.config()
        return (
            f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={c['lowercase']}, "
            f"strip_accents={c['strip_accents']})"
        )


def _rebuild(vocab: list[str], config: dict[str, Any]) -> WordPieceTokenizer:
    """Inverse of `WordPieceTokenizer.__reduce__`."""
    return WordPieceTokenizer(vocab, **config)


def load_wordpiece(path: str, lowercase: bool = True) -> WordPieceTokenizer:
    """The `wordpiece` tokenizer component: llmkit JSON, or a BERT vocab.txt.

    Args:
        path: A file written by `WordPieceTokenizer.save`, or a `vocab.txt`.
        lowercase: For a vocab.txt: lowercase (uncased model) or not (cased).
    """
    if Path(path).suffix == ".txt":
        return WordPieceTokenizer.from_vocab(path, lowercase=lowercase)
    return WordPieceTokenizer.load(path)


__all__: list[str] = ["DEFAULT_SPECIAL_TOKENS", "WordPieceTokenizer", "load_wordpiece"]
