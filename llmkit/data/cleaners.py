"""Cleaners (`cleaner` components): normalisation, noise removal, missing values, filters.

A cleaner takes a batch of records and returns, for each, the cleaned record or None (dropped).
Batches let the duplicate finders vectorise; `CleaningPipeline` runs cleaners in order and keeps
the per-step report. Text cleaners leave records without text alone (the ``missing`` step decides
what happens to them).
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

from llmkit.data.records import Record
from llmkit.errors import UsageError


class Cleaner:
    """Base of every cleaner: `apply` maps a batch of records to cleaned records or None (dropped)."""

    name = "cleaner"
    # True for a cleaner whose verdict on a record depends on other records (dedup): `prepare`
    # runs it, and every cleaner after it, in one process in reading order.
    cross_document = False
    # False for a cleaner that only keeps or drops records, never rewriting them (dedup)
    changes_text = True

    def apply(self, batch: list[Record]) -> list[Record | None]:
        """Clean a batch; the result has one entry per input record, None where it was dropped."""
        raise NotImplementedError

    def config(self) -> dict[str, object]:
        """The settings that change the output (for the manifest and report)."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and k not in ("name", "notes", "given")
        }


class TextCleaner(Cleaner):
    """A cleaner that rewrites each record's text (and seq2seq target) with `transform`."""

    apply_to_target = True

    def transform(self, text: str) -> str:
        """The cleaned text."""
        raise NotImplementedError

    def apply(self, batch: list[Record]) -> list[Record | None]:
        out: list[Record | None] = []
        transform = self.transform
        for rec in batch:
            if rec.text is not None:
                rec.text = transform(rec.text)
            if self.apply_to_target and rec.target is not None:
                rec.target = transform(rec.target)
            out.append(rec)
        return out


class Filter(Cleaner):
    """A cleaner that keeps or drops whole records."""

    def keep(self, record: Record) -> bool:
        """Whether `record` stays."""
        raise NotImplementedError

    def apply(self, batch: list[Record]) -> list[Record | None]:
        keep = self.keep
        return [rec if rec.text is None or keep(rec) else None for rec in batch]


# -- normalisation -----------------------------------------------------------------------------


