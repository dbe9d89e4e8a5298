"""A small pure-Python byte-level BPE (trainer and encoder), the reference the Rust core is tested
against. Written for clarity, not speed: the trainer follows `tokenizers`' BpeTrainer step by step
(a heap of (count, pair) entries each carrying the words to update, lazy count refresh)."""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable


def _bytes_to_unicode() -> dict[int, str]:
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_CHARS = _bytes_to_unicode()
ALPHABET_ORDER = sorted(range(256), key=lambda b: ord(BYTE_CHARS[b]))


def count_words(pieces: Iterable[str]) -> Counter[bytes]:
    """Pre-token counts (each piece as UTF-8 bytes)."""
    return Counter(p.encode("utf-8") for p in pieces)


def train(
    words: Counter[bytes],
    vocab_size: int,
    min_frequency: int = 0,
    specials: list[str] = (),  # type: ignore[assignment]
) -> tuple[list[bytes], list[tuple[int, int]]]:
    """(token bytes by id, merges): specials, then bytes in byte-level character order, then merges."""
    tokens: list[bytes] = [s.encode() for s in dict.fromkeys(specials)]
    ids: dict[bytes, int] = {}
    for b in ALPHABET_ORDER:
        ids[bytes([b])] = len(tokens)
        tokens.append(bytes([b]))
    items = sorted(words.items())
    syms = [[ids[bytes([c])] for c in w] for w, _ in items]
    counts = [c for _, c in items]
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for i, w in enumerate(syms):
        for p in itertools.pairwise(w):
            pair_counts[p] += counts[i]
            where.setdefault(p, set()).add(i)
    # heapq is a min-heap: key (-count, pair) pops the highest count, then the smallest pair.
    heap = [(-pair_counts[p], p, pos) for p, pos in where.items() if pair_counts[p] > 0]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(tokens) < vocab_size and heap:
        neg, pair, pos = heapq.heappop(heap)
        if -neg != pair_counts[pair]:
            heapq.heappush(heap, (-pair_counts[pair], pair, pos))
            continue
        if -neg < 1 or min_frequency > -neg:
            break
        a, b = pair
        new_bytes = tokens[a] + tokens[b]
        if new_bytes not in ids:
            ids[new_bytes] = len(tokens)
            tokens.append(new_bytes)
        new = ids[new_bytes]
        merges.append(pair)
        touched: dict[tuple[int, int], set[int]] = {}
        for i in sorted(pos):
            w = syms[i]
            out: list[int] = []
            j = 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    if out:
                        pair_counts[(out[-1], a)] -= counts[i]
                        pair_counts[(out[-1], new)] += counts[i]
                        touched.setdefault((out[-1], new), set()).add(i)
                    if j + 2 < len(w):
                        pair_counts[(b, w[j + 2])] -= counts[i]
                        pair_counts[(new, w[j + 2])] += counts[i]
                        touched.setdefault((new, w[j + 2]), set()).add(i)
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            syms[i] = out
        for p, where_p in touched.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, where_p))
    return tokens, merges


def encode_piece(
    piece: bytes, byte_ids: dict[int, int], ranks: dict[tuple[int, int], tuple[int, int]]
) -> list[int]:
    """Merge the adjacent pair of lowest rank (leftmost on ties) until none is left."""
    parts = [byte_ids[b] for b in piece]
    while True:
        best = None
        for i in range(len(parts) - 1):
            m = ranks.get((parts[i], parts[i + 1]))
            if m is not None and (best is None or m[0] < best[0]):
                best = (m[0], m[1], i)
        if best is None:
            return parts
        _, new, i = best
        parts[i : i + 2] = [new]


def encoder(
    tokens: list[bytes], merges: list[tuple[int, int]]
) -> tuple[dict[int, int], dict[tuple[int, int], tuple[int, int]]]:
    """(byte -> id, pair -> (rank, new id)) for `encode_piece`."""
    ids = {t: i for i, t in enumerate(tokens)}
    byte_ids = {b: ids[bytes([b])] for b in range(256)}
    ranks: dict[tuple[int, int], tuple[int, int]] = {}
    for r, (a, b) in enumerate(merges):
        ranks[(a, b)] = (r, ids[tokens[a] + tokens[b]])
    return byte_ids, ranks
