"""Duplicate removal: exact (content hash) and near duplicates (MinHash + LSH, vectorised with NumPy).

Both are streaming: the first copy of a document is kept, later copies are dropped, and the state
kept per unique document is small (16 bytes for exact; a signature of `num_perm` 32-bit values for
near duplicates when candidates are verified).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from llmkit.data.cleaners import Cleaner
from llmkit.data.records import Record
from llmkit.errors import UsageError

if TYPE_CHECKING:
    import numpy as np


class ExactDedup(Cleaner):
    """Drop records whose text (and target) was seen before, by a 128-bit content hash.

    Args:
        normalize: Compare texts as written (``none``), ignoring whitespace differences
            (``whitespace``), or also ignoring case (``lower``).
    """

    name = "dedup_exact"
    cross_document = True
    changes_text = False

    def __init__(self, normalize: Literal["none", "whitespace", "lower"] = "whitespace") -> None:
        self.normalize = normalize
        self._seen: dict[bytes, str] = {}
        self.notes: dict[int, str] = {}
        # precomputed `features` of a batch (or None), set by `prepare` when workers computed them
        self.given: Callable[[list[Record]], Any] | None = None

    def _key(self, rec: Record) -> bytes:
        text = rec.text or ""
        if rec.target is not None:
            text = f"{text}\x00{rec.target}"
        if self.normalize != "none":
            text = " ".join(text.split())
            if self.normalize == "lower":
                text = text.lower()
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def features(self, batch: list[Record]) -> list[bytes | None]:
        """Each record's content hash (None without text): what `apply` compares, computed from
        the record alone, so `prepare`'s workers can compute it ahead."""
        return [None if rec.text is None else self._key(rec) for rec in batch]

    def apply(self, batch: list[Record]) -> list[Record | None]:
        out: list[Record | None] = []
        self.notes = {}
        seen = self._seen
        keys = self.given(batch) if self.given is not None else None
        if keys is None:
            keys = self.features(batch)
        for i, rec in enumerate(batch):
            key = keys[i]
            if rec.text is None or key is None:
                out.append(rec)
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = rec.source
                out.append(rec)
            else:
                self.notes[i] = f"same as {first}" if first else "exact duplicate"
                out.append(None)
        return out

    def config(self) -> dict[str, object]:
        return {"normalize": self.normalize}