class Normalize(TextCleaner):
    """Unicode normalisation (NFC keeps meaning; NFKC also folds compatibility forms like ﬁ, ①, ＡＢＣ).

    Args:
        form: The Unicode normal form.
    """

    def __init__(self, form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC") -> None:
        self.form = form
        self.name = form.lower()

    def transform(self, text: str) -> str:
        if text.isascii() or unicodedata.is_normalized(self.form, text):
            return text
        return unicodedata.normalize(self.form, text)


def nfc() -> Normalize:
    """Unicode NFC normalisation (canonical composition)."""
    return Normalize("NFC")


def nfkc() -> Normalize:
    """Unicode NFKC normalisation (also folds ligatures, full-width and circled forms)."""
    return Normalize("NFKC")


class Whitespace(TextCleaner):
    """Collapse runs of spaces and tabs inside lines, trim line ends, and allow one blank line.

    Args:
        keep_newlines: Keep line breaks (paragraphs stay paragraphs); if false, all whitespace
            becomes one space.
        keep_indent: Keep leading indentation (code blocks stay readable).
    """

    name = "whitespace"

    def __init__(self, keep_newlines: bool = True, keep_indent: bool = True) -> None:
        self.keep_newlines = keep_newlines
        self.keep_indent = keep_indent

    def transform(self, text: str) -> str:
        if not self.keep_newlines:
            return " ".join(text.split())
        out: list[str] = []
        blank = 0
        keep_indent = self.keep_indent
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            body = line.strip()
            if not body:
                blank += 1
                continue
            if out and blank:
                out.append("")
            blank = 0
            words = body.split()
            if len(words) > 1:
                body = " ".join(words)
            if keep_indent and line[:1].isspace():
                body = line[: len(line) - len(line.lstrip())] + body
            out.append(body)
        return "\n".join(out)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_ASCII = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_FORMAT = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_CONTROL_OR_FORMAT = re.compile(f"{_CONTROL.pattern[:-1]}{_FORMAT.pattern[1:-1]}]")  # one pass


class ControlChars(TextCleaner):
    """Remove control characters (keeping tab and newline) and, optionally, invisible format marks.

    Args:
        format_chars: Also remove zero-width spaces/joiners, direction marks, soft hyphens and BOMs.
    """

    name = "control_chars"

    def __init__(self, format_chars: bool = True) -> None:
        self.format_chars = format_chars

    def transform(self, text: str) -> str:
        if "\r" in text:  # one quick scan; most text has no CR to rewrite
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text.isascii():  # bytes.translate deletes in one C pass, several times faster than re
            raw = text.encode("ascii")
            kept = raw.translate(None, _CONTROL_ASCII)
            return text if len(kept) == len(raw) else kept.decode("ascii")
        return (_CONTROL_OR_FORMAT if self.format_chars else _CONTROL).sub("", text)


class Lowercase(TextCleaner):
    """Lower-case the text (Unicode-aware)."""

    name = "lowercase"

    def transform(self, text: str) -> str:
        return text.lower()


# -- noise ---------------------------------------------------------------------------------------

# The elements of the HTML Living Standard plus the obsolete ones still found in old pages; a
# `<word>` whose name is not here (`<mask>`, `<plugin>`, `<stdin>`) is text, not markup.
HTML_ELEMENTS = frozenset((
    "a", "abbr", "acronym", "address", "applet", "area", "article", "aside", "audio", "b", "base",
    "basefont", "bdi", "bdo", "bgsound", "big", "blink", "blockquote", "body", "br", "button",
    "canvas", "caption", "center", "cite", "code", "col", "colgroup", "data", "datalist", "dd",
    "del", "details", "dfn", "dialog", "dir", "div", "dl", "dt", "em", "embed", "fieldset",
    "figcaption", "figure", "font", "footer", "form", "frame", "frameset", "h1", "h2", "h3", "h4",
    "h5", "h6", "head", "header", "hgroup", "hr", "html", "i", "iframe", "img", "input", "ins",
    "kbd", "keygen", "label", "legend", "li", "link", "main", "map", "mark", "marquee", "menu",
    "menuitem", "meta", "meter", "nav", "nobr", "noembed", "noframes", "noscript", "object", "ol",
    "optgroup", "option", "output", "p", "param", "picture", "plaintext", "pre", "progress", "q",
    "rb", "rp", "rt", "rtc", "ruby", "s", "samp", "search", "script", "section", "select", "slot",
    "small", "source", "span", "strike", "strong", "style", "sub", "summary", "sup", "table",
    "tbody", "td", "template", "textarea", "tfoot", "th", "thead", "time", "title", "tr", "track",
    "tt", "u", "ul", "var", "video", "wbr", "xmp"
))  # fmt: skip
_HTML_BLOCKS = frozenset((
    "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td",
    "th", "tr", "ul"
))  # fmt: skip
_HTML_DROP = re.compile(
    r"<(script|style|noscript)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<!doctype\b[^>]*>|<\?xml\b.*?\?>",
    re.I | re.S,
)
# A start or end tag: a name, then attributes whose quoted values may hold `<` or `>`.
_HTML_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)(?:\s(?:[^<>\"']|\"[^\"]*\"|'[^']*')*)?/?>")


def _tag(match: re.Match[str]) -> str:
    """What a tag becomes: nothing (a line break for block tags) if it is HTML, else itself."""
    name = match.group(1).lower()
    if name not in HTML_ELEMENTS:
        return match.group(0)
    return "\n" if name in _HTML_BLOCKS else ""


class StripHtml(TextCleaner):
    """Remove HTML tags, comments, doctypes, scripts and styles, and decode entities (``&amp;``).

    Only tags of known HTML elements go: ``<mask>``, ``<plugin>`` or ``a < b > c`` stay. Block
    tags (p, div, br, li, ...) become line breaks so that words do not run together.
    """

    name = "strip_html"

    def transform(self, text: str) -> str:
        if "<" in text:
            text = _HTML_DROP.sub("", text)
            text = _HTML_TAG.sub(_tag, text)
        if "&" in text:
            text = html.unescape(text)
        return text


_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]", re.I)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


class Urls(TextCleaner):
    """Remove (or replace) URLs: http(s), ftp and www. addresses.

    Args:
        replacement: Text put where a URL was (e.g. ``<url>``); empty removes it.
    """

    name = "urls"

    def __init__(self, replacement: str = "") -> None:
        self.replacement = replacement

    def transform(self, text: str) -> str:
        if "://" not in text and "www." not in text and "WWW." not in text:
            return text
        return _URL.sub(self.replacement, text)


class Emails(TextCleaner):
    """Remove (or replace) e-mail addresses.

    Args:
        replacement: Text put where an address was (e.g. ``<email>``); empty removes it.
    """

    name = "emails"

    def __init__(self, replacement: str = "") -> None:
        self.replacement = replacement

    def transform(self, text: str) -> str:
        if "@" not in text:
            return text
        return _EMAIL.sub(self.replacement, text)


BOILERPLATE_PATTERNS = [
    r"all rights reserved",
    r"^\W*(?:copyright|\(c\)|©)\s",
    r"\b(?:we|this (?:site|website))\b.*\bcookies\b",
    r"\bcookies?\b.*\b(?:accept|consent|preferences|cookie policy)\b",
    r"^\W*(?:privacy policy|terms of (?:use|service)|cookie policy)\W*$",
    r"^\W*(?:click|tap) here\b",
    r"^\W*(?:subscribe|sign up|sign in|log ?in)\b.*\b(?:newsletter|account|free|now|today)\b",
    r"^\W*share (?:on|this|via)\b",
    r"^\W*(?:skip to (?:main )?content|back to top|read more|continue reading)\W*$",
    r"^\W*(?:follow us|like us) on\b",
    r"^\W*(?:home|menu|search)(?:\s*[|>»/·]\s*\w+)+\W*$",
    r"SPDX-License-Identifier:",
]


# Every built-in pattern needs one of these (lower-case) in its line.
_BOILERPLATE_KEYWORDS = (
    "rights reserved", "copyright", "(c)", "©", "cookie", "privacy", "terms of", "click",
    "tap here", "subscribe", "sign up", "sign in", "log in", "login", "share", "skip to",
    "back to top", "read more", "continue reading", "follow us", "like us", "home", "menu",
    "search", "spdx-license",
)  # fmt: skip


def _keyword_lines(text: str, keywords: tuple[str, ...]) -> list[tuple[int, int]] | None:
    """Sorted (start, end) of the lines holding a keyword (case-insensitive); None if unsure."""
    low = text.lower()
    if len(low) != len(text):  # a few characters change length when lower-cased
        return None
    spans: set[tuple[int, int]] = set()
    for kw in keywords:
        i = low.find(kw)
        while i >= 0:
            lo = text.rfind("\n", 0, i) + 1
            hi = text.find("\n", i)
            hi = len(text) if hi < 0 else hi
            spans.add((lo, hi))
            i = low.find(kw, hi)
    return sorted(spans)


class Boilerplate(TextCleaner):
    """Drop boilerplate lines: copyright and licence tags, cookie and newsletter notices, navigation.

    Only short lines are considered, so a real sentence that mentions a privacy policy stays.

    Args:
        patterns: Extra regular expressions (case-insensitive); a matching short line is dropped.
        defaults: Use the built-in patterns too.
        max_words: Lines longer than this many words are never dropped.
    """

    name = "boilerplate"

    def __init__(
        self, patterns: list[str] | None = None, defaults: bool = True, max_words: int = 16
    ) -> None:
        self.patterns = list(patterns or [])
        self.defaults = defaults
        self.max_words = max_words
        every = (BOILERPLATE_PATTERNS if defaults else []) + self.patterns
        try:
            self._regex = (
                re.compile("|".join(f"(?:{p})" for p in every), re.I | re.M) if every else None
            )
        except re.error as exc:
            raise UsageError(f"boilerplate: bad pattern ({exc})") from None

    def transform(self, text: str) -> str:
        regex = self._regex
        if regex is None:
            return text
        # Only lines holding a keyword of the built-in patterns can match them: find those lines
        # with one fast scan instead of running every pattern over every line.
        candidates = None if self.patterns else _keyword_lines(text, _BOILERPLATE_KEYWORDS)
        if candidates is not None and not candidates:
            return text
        if candidates is None:
            lines = text.split("\n")
            kept = [
                line
                for line in lines
                if len(line.split()) > self.max_words or regex.search(line) is None
            ]
            return "\n".join(kept)
        pieces: list[str] = []
        pos = 0
        for lo, hi in candidates:
            line = text[lo:hi]
            if len(line.split()) <= self.max_words and regex.search(line) is not None:
                pieces.append(text[pos:lo])
                pos = hi + 1  # drop the line and its newline
        if not pieces:
            return text
        pieces.append(text[pos:])
        out = "".join(pieces)
        return out[:-1] if out.endswith("\n") and not text.endswith("\n") else out


@functools.cache
def _punctuation() -> tuple[int, ...]:
    return tuple(
        cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")
    )


class Punctuation(TextCleaner):
    """Remove punctuation (every Unicode P* character).

    Args:
        replacement: Put this instead of each mark (a space keeps ``a,b`` as two words).
    """

    name = "punctuation"

    def __init__(self, replacement: str = "") -> None:
        self.replacement = replacement
        self._table = {cp: (replacement or None) for cp in _punctuation()}

    def transform(self, text: str) -> str:
        return text.translate(self._table)


_STOPWORDS: dict[str, frozenset[str]] = {}


def add_stopwords(language: str, words: Iterable[str]) -> None:
    """Make a stop-word list available to the ``stopwords`` cleaner (plugins call this)."""
    _STOPWORDS[language] = frozenset(w.strip().lower() for w in words if w.strip())


def stopwords(language: str = "en") -> frozenset[str]:
    """The stop words of `language`: added by `add_stopwords` or shipped with llmkit."""
    if language not in _STOPWORDS:
        try:
            data = resources.files("llmkit.data").joinpath("stopwords").joinpath(f"{language}.txt")
            text = data.read_text(encoding="utf-8")
        except (FileNotFoundError, OSError):
            shipped = sorted(
                p.name.removesuffix(".txt")
                for p in resources.files("llmkit.data").joinpath("stopwords").iterdir()
            )
            have = sorted(set(shipped) | set(_STOPWORDS))
            raise UsageError(
                f"no stop-word list for language '{language}'; available: {', '.join(have)}"
            ) from None
        add_stopwords(language, (w for w in text.splitlines() if not w.startswith("#")))
    return _STOPWORDS[language]


_WORD = re.compile(r"(\w+(?:['’]\w+)*)")
_DOUBLE_SPACE = re.compile(r"[^\S\n]{2,}")


class StopWords(TextCleaner):
    """Remove stop words (case-insensitive whole words).

    Args:
        language: Which list: ``en`` ships with llmkit; plugins add others with `add_stopwords`.
        words_file: A file with one stop word per line, used instead of `language`.
    """

    name = "stopwords"

    def __init__(self, language: str = "en", words_file: str | None = None) -> None:
        self.language = language
        self.words_file = words_file
        if words_file:
            try:
                lines = Path(words_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise UsageError(f"{words_file}: cannot read stop words ({exc})") from None
            self._words = frozenset(w.strip().lower() for w in lines if w.strip())
        else:
            self._words = stopwords(language)

    def transform(self, text: str) -> str:
        words = self._words
        parts = _WORD.split(text)  # separators at even, words at odd positions
        parts[1::2] = ["" if w.lower().replace("’", "'") in words else w for w in parts[1::2]]
        return _DOUBLE_SPACE.sub(" ", "".join(parts)).strip()


class Replace(TextCleaner):
    """Replace every match of a regular expression (e.g. drop ``{n}``/``[ugs.]`` notes).

    Args:
        pattern: A Python regular expression.
        replacement: What each match becomes (``\\1`` refers to a group); empty removes it.
        ignore_case: Match case-insensitively.
    """

    name = "replace"

    def __init__(self, pattern: str, replacement: str = "", ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.replacement = replacement
        self.ignore_case = ignore_case
        try:
            self._regex = re.compile(pattern, re.I if ignore_case else 0)
        except re.error as exc:
            raise UsageError(f"replace: bad pattern {pattern!r} ({exc})") from None

    def transform(self, text: str) -> str:
        return self._regex.sub(self.replacement, text)


# -- missing values and filters ---------------------------------------------------------------


class Match(Filter):
    """Keep (or drop) records whose text, target or both match a regular expression.

    Args:
        pattern: A Python regular expression, searched anywhere in the field.
        field: Which side must match: ``text``, ``target`` or ``both``.
        drop: Drop the matching records instead of keeping them.
        ignore_case: Match case-insensitively.
    """

    name = "match"

    def __init__(
        self,
        pattern: str,
        field: Literal["text", "target", "both"] = "text",
        drop: bool = False,
        ignore_case: bool = False,
    ) -> None:
        self.pattern = pattern
        self.field = field
        self.drop = drop
        self.ignore_case = ignore_case
        try:
            self._regex = re.compile(pattern, re.I if ignore_case else 0)
        except re.error as exc:
            raise UsageError(f"match: bad pattern {pattern!r} ({exc})") from None

    def keep(self, record: Record) -> bool:
        search = self._regex.search
        if self.field == "text":
            hit = search(record.text or "") is not None
        elif self.field == "target":
            hit = search(record.target or "") is not None
        else:
            hit = search(record.text or "") is not None and search(record.target or "") is not None
        return hit != self.drop


class FilterLabel(Cleaner):
    """Keep only the records whose label (or target) is one of `keep`, or drop those in `drop`.

    A record without the field is dropped by `keep` (its value is not listed) and kept by `drop`.
    Values compare as text, so ``keep: [1, 2]`` matches the JSON labels ``1`` and ``"2"``.

    Args:
        keep: The values to keep; every other record is dropped.
        drop: The values to drop; every other record stays.
        field: Which field holds the value: ``label`` (classification) or ``target``.
    """

    name = "filter_label"

    def __init__(
        self,
        keep: list[str | int] | None = None,
        drop: list[str | int] | None = None,
        field: Literal["label", "target"] = "label",
    ) -> None:
        if (keep is None) == (drop is None):
            raise UsageError(
                "filter_label: give either keep: [values] or drop: [values] (exactly one)"
            )
        self.keep = None if keep is None else [str(v) for v in keep]
        self.drop = None if drop is None else [str(v) for v in drop]
        self.field = field
        self.notes: dict[int, str] = {}

    def apply(self, batch: list[Record]) -> list[Record | None]:
        self.notes = {}
        out: list[Record | None] = []
        for i, rec in enumerate(batch):
            value = getattr(rec, self.field)
            if self.keep is not None:
                ok = value is not None and value in self.keep
            else:
                ok = value is None or value not in (self.drop or [])
            if not ok:
                self.notes[i] = f"{self.field} {value!r}"
            out.append(rec if ok else None)
        return out


class Missing(Cleaner):
    """Records whose text (or other named field) is null or blank are dropped, or filled.

    Args:
        fields: Which fields must be present: any of ``text``, ``label``, ``target``.
        action: ``drop`` the record, or ``fill`` the field with `fill`.
        fill: The value used when filling.
    """

    name = "missing"

    def __init__(
        self,
        fields: list[Literal["text", "label", "target"]] | None = None,
        action: Literal["drop", "fill"] = "drop",
        fill: str = "",
    ) -> None:
        self.fields = list(fields or ["text"])
        self.action = action
        self.fill = fill

    def apply(self, batch: list[Record]) -> list[Record | None]:
        out: list[Record | None] = []
        for rec in batch:
            ok = True
            for name in self.fields:
                value = getattr(rec, name)
                if value is None or not value or value.isspace():
                    if self.action == "drop":
                        ok = False
                        break
                    setattr(rec, name, self.fill)
            out.append(rec if ok else None)
        return out


class Length(Filter):
    """Keep records whose length lies within bounds, in characters and/or words.

    Args:
        min_chars: Fewest characters.
        max_chars: Most characters (None: no limit).
        min_words: Fewest whitespace-separated words.
        max_words: Most words (None: no limit).
        target: Apply the same bounds to the target too (seq2seq pairs).
    """

    name = "length"

    def __init__(
        self,
        min_chars: int = 0,
        max_chars: int | None = None,
        min_words: int = 0,
        max_words: int | None = None,
        target: bool = False,
    ) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.min_words = min_words
        self.max_words = max_words
        self.target = target

    def keep(self, record: Record) -> bool:
        if self.target and record.target is not None and not self._fits(record.target):
            return False
        return self._fits(record.text or "")

    def _fits(self, text: str) -> bool:
        n = len(text)
        if n < self.min_chars or (self.max_chars is not None and n > self.max_chars):
            return False
        if self.min_words or self.max_words is not None:
            w = len(text.split())
            if w < self.min_words or (self.max_words is not None and w > self.max_words):
                return False
        return True


_NOT_SYMBOL = re.compile(r"[\w\s]+")


def symbol_ratio(text: str) -> float:
    """Fraction of characters that are neither letters, digits nor whitespace."""
    if not text:
        return 0.0
    return len(_NOT_SYMBOL.sub("", text)) / len(text)


class SymbolRatio(TextCleaner):
    """Drop mostly-symbol lines (rules, ASCII art, markup debris) or whole records.

    Args:
        max_ratio: Highest allowed fraction of characters that are not letters, digits or spaces.
        unit: Judge each ``line`` (dropping bad lines) or the whole ``record``.
        min_chars: Lines shorter than this (after stripping) are judged too; 0 judges all.
    """

    name = "symbol_ratio"
    apply_to_target = False

    def __init__(
        self,
        max_ratio: float = 0.5,
        unit: Literal["line", "record"] = "line",
        min_chars: int = 1,
    ) -> None:
        if not 0.0 <= max_ratio <= 1.0:
            raise UsageError(f"symbol_ratio: max_ratio must be in [0, 1], got {max_ratio}")
        self.max_ratio = max_ratio
        self.unit = unit
        self.min_chars = min_chars

    def transform(self, text: str) -> str:
        ratio = self.max_ratio
        kept = [
            line
            for line in text.split("\n")
            if len(line.strip()) < self.min_chars or symbol_ratio(line.strip()) <= ratio
        ]
        return "\n".join(kept)

    def apply(self, batch: list[Record]) -> list[Record | None]:
        if self.unit == "line":
            return super().apply(batch)
        return [
            rec if rec.text is None or symbol_ratio(rec.text) <= self.max_ratio else None
            for rec in batch
        ]
