"""Corpus BLEU, chrF and TER through sacrebleu, streamed as sacrebleu's own sufficient statistics.

sacrebleu computes a corpus score by summing per-segment statistics and scoring the sums; these
metrics keep exactly those sums, so batches, shards and DDP ranks combine to sacrebleu's corpus
score, and every result carries sacrebleu's signature (`Score.signature`) for comparable reporting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from llmkit.errors import UsageError
from llmkit.metrics.base import Metric, Score, as_strings


class _SacreMetric(Metric):
    """Keeps the summed sacrebleu statistics and the set of reference counts (for the signature)."""

    def __init__(self) -> None:
        self._metric = self._build()
        super().__init__()

    def _build(self) -> Any:
        raise NotImplementedError

    def _reset(self) -> None:
        self._stats: np.ndarray | None = None
        self._segments = 0
        self._ref_counts: set[int] = set()

    def update(self, predictions: Any, targets: Any) -> None:
        """Add hypotheses and their references: one string each, or a list of strings each.

        `targets[i]` is the reference of `predictions[i]`, or a list of its references (their
        number may vary between segments).
        """
        self._check_not_synced()
        hyps = as_strings(predictions, f"{self.name}: predictions")
        if isinstance(targets, str):
            targets = [targets]
        refs_per_seg: list[list[str]] = []
        for i, target in enumerate(list(targets)):
            refs = as_strings(target, f"{self.name}: targets[{i}]")
            if not refs:
                raise UsageError(f"{self.name}: targets[{i}]: needs at least one reference")
            refs_per_seg.append(refs)
        if len(hyps) != len(refs_per_seg):
            raise UsageError(
                f"{self.name}: {len(hyps)} predictions but {len(refs_per_seg)} targets"
            )
        if not hyps:
            return
        width = max(len(r) for r in refs_per_seg)
        streams = [[r[k] if k < len(r) else None for r in refs_per_seg] for k in range(width)]
        stats = self._metric._extract_corpus_statistics(hyps, streams)
        self._add(np.asarray(stats, dtype=np.float64).sum(axis=0), len(hyps))
        self._ref_counts.update(len(r) for r in refs_per_seg)

    def _add(self, stats: np.ndarray, segments: int) -> None:
        if self._stats is None:
            self._stats = stats.copy()
        elif stats.shape != self._stats.shape:
            raise UsageError(f"{self.name}: statistics of another shape; were the settings equal?")
        else:
            self._stats = self._stats + stats
        self._segments += segments

    def state(self) -> dict[str, Any]:
        return {
            "stats": None if self._stats is None else self._stats.tolist(),
            "segments": self._segments,
            "ref_counts": sorted(self._ref_counts),
        }

    def _merge_state(self, state: Mapping[str, Any]) -> None:
        if state["stats"] is not None:
            self._add(np.asarray(state["stats"], dtype=np.float64), int(state["segments"]))
        self._ref_counts.update(int(n) for n in state["ref_counts"])

    def compute(self) -> Score:
        """The corpus score (0-100, as sacrebleu), with `signature` and statistics in details."""
        if self._stats is None:
            raise UsageError(f"{self.name}: no segments: call update() with data before compute()")
        stats = self._stats
        if np.all(stats == np.round(stats)):
            stats_list: list[Any] = [int(v) for v in stats]
        else:
            stats_list = [float(v) for v in stats]
        score = self._metric._compute_score_from_stats(stats_list)
        self._metric.num_refs = next(iter(self._ref_counts)) if len(self._ref_counts) == 1 else -1
        signature = self._metric.get_signature().format()
        details: dict[str, Any] = {
            "signature": signature,
            "name": score.name,
            "segments": self._segments,
        }
        details.update(self._extra(score))
        return Score(float(score.score), self.name, details)

    def _extra(self, score: Any) -> dict[str, Any]:
        return {}


class BLEU(_SacreMetric):
    """Corpus BLEU (sacrebleu), with its signature; 0-100.

    Args:
        lowercase: Lowercase before scoring (case-insensitive BLEU).
        tokenize: sacrebleu tokenizer; default '13a' ('zh', 'ja-mecab' or 'ko-mecab' when
            trg_lang is zh, ja or ko), as sacrebleu decides.
        smooth_method: 'exp' (default), 'floor', 'add-k' or 'none'.
        smooth_value: The value for 'floor' and 'add-k' smoothing.
        max_ngram_order: Largest n-gram order.
        effective_order: Leave out n-gram orders with no matches (for sentence-level BLEU).
        trg_lang: Target language code, which selects the default tokenizer.
    """

    name = "bleu"

    def __init__(
        self,
        lowercase: bool = False,
        tokenize: Literal[
            "none",
            "zh",
            "13a",
            "intl",
            "char",
            "ja-mecab",
            "ko-mecab",
            "spm",
            "flores101",
            "flores200",
        ]
        | None = None,
        smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp",
        smooth_value: float | None = None,
        max_ngram_order: int = 4,
        effective_order: bool = False,
        trg_lang: str = "",
    ) -> None:
        self._kwargs: dict[str, Any] = dict(
            lowercase=lowercase,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            max_ngram_order=max_ngram_order,
            effective_order=effective_order,
            trg_lang=trg_lang,
        )
        super().__init__()

    def _build(self) -> Any:
        from sacrebleu.metrics import BLEU as SacreBLEU

        try:
            return SacreBLEU(**self._kwargs)
        except (ValueError, KeyError, AssertionError, ImportError, RuntimeError) as exc:
            raise UsageError(f"bleu: {exc}") from None

    def _extra(self, score: Any) -> dict[str, Any]:
        return {
            "counts": list(score.counts),
            "totals": list(score.totals),
            "precisions": [float(p) for p in score.precisions],
            "bp": float(score.bp),
            "sys_len": int(score.sys_len),
            "ref_len": int(score.ref_len),
        }


class CHRF(_SacreMetric):
    """Corpus chrF (chrF++ with word_order=2) through sacrebleu, with its signature; 0-100.

    Args:
        char_order: Character n-gram order.
        word_order: Word n-gram order (2 gives chrF++).
        beta: Weight of recall in the F-score.
        lowercase: Lowercase before scoring.
        whitespace: Keep whitespace when extracting character n-grams.
        eps_smoothing: Smooth as the chrF++.py, NLTK and Moses implementations do.
    """

    name = "chrf"

    def __init__(
        self,
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> None:
        self._kwargs: dict[str, Any] = dict(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        super().__init__()

    def _build(self) -> Any:
        from sacrebleu.metrics import CHRF as SacreCHRF

        try:
            return SacreCHRF(**self._kwargs)
        except (ValueError, AssertionError) as exc:
            raise UsageError(f"chrf: {exc}") from None


class TER(_SacreMetric):
    """Corpus TER (translation edit rate, lower is better) through sacrebleu, with its signature.

    Args:
        normalized: Apply basic tokenization and punctuation normalisation.
        no_punct: Remove punctuation.
        asian_support: Tokenize Asian scripts (with normalized/no_punct).
        case_sensitive: Keep case (sacrebleu's default is case-insensitive).
    """

    name = "ter"

    def __init__(
        self,
        normalized: bool = False,
        no_punct: bool = False,
        asian_support: bool = False,
        case_sensitive: bool = False,
    ) -> None:
        self._kwargs: dict[str, Any] = dict(
            normalized=normalized,
            no_punct=no_punct,
            asian_support=asian_support,
            case_sensitive=case_sensitive,
        )
        super().__init__()

    def _build(self) -> Any:
        from sacrebleu.metrics import TER as SacreTER

        return SacreTER(**self._kwargs)

    def _extra(self, score: Any) -> dict[str, Any]:
        return {"edits": float(score.num_edits), "ref_length": float(score.ref_length)}


def format_sacre(result: Score, width: int = 1) -> str:
    """A text-metric result as sacrebleu's CLI prints it: `BLEU|nrefs:1|... = 31.5 ...`."""
    d = result.details
    line = f"{d['name']}|{d['signature']} = {float(result):.{width}f}"
    if "counts" in d:
        precisions = "/".join(f"{p:.1f}" for p in d["precisions"])
        ratio = d["sys_len"] / d["ref_len"] if d["ref_len"] else 0.0
        line += (
            f" {precisions} (BP = {d['bp']:.3f} ratio = {ratio:.3f} "
            f"hyp_len = {d['sys_len']} ref_len = {d['ref_len']})"
        )
    return line
