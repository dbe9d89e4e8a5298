"""Baseline tokenizers: raw UTF-8 bytes and single characters (for comparisons and tiny models)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from llmkit.atomic import write_text
from llmkit.errors import UsageError
from llmkit.tokenizers.corpus import expand_corpus, is_texts, open_text


def _check_specials(special_tokens: Sequence[str]) -> list[str]:
    if isinstance(special_tokens, str):
        raise UsageError("special_tokens must be a list of strings, not one string")
    out = list(dict.fromkeys(special_tokens))
    for s in out:
        if not isinstance(s, str) or not s:
            raise UsageError(f"special tokens must be non-empty strings, got {s!r}")
    return out


def _split_specials(text: str, specials: dict[str, int]) -> list[tuple[str, int | None]]:
    """Text cut at special tokens: (piece, None) for text, (token, id) for a special token."""
    if not specials:
        return [(text, None)]
    import re

    alternation = "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True))
    out: list[tuple[str, int | None]] = []
    last = 0
    for m in re.finditer(alternation, text):
        if m.start() > last:
            out.append((text[last : m.start()], None))
        out.append((m.group(), specials[m.group()]))
        last = m.end()
    if last < len(text):
        out.append((text[last:], None))
    return out


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, then special tokens: lossless, no training, vocab 256 + specials."""

    kind = "byte"

    def __init__(self, special_tokens: Sequence[str] = ()) -> None:
        """A byte tokenizer whose special tokens follow the 256 bytes.

        Args:
            special_tokens: Special token texts, given ids 256, 257, ...
        """
        names = _check_specials(special_tokens)
        self._specials = {s: 256 + i for i, s in enumerate(names)}
        self._by_id = {i: s for s, i in self._specials.items()}

    @classmethod
    def train(cls, files: Any = (), special_tokens: Sequence[str] = (), **_: Any) -> ByteTokenizer:
        """Nothing to learn; returns a byte tokenizer with the special tokens."""
        return cls(special_tokens)

    @property
    def vocab_size(self) -> int:
        """256 bytes plus the special tokens."""
        return 256 + len(self._specials)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id."""
        return dict(self._specials)

    def encode(self, text: str, allowed_special: Literal["all"] | Iterable[str] = ()) -> list[int]:
        """The UTF-8 bytes of `text`; allowed special tokens become their ids."""
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        specials = {s: i for s, i in self._specials.items() if s in allowed}
        out: list[int] = []
        for piece, sid in _split_specials(text, specials):
            if sid is None:
                out.extend(piece.encode("utf-8"))
            else:
                out.append(sid)
        return out

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text."""
        return [self.encode(t) for t in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of `ids`."""
        out = bytearray()
        for i in ids:
            if 0 <= i < 256:
                out.append(i)
            elif i in self._by_id:
                out += self._by_id[i].encode("utf-8")
            else:
                raise UsageError(f"token id {i} is not in the vocabulary (size {self.vocab_size})")
        return bytes(out)

    def decode(self, ids: Iterable[int], errors: Literal["replace", "strict"] = "replace") -> str:
        """The text of `ids`."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def save(self, path: str | Path) -> None:
        """Write a small JSON file, atomically."""
        doc = {
            "format": "llmkit-tokenizer",
            "version": 1,
            "type": "byte",
            "special_tokens": list(self._specials),
        }
        write_text(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ByteTokenizer:
        """Read what `save` wrote."""
        doc = _load_doc(path, "byte")
        return cls(doc.get("special_tokens") or [])


class CharTokenizer:
    """One id per character seen in training (most frequent first), plus `<unk>` and specials."""

    kind = "char"

    def __init__(
        self, chars: Sequence[str], special_tokens: Sequence[str] = (), unk_token: str = "<unk>"
    ) -> None:
        """A character tokenizer over `chars`.

        Args:
            chars: The characters, in id order after the special tokens and `unk_token`.
            special_tokens: Special token texts, given the first ids.
            unk_token: The token for characters outside `chars`.
        """
        names = _check_specials([*special_tokens, unk_token])
        self._specials = {s: i for i, s in enumerate(names)}
        self._unk = self._specials[unk_token]
        self._unk_token = unk_token
        self._chars = [c for c in dict.fromkeys(chars) if len(c) == 1]
        self._ids = {c: len(names) + i for i, c in enumerate(self._chars)}
        self._by_id = {i: c for c, i in self._ids.items()} | {
            i: s for s, i in self._specials.items()
        }

    @classmethod
    def train(
        cls,
        files: Any,
        vocab_size: int = 1024,
        special_tokens: Sequence[str] = (),
        unk_token: str = "<unk>",
        **_: Any,
    ) -> CharTokenizer:
        """Keep the `vocab_size` - specials - 1 most frequent characters of files or texts."""
        counts: Counter[str] = Counter()
        if not is_texts(files):
            for path in expand_corpus(files):
                with open_text(path) as f:
                    for line in f:
                        counts.update(line)
        else:
            for text in files:
                counts.update(text)
        room = vocab_size - len(_check_specials(special_tokens)) - 1
        if room < 1:
            raise UsageError(f"vocab_size {vocab_size} leaves no room for characters")
        chars = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:room]]
        return cls(chars, special_tokens, unk_token)

    @property
    def vocab_size(self) -> int:
        """Specials, `<unk>` and characters."""
        return len(self._specials) + len(self._chars)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id (including the unknown token)."""
        return dict(self._specials)

    def encode(self, text: str, allowed_special: Literal["all"] | Iterable[str] = ()) -> list[int]:
        """One id per character (`<unk>` for unknown ones); allowed specials become their ids."""
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        specials = {s: i for s, i in self._specials.items() if s in allowed}
        out: list[int] = []
        get, unk = self._ids.get, self._unk
        for piece, sid in _split_specials(text, specials):
            if sid is None:
                out.extend(get(c, unk) for c in piece)
            else:
                out.append(sid)
        return out

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int], errors: Literal["replace", "strict"] = "replace") -> str:
        """The text of `ids` (unknown characters come back as the unknown token)."""
        try:
            return "".join(self._by_id[i] for i in ids)
        except KeyError as exc:
            raise UsageError(f"token id {exc.args[0]} is not in the vocabulary") from None

    def save(self, path: str | Path) -> None:
        """Write a small JSON file, atomically."""
        specials = [s for s in self._specials if s != self._unk_token]
        doc = {
            "format": "llmkit-tokenizer",
            "version": 1,
            "type": "char",
            "special_tokens": specials,
            "unk_token": self._unk_token,
            "chars": "".join(self._chars),
        }
        write_text(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read what `save` wrote."""
        doc = _load_doc(path, "char")
        return cls(list(doc.get("chars", "")), doc.get("special_tokens") or [], doc["unk_token"])


def _load_doc(path: str | Path, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "llmkit-tokenizer":
        raise UsageError(f'{path}: not an llmkit tokenizer file (no "format": "llmkit-tokenizer")')
    if doc.get("type") != kind:
        raise UsageError(f"{path}: a {doc.get('type')!r} tokenizer, not {kind!r}")
    if doc.get("version") != 1:
        raise UsageError(f"{path}: format version {doc.get('version')!r}; this llmkit reads 1")
    if kind == "char" and not isinstance(doc.get("unk_token"), str):
        raise UsageError(f"{path}: field 'unk_token' must be a string")
    return doc
