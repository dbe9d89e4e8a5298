"""Memory-mapped token shards: writing them safely, and reading them back by split.

A split is a sequence of shards ``<split>-NNNNN.bin`` (raw little-endian uint16 or uint32 tokens,
each document followed by the end-of-document id, readable with ``numpy.memmap``) and, beside each,
``<split>-NNNNN.idx.npy`` (uint64 start offset of every document in the shard). Shards are written
under a ``.tmp`` name and renamed when complete; ``manifest.json`` is written last, so a directory
without a manifest that lists a shard never holds a shard that looks complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def token_dtype(vocab_size: int) -> str:
    """The smallest unsigned dtype that holds every id: uint16 when the vocabulary fits."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


@dataclass
class ShardInfo:
    """One written shard: file names and counts."""

    file: str
    index: str
    tokens: int
    documents: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the manifest."""
        return {
            "file": self.file,
            "index": self.index,
            "tokens": self.tokens,
            "documents": self.documents,
        }


def frame(ids: Any, lengths: Any, eos_id: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, sizes): documents' ids end to end with the EOS id after each, as shards hold them,
    and each document's size with its EOS."""
    import numpy as np

    sizes = np.asarray(lengths, dtype=np.int64) + 1
    ends = np.cumsum(sizes)
    tokens = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.dtype(dtype).newbyteorder("<"))
    body = np.ones(len(tokens), dtype=bool)
    body[ends - 1] = False
    tokens[body] = ids
    tokens[ends - 1] = eos_id
    return tokens, sizes


class ShardWriter:
    """Appends documents (token arrays, EOS added) to numbered shards of at most ~`shard_tokens`."""

    def __init__(
        self, out_dir: Path, split: str, dtype: str, eos_id: int, shard_tokens: int
    ) -> None:
        import numpy as np

        self.out_dir = out_dir
        self.split = split
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.eos = np.array([eos_id], dtype=self.dtype)
        self.shard_tokens = shard_tokens
        self.shards: list[ShardInfo] = []
        self.temps: list[Path] = []
        self._fh: Any = None
        self._starts: list[int] = []
        self._tokens = 0
        self._pending: list[Any] = []
        self._pending_tokens = 0

    @property
    def tokens(self) -> int:
        """Tokens written so far (EOS included)."""
        return sum(s.tokens for s in self.shards) + self._tokens + self._pending_tokens

    @property
    def documents(self) -> int:
        """Documents written so far."""
        return sum(s.documents for s in self.shards) + len(self._starts)

    def _name(self, i: int) -> str:
        return f"{self.split}-{i:05d}"

    def add(self, ids: Any) -> None:
        """Append one document's ids (a sequence or array), followed by the EOS id."""
        import numpy as np

        # a copy: a view would keep the whole chunk it came from alive until the next flush
        arr = np.array(ids, dtype=self.dtype, copy=True)
        self._open()
        self._starts.append(self._tokens + self._pending_tokens)
        self._pending.append(arr)
        self._pending.append(self.eos)
        self._pending_tokens += len(arr) + 1
        if self._pending_tokens >= 1 << 20:
            self._flush()
        if self._tokens + self._pending_tokens >= self.shard_tokens:
            self._close_shard()

    def add_framed(self, tokens: Any, sizes: Any) -> None:
        """Append documents given as `frame` makes them: `tokens` with each document's EOS already
        in place, `sizes` tokens each (EOS included).

        The shards are the same as from `add` per document; the tokens are only sliced at shard
        boundaries, never copied one document at a time.
        """
        import numpy as np

        sizes = np.asarray(sizes, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=self.dtype)
        ends = np.cumsum(sizes)
        done, n = 0, len(sizes)
        while done < n:
            self._open()
            filled = self._tokens + self._pending_tokens
            base = int(ends[done - 1]) if done else 0
            # the shard closes after the first document that brings it to shard_tokens
            last = int(np.searchsorted(ends, base + self.shard_tokens - filled, side="left"))
            stop = min(last + 1, n)
            doc_ends = ends[done:stop] - base
            size = int(doc_ends[-1])
            self._starts.extend((filled + doc_ends - sizes[done:stop]).tolist())
            self._pending.append(tokens[base : base + size])
            self._pending_tokens += size
            done = stop
            if self._pending_tokens >= 1 << 20:
                self._flush()
            if self._tokens + self._pending_tokens >= self.shard_tokens:
                self._close_shard()

    def _open(self) -> None:
        """Start the next shard's temporary file if none is open."""
        if self._fh is None:
            name = self._name(len(self.shards))
            tmp = self.out_dir / f"{name}.bin.tmp"
            self.temps.append(tmp)
            self._fh = open(tmp, "wb")  # noqa: SIM115

    def _flush(self) -> None:
        import numpy as np

        if self._pending:
            np.concatenate(self._pending).tofile(self._fh)
            self._tokens += self._pending_tokens
            self._pending = []
            self._pending_tokens = 0

    def _close_shard(self) -> None:
        import numpy as np

        if self._fh is None:
            return
        self._flush()
        self._fh.close()
        self._fh = None
        name = self._name(len(self.shards))
        idx_tmp = self.out_dir / f"{name}.idx.npy.tmp"
        self.temps.append(idx_tmp)
        with open(idx_tmp, "wb") as fh:
            np.save(fh, np.asarray(self._starts, dtype=np.uint64))
        os.replace(idx_tmp, self.out_dir / f"{name}.idx.npy")
        os.replace(self.out_dir / f"{name}.bin.tmp", self.out_dir / f"{name}.bin")
        self.shards.append(
            ShardInfo(f"{name}.bin", f"{name}.idx.npy", self._tokens, len(self._starts))
        )
        self._starts = []
        self._tokens = 0

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard written."""
        self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Close and delete everything this writer wrote (used when a run fails)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for tmp in self.temps:
            tmp.unlink(missing_ok=True)
        for shard in self.shards:
            (self.out_dir / shard.file).unlink(missing_ok=True)
            (self.out_dir / shard.index).unlink(missing_ok=True)


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared directory, or a clear error if it is missing or damaged."""
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{out_dir}: no {MANIFEST}; run `llmkit data prepare` (an interrupted run leaves none)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path}: not an llmkit shard manifest (format {FORMAT_VERSION})")
    return data