_P = 0x01000193  # FNV-32 prime: odd, so invertible mod 2**32
_Q = 0x9E3779B1  # combines word hashes into a shingle hash


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH (bands, rows) minimising the sum of false-positive and false-negative probability mass."""
    import numpy as np

    best = (1, num_perm)
    best_err = float("inf")
    xs = np.linspace(0.0, 1.0, 201)
    for b in range(1, num_perm + 1):
        r = num_perm // b
        if r < 1:
            break
        p = 1.0 - (1.0 - xs**r) ** b
        fp = float(np.trapezoid(np.where(xs < threshold, p, 0.0), xs))
        fn = float(np.trapezoid(np.where(xs >= threshold, 1.0 - p, 0.0), xs))
        if fp + fn < best_err:
            best_err = fp + fn
            best = (b, r)
    return best


class MinHasher:
    """Vectorised MinHash signatures of word (or character) shingles for a batch of texts.

    Word shingles ignore case (ASCII) and whitespace differences: each word gets a polynomial hash
    from a prefix sum over the bytes, and a shingle combines the hashes of `shingle` words; all of it
    is NumPy over the batch, with 32-bit arithmetic. Each of the `num_perm` permutations is
    ``a*x + b mod 2**32`` with odd ``a`` (a bijection), applied to a block of shingles at a time.
    """

    def __init__(
        self, num_perm: int = 128, shingle: int = 5, unit: str = "word", seed: int = 0
    ) -> None:
        import numpy as np

        self.num_perm = num_perm
        self.shingle = shingle
        self.unit = unit
        rng = np.random.default_rng(seed)
        odd = rng.integers(0, 2**31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self._a = odd[:, None]
        self._b = rng.integers(0, 2**32, num_perm, dtype=np.uint32)[:, None]
        self._pow = np.ones(1, dtype=np.uint32)
        self._ipow = np.ones(1, dtype=np.uint32)
        lower = np.arange(256, dtype=np.uint8)
        lower[65:91] += 32
        self._lower = lower
        space = np.zeros(256, dtype=bool)
        space[[9, 10, 11, 12, 13, 32]] = True
        self._space = space

    def _powers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """P**i and P**-i mod 2**32 for i < n (grown and cached)."""
        import numpy as np

        if len(self._pow) < n:
            size = max(n, 2 * len(self._pow))
            one = np.ones(1, np.uint32)
            self._pow = np.concatenate(
                [one, np.cumprod(np.full(size - 1, _P, np.uint32), dtype=np.uint32)]
            )
            inv = pow(_P, -1, 1 << 32)
            self._ipow = np.concatenate(
                [one, np.cumprod(np.full(size - 1, inv, np.uint32), dtype=np.uint32)]
            )
        return self._pow, self._ipow

    def _span_hashes(self, arr: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Polynomial hash of each byte span arr[s:e], independent of where the span lies."""
        import numpy as np

        n = len(arr)
        pw, ipw = self._powers(n)
        prefix = np.zeros(n + 1, dtype=np.uint32)
        np.cumsum((arr.astype(np.uint32) + np.uint32(1)) * ipw[:n], dtype=np.uint32, out=prefix[1:])
        h = (prefix[e] - prefix[s]) * pw[e - 1]
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        return h

    def shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of each text's shingles, and the index of the text each belongs to."""
        import numpy as np

        if self.unit == "char":
            texts = [" ".join(t.lower().split()) for t in texts]
        data = "\n".join(texts).encode("utf-8", "surrogatepass")
        arr = self._lower[np.frombuffer(data, dtype=np.uint8)]
        n = len(arr)
        if n == 0:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        lens = np.fromiter((len(t.encode("utf-8", "surrogatepass")) for t in texts), np.int64)
        doc_start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
        k = self.shingle
        if self.unit == "word":
            word = ~self._space[arr]
            edges = np.flatnonzero(np.diff(np.concatenate([[False], word, [False]]).view(np.int8)))
            starts, ends = edges[0::2], edges[1::2]
            doc = np.searchsorted(doc_start, starts, side="right") - 1
            wh = self._span_hashes(arr, starts, ends)
            m = len(wh) - k + 1
            if m > 0:
                same = doc[:m] == doc[k - 1 :]
                sh = np.zeros(m, dtype=np.uint32)
                for t in range(k):
                    sh = sh * np.uint32(_Q) + wh[t : t + m]
                h, d = sh[same], doc[:m][same]
            else:
                h, d = np.zeros(0, np.uint32), np.zeros(0, np.int64)
            # documents with fewer than k words: one shingle of all their words
            counts = np.bincount(doc, minlength=len(texts))
            short = np.flatnonzero((counts > 0) & (counts < k))
            if len(short):
                first = np.searchsorted(doc, short, side="left")
                last = np.searchsorted(doc, short, side="right")
                extra = np.zeros(len(short), dtype=np.uint32)
                for t in range(k - 1):  # fold word t of each short document in, where it has one
                    idx = first + t
                    has = idx < last
                    extra[has] = extra[has] * np.uint32(_Q) + wh[idx[has]]
                h = np.concatenate([h, extra])
                d = np.concatenate([d, short])
        else:
            pos = np.arange(n - k + 1) if n >= k else np.zeros(0, np.int64)
            doc_end = doc_start + lens
            dpos = np.searchsorted(doc_start, pos, side="right") - 1
            ok = pos + k <= doc_end[dpos]
            s, d = pos[ok], dpos[ok]
            e = s + k
            counts = np.bincount(d, minlength=len(texts))
            short = np.flatnonzero((counts == 0) & (lens > 0))
            if len(short):
                s = np.concatenate([s, doc_start[short]])
                e = np.concatenate([e, doc_end[short]])
                d = np.concatenate([d, short])
            h = self._span_hashes(arr, s, e)
        if not np.all(d[:-1] <= d[1:]):
            order = np.argsort(d, kind="stable")
            h, d = h[order], d[order]
        return h, d

    def signatures(
        self, texts: list[str], chunk: int = 4096, group_chars: int = 1 << 20
    ) -> np.ndarray:
        """MinHash signatures, shape (len(texts), num_perm) uint32; all-ones rows for empty texts.

        Texts are taken in groups of about `group_chars` characters, which bounds the memory of
        the vectorised shingling whatever the batch size.
        """
        import numpy as np

        groups: list[np.ndarray] = []
        start, size = 0, 0
        for i, text in enumerate(texts):
            size += len(text)
            if size >= group_chars:
                groups.append(self._signatures(texts[start : i + 1], chunk))
                start, size = i + 1, 0
        if start < len(texts) or not groups:
            groups.append(self._signatures(texts[start:], chunk))
        return groups[0] if len(groups) == 1 else np.concatenate(groups)

    def _signatures(self, texts: list[str], chunk: int) -> np.ndarray:
        import numpy as np

        hashes, doc = self.shingles(texts)
        sig = np.full((len(texts), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        for lo in range(0, len(hashes), chunk):
            hc, dc = hashes[lo : lo + chunk], doc[lo : lo + chunk]
            vals = self._a * hc[None, :] + self._b  # a bijection of 32-bit values per row
            bounds = np.flatnonzero(np.concatenate([[True], dc[1:] != dc[:-1]]))
            mins = np.minimum.reduceat(vals, bounds, axis=1)
            ids = dc[bounds]
            sig[ids] = np.minimum(sig[ids], mins.T)
        return sig


class MinHashDedup(Cleaner):
    """Drop near duplicates: MinHash signatures of shingles, banded LSH, then a signature check.

    Args:
        threshold: Estimated Jaccard similarity of shingle sets at or above which a record is a
            near duplicate of an earlier one.
        num_perm: Number of hash permutations (signature length): more is more accurate, slower.
        shingle: Shingle size, in words (or characters when unit is ``char``).
        unit: Shingles of ``word`` n-grams or ``char`` (byte) n-grams of the normalised text.
        verify: Compare candidate signatures before dropping (better precision; keeps signatures).
        seed: Seed of the hash permutations.
    """

    name = "dedup_minhash"
    cross_document = True
    changes_text = False

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle: int = 5,
        unit: Literal["word", "char"] = "word",
        verify: bool = True,
        seed: int = 0,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"dedup_minhash: threshold must be in (0, 1], got {threshold}")
        if num_perm < 2 or shingle < 1:
            raise UsageError("dedup_minhash: num_perm must be >= 2 and shingle >= 1")
        import numpy as np

        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self.unit = unit
        self.verify = verify
        self.seed = seed
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        self._hasher = MinHasher(num_perm, shingle, unit, seed)
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(self.bands)]
        self._sigs = np.zeros((1024, num_perm), dtype=np.uint32)
        self._sources: list[str] = []
        self.notes: dict[int, str] = {}
        # precomputed `features` of a batch (or None), set by `prepare` when workers computed them
        self.given: Callable[[list[Record]], Any] | None = None

    def config(self) -> dict[str, object]:
        return {
            k: getattr(self, k)
            for k in ("threshold", "num_perm", "shingle", "unit", "verify", "seed")
        }

    def _store(self, sig: Any, source: str) -> int:
        import numpy as np

        idx = len(self._sources)
        if idx >= len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.zeros_like(self._sigs)])
        self._sigs[idx] = sig
        self._sources.append(source)
        return idx

    def features(self, batch: list[Record]) -> Any:
        """The records' MinHash signatures, one row each: what `apply` compares, computed from
        the record alone, so `prepare`'s workers can compute them ahead."""
        return self._hasher.signatures([rec.text or "" for rec in batch])

    def apply(self, batch: list[Record]) -> list[Record | None]:
        import numpy as np

        self.notes = {}
        given = self.given(batch) if self.given is not None else None
        sigs = self.features(batch) if given is None else np.asarray(given, dtype=np.uint32)
        empty = np.all(sigs == np.iinfo(np.uint32).max, axis=1)
        r = self.rows
        keys = [
            np.ascontiguousarray(sigs[:, b * r : (b + 1) * r]).view(f"V{4 * r}").ravel()
            for b in range(self.bands)
        ]
        out: list[Record | None] = []
        for i, rec in enumerate(batch):
            if rec.text is None or empty[i]:
                out.append(rec)
                continue
            dup_of = -1
            band_keys = [keys[b][i].tobytes() for b in range(self.bands)]
            for b, key in enumerate(band_keys):
                cand = self._buckets[b].get(key)
                if cand is None:
                    continue
                if not self.verify:
                    dup_of = cand
                    break
                sim = float(np.mean(self._sigs[cand] == sigs[i]))
                if sim >= self.threshold:
                    dup_of = cand
                    break
            if dup_of >= 0:
                src = self._sources[dup_of] if dup_of < len(self._sources) else ""
                self.notes[i] = f"near duplicate of {src}" if src else "near duplicate"
                out.append(None)
                continue
            idx = self._store(sigs[i], rec.source) if self.verify else len(self._sources)
            if not self.verify:
                self._sources.append(rec.source)
            for b, key in enumerate(band_keys):
                self._buckets[b].setdefault(key, idx)
            out.append(rec)
        return out


def jaccard(a: str, b: str, shingle: int = 5) -> float:
    """Exact Jaccard similarity of two texts' word shingle sets (for tests and reports)."""

    def sh(t: str) -> set[tuple[str, ...]]:
        w = t.lower().split()
        if len(w) < shingle:
            return {tuple(w)} if w else set()
        return {tuple(w[i : i + shingle]) for i in range(len(w) - shingle + 1)}

    x, y = sh(a), sh(b)
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


__all__ = ["ExactDedup", "MinHashDedup", "MinHasher", "jaccard", "optimal_bands"]
