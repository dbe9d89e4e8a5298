"""Built-in metrics components, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import Register, hookimpl

_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("classification:Accuracy", "Fraction of correct predictions (top-k with scores)"),
    "precision": (
        "classification:Precision",
        "Precision (binary, micro, macro, weighted; per class)",
    ),
    "recall": ("classification:Recall", "Recall (binary, micro, macro, weighted; per class)"),
    "f1": ("classification:F1", "F1/F-beta (binary, micro, macro, weighted; per class)"),
    "confusion_matrix": (
        "classification:ConfusionMatrix",
        "Confusion matrix, rows true, cols predicted",
    ),
    "exact_match": ("classification:ExactMatch", "Fraction of predictions equal to a target"),
    "perplexity": ("language:Perplexity", "Perplexity exp(mean token NLL) of a language model"),
    "bits_per_byte": ("language:BitsPerByte", "Bits per UTF-8 byte: tokenizer-independent LM loss"),
    "bleu": ("text:BLEU", "Corpus BLEU through sacrebleu, with its signature"),
    "chrf": ("text:CHRF", "Corpus chrF/chrF++ through sacrebleu, with its signature"),
    "ter": ("text:TER", "Corpus translation edit rate through sacrebleu, with its signature"),
}


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the built-in metrics (lazily: nothing heavy is imported here)."""
    for name, (target, summary) in _METRICS.items():
        register(name, f"llmkit.metrics.{target}", summary=summary)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add `llmkit score`."""
    from llmkit.metrics.cli import score

    cli.add_command(score)
