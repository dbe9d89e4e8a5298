"""Metric throughput against the reference tools, side by side in one run, reported as ratios.

- F1 (macro) and accuracy on N labels, streamed in batches, vs scikit-learn on all labels at once;
- corpus BLEU/chrF streamed in batches vs sacrebleu's `corpus_score` on the whole corpus;
- perplexity from logits vs a bare `F.cross_entropy` over the same batches.

Run: python benches/metrics.py [--labels 1000000] [--segments 5000] [--repeat 3]
Ratios > 1 mean llmkit is slower than the reference.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import sacrebleu
    import torch
    import torch.nn.functional as F
    from sklearn import metrics as skm

    import llmkit

    rows: list[tuple[str, float, float, str]] = []
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 10, args.labels)
    pred = np.where(rng.random(args.labels) < 0.7, gold, rng.integers(0, 10, args.labels))
    batch = 10_000

    def ours_f1() -> float:
        m = llmkit.create("metric", "f1", average="macro")
        for lo in range(0, args.labels, batch):
            m.update(pred[lo : lo + batch], gold[lo : lo + batch])
        return float(m.compute())

    def sk_f1() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(skm.f1_score(gold, pred, average="macro"))

    assert abs(ours_f1() - sk_f1()) < 1e-12
    rows.append(
        ("f1 macro", best_of(ours_f1, args.repeat), best_of(sk_f1, args.repeat), "scikit-learn")
    )

    def ours_acc() -> float:
        m = llmkit.create("metric", "accuracy")
        for lo in range(0, args.labels, batch):
            m.update(pred[lo : lo + batch], gold[lo : lo + batch])
        return float(m.compute())

    rows.append(
        (
            "accuracy",
            best_of(ours_acc, args.repeat),
            best_of(lambda: skm.accuracy_score(gold, pred), args.repeat),
            "scikit-learn",
        )
    )

    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown"]
    rnd = random.Random(0)
    hyps = [" ".join(rnd.choices(words, k=rnd.randint(5, 30))) for _ in range(args.segments)]
    refs = [" ".join(rnd.choices(words, k=rnd.randint(5, 30))) for _ in range(args.segments)]
    for name, ref_cls in (("bleu", sacrebleu.metrics.BLEU), ("chrf", sacrebleu.metrics.CHRF)):

        def ours(name: str = name) -> float:
            m = llmkit.create("metric", name)
            for lo in range(0, args.segments, 100):
                m.update(hyps[lo : lo + 100], refs[lo : lo + 100])
            return float(m.compute())

        def theirs(ref_cls: Any = ref_cls) -> float:  # fresh each run: no warm tokenizer cache
            return float(ref_cls().corpus_score(hyps, [refs]).score)

        assert abs(ours() - theirs()) < 1e-9
        rows.append(
            (
                f"{name} corpus",
                best_of(ours, args.repeat),
                best_of(theirs, args.repeat),
                "sacrebleu",
            )
        )

    torch.manual_seed(0)
    logits = [torch.randn(8, 256, 8192) for _ in range(4)]
    targets = [torch.randint(0, 8192, (8, 256)) for _ in range(4)]

    def ours_ppl() -> float:
        m = llmkit.create("metric", "perplexity")
        for x, y in zip(logits, targets, strict=True):
            m.update(x, y)
        return float(m.compute())

    def bare_ppl() -> float:
        total, count = 0.0, 0
        for x, y in zip(logits, targets, strict=True):
            total += F.cross_entropy(x.reshape(-1, 8192), y.reshape(-1), reduction="sum").item()
            count += y.numel()
        return float(np.exp(total / count))

    assert abs(ours_ppl() / bare_ppl() - 1) < 1e-5
    rows.append(
        (
            "perplexity",
            best_of(ours_ppl, args.repeat),
            best_of(bare_ppl, args.repeat),
            "F.cross_entropy",
        )
    )

    print(f"labels={args.labels} segments={args.segments} repeat={args.repeat} (best of)")
    print(f"{'metric':<14}{'llmkit s':>10}{'reference s':>13}{'ratio':>8}  reference")
    for name, ours_s, ref_s, ref in rows:
        print(f"{name:<14}{ours_s:>10.4f}{ref_s:>13.4f}{ours_s / ref_s:>8.2f}  {ref}")


if __name__ == "__main__":
    main()