def shards_complete(out_dir: Path, manifest: dict[str, Any]) -> bool:
    """Whether every shard the manifest lists exists with the size it records."""
    itemsize = 2 if manifest["dtype"] == "uint16" else 4
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            bin_path = out_dir / shard["file"]
            if not bin_path.is_file() or bin_path.stat().st_size != shard["tokens"] * itemsize:
                return False
            if not (out_dir / shard["index"]).is_file():
                return False
    return True


class TokenShards:
    """The tokens of one split of a prepared directory, as one long memory-mapped sequence.

    Args:
        path: The directory `llmkit data prepare` wrote.
        split: ``train`` or ``validation``.
    """

    def __init__(self, path: str | Path, split: str = "train") -> None:
        import numpy as np

        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        splits = self.manifest["splits"]
        if split not in splits:
            raise UsageError(f"{path}: no split '{split}'; splits: {', '.join(splits)}")
        if not shards_complete(self.path, self.manifest):
            raise UsageError(f"{path}: shards do not match the manifest; run prepare again")
        self.split = split
        self.dtype = np.dtype(self.manifest["dtype"]).newbyteorder("<")
        self.eos_id: int = self.manifest["eos_id"]
        self.vocab_size: int = self.manifest["vocab_size"]
        self._maps: list[np.ndarray] = []
        self._doc_starts: list[np.ndarray] = []
        for shard in splits[split]["shards"]:
            if shard["tokens"] == 0:
                continue
            self._maps.append(np.memmap(self.path / shard["file"], dtype=self.dtype, mode="r"))
            self._doc_starts.append(np.load(self.path / shard["index"]))
        sizes = [len(m) for m in self._maps]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        doc_counts = [len(d) for d in self._doc_starts]
        self._doc_offsets = np.concatenate([[0], np.cumsum(doc_counts, dtype=np.int64)])

    def __len__(self) -> int:
        """Number of tokens in the split (EOS included)."""
        return int(self._offsets[-1])

    @property
    def num_documents(self) -> int:
        """Number of documents in the split."""
        return int(self._doc_offsets[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) of the concatenated split, as int64 (copied)."""
        import numpy as np

        if start < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside 0..{len(self)}")
        out = np.empty(length, dtype=np.int64)
        i = int(np.searchsorted(self._offsets, start, side="right")) - 1
        filled = 0
        while filled < length:
            local = start + filled - int(self._offsets[i])
            take = min(length - filled, len(self._maps[i]) - local)
            out[filled : filled + take] = self._maps[i][local : local + take]
            filled += take
            i += 1
        return out

    def document(self, index: int) -> np.ndarray:
        """The ids of document `index` (without its EOS)."""
        import numpy as np

        if not 0 <= index < self.num_documents:
            raise IndexError(f"document {index} outside 0..{self.num_documents}")
        s = int(np.searchsorted(self._doc_offsets, index, side="right")) - 1
        local = index - int(self._doc_offsets[s])
        starts = self._doc_starts[s]
        lo = int(starts[local])
        hi = int(starts[local + 1]) - 1 if local + 1 < len(starts) else len(self._maps[s]) - 1
        return np.asarray(self._maps[s][lo:hi], dtype=np.int64)

    def documents(self) -> Any:
        """Every document's ids, in order."""
        for i in range(self.num_documents):
            yield self.document(i)
