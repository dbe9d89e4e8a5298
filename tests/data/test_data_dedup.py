"""Duplicate removal on real text (Python's language reference) with planted duplicates."""

from __future__ import annotations

import random

import numpy as np
import pytest

import llmkit
from llmkit.data.dedup import MinHasher, jaccard, optimal_bands
from llmkit.data.records import Record
from llmkit.errors import UsageError


def reference_texts(min_words: int = 80) -> list[str]:
    """The language-reference topics shipped with every CPython (distinct real documents)."""
    from pydoc_data.topics import topics

    texts = [t for _, t in sorted(topics.items()) if len(t.split()) >= min_words]
    return texts


def perturb(text: str, rng: random.Random, fraction: float) -> str:
    """Replace about `fraction` of the words with other words: a near duplicate."""
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
        words[i] = rng.choice(["kernel", "buffer", "thread", "value", "object"])
    return " ".join(words)


def test_exact_dedup_ignores_whitespace_but_not_words() -> None:
    cleaner = llmkit.create("cleaner", "dedup_exact")
    recs = [
        Record("Lists are mutable sequences.", source="a"),
        Record("Lists  are mutable\nsequences. ", source="b"),
        Record("Lists are Mutable sequences.", source="c"),
        Record("Lists are mutable sequences.", target="Listen sind veränderbar.", source="d"),
    ]
    out = cleaner.apply(recs)
    assert [r is not None for r in out] == [True, False, True, True]
    lower = llmkit.create("cleaner", "dedup_exact", normalize="lower")
    assert [r is not None for r in lower.apply(list(recs[:3]))] == [True, False, False]


def test_signatures_estimate_jaccard() -> None:
    hasher = MinHasher(num_perm=256, shingle=5)
    rng = random.Random(1)
    texts = reference_texts()[:10]
    errors = []
    for text in texts:
        for fraction in (0.02, 0.05, 0.1, 0.2):
            other = perturb(text, rng, fraction)
            sig = hasher.signatures([text, other])
            errors.append(float(np.mean(sig[0] == sig[1])) - jaccard(text, other))
    # the standard error of a 256-permutation estimate is at most 0.031
    assert abs(float(np.mean(errors))) < 0.02
    assert float(np.max(np.abs(errors))) < 0.15


def test_shingles_ignore_case_and_whitespace_and_handle_short_texts() -> None:
    hasher = MinHasher(num_perm=32)
    sig = hasher.signatures(
        ["The Quick brown fox jumps over", "the  quick\nbrown FOX jumps over", "", "two words"]
    )
    assert (sig[0] == sig[1]).all()
    assert (sig[2] == np.iinfo(np.uint32).max).all()
    assert (sig[3] != np.iinfo(np.uint32).max).all()


def test_minhash_finds_planted_near_duplicates_with_high_recall_and_precision() -> None:
    rng = random.Random(0)
    originals = reference_texts()
    assert len(originals) >= 50
    corpus: list[tuple[str, int | None]] = [(t, None) for t in originals]
    for i in rng.sample(range(len(originals)), 40):
        corpus.append((perturb(originals[i], rng, 0.02), i))  # Jaccard about 0.8-0.9
    for i in rng.sample(range(len(originals)), 10):
        corpus.append((originals[i], i))  # exact copies
    head, tail = corpus[: len(originals)], corpus[len(originals) :]
    rng.shuffle(tail)
    corpus = head + tail
    cleaner = llmkit.create("cleaner", "dedup_minhash", threshold=0.7, num_perm=128, shingle=5)
    kept = []
    for lo in range(0, len(corpus), 16):
        batch = [Record(t, source=str(lo + j)) for j, (t, _) in enumerate(corpus[lo : lo + 16])]
        kept.extend(r is not None for r in cleaner.apply(batch))
    planted = [dup is not None for _, dup in corpus]
    dropped = [not k for k in kept]
    true_pos = sum(d and p for d, p in zip(dropped, planted, strict=True))
    recall = true_pos / sum(planted)
    precision = true_pos / max(1, sum(dropped))
    assert recall >= 0.95, recall
    assert precision >= 0.95, precision


def test_minhash_keeps_distinct_documents_that_share_phrases() -> None:
    base = reference_texts()[3]
    rng = random.Random(5)
    far = perturb(base, rng, 0.5)  # Jaccard well under 0.3
    assert jaccard(base, far) < 0.3
    cleaner = llmkit.create("cleaner", "dedup_minhash", threshold=0.8)
    out = cleaner.apply([Record(base, source="a"), Record(far, source="b")])
    assert all(r is not None for r in out)


def test_lsh_band_choice_and_bad_parameters() -> None:
    bands, rows = optimal_bands(0.8, 128)
    assert bands * rows <= 128
    # the S-curve crosses 0.5 near the threshold
    crossing = (1 / bands) ** (1 / rows)
    assert 0.6 < crossing < 0.9
    with pytest.raises(UsageError, match="threshold"):
        llmkit.create("cleaner", "dedup_minhash", threshold=1.5)


def test_signatures_do_not_depend_on_batching() -> None:
    texts = reference_texts()[:30]
    hasher = MinHasher(num_perm=64)
    whole = hasher.signatures(texts)
    grouped = hasher.signatures(texts, group_chars=2000)
    one_by_one = np.concatenate([hasher.signatures([t]) for t in texts])
    assert np.array_equal(whole, grouped) and np.array_equal(whole, one_by_one)
