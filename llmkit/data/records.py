"""The record every reader yields and every cleaner passes on, and the counts readers keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Record:
    """One document: its text, an optional label (classification) or target (seq2seq), and origin."""

    text: str | None
    label: str | None = None
    target: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, leaving out fields that are not set."""
        out: dict[str, Any] = {"text": self.text}
        if self.label is not None:
            out["label"] = self.label
        if self.target is not None:
            out["target"] = self.target
        return out


@dataclass
class ReadStats:
    """What a reader met on its way: files, records, and problems it repaired or skipped."""

    files: int = 0
    records: int = 0
    bytes: int = 0
    invalid_utf8: int = 0
    invalid_utf8_records: int = 0
    skipped_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form for the cleaning report."""
        return {
            "files": self.files,
            "records": self.records,
            "bytes": self.bytes,
            "invalid_utf8_sequences": self.invalid_utf8,
            "invalid_utf8_records": self.invalid_utf8_records,
            "skipped_lines": self.skipped_lines,
            "skipped_examples": self.skipped_examples,
        }

    def skip(self, where: str, max_examples: int = 5) -> None:
        """Count one skipped line, keeping the first few locations as examples."""
        self.skipped_lines += 1
        if len(self.skipped_examples) < max_examples:
            self.skipped_examples.append(where)


def decode_utf8(raw: bytes, stats: ReadStats) -> str:
    """Decode UTF-8, replacing invalid sequences with U+FFFD and counting them in `stats`."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
        stats.invalid_utf8 += max(bad, 1)
        stats.invalid_utf8_records += 1
        return text
