"""`llmkit score`: score a hypothesis file against reference files, like sacrebleu's CLI."""

from __future__ import annotations

import click

_METRICS = (
    "bleu",
    "chrf",
    "ter",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "confusion_matrix",
    "exact_match",
)


@click.command()
@click.option(
    "-m",
    "--metric",
    "metrics",
    multiple=True,
    default=("bleu",),
    show_default=True,
    type=click.Choice(_METRICS),
    help="Metric to compute (repeat for several).",
)
@click.argument("hypothesis", type=click.Path(dir_okay=False))
@click.argument("references", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-w", "--width", default=1, show_default=True, help="Decimals in text output.")
@click.option("-lc", "--lowercase", is_flag=True, help="BLEU/chrF: case-insensitive.")
@click.option("--tokenize", default=None, help="BLEU tokenizer (13a, intl, zh, char, none, ...).")
@click.option(
    "--chrf-word-order", default=0, show_default=True, help="chrF word n-grams (2=chrF++)."
)
@click.option("--ter-case-sensitive", is_flag=True, help="TER: keep case.")
@click.option(
    "--average",
    type=click.Choice(["binary", "micro", "macro", "weighted"]),
    default="macro",
    show_default=True,
    help="precision/recall/f1 averaging over the labels.",
)
@click.option("--pos-label", default=None, help="Positive label for --average binary.")
@click.option("--per-class", is_flag=True, help="precision/recall/f1: also a per-label table.")
def score(
    metrics: tuple[str, ...],
    hypothesis: str,
    references: tuple[str, ...],
    as_json: bool,
    width: int,
    lowercase: bool,
    tokenize: str | None,
    chrf_word_order: int,
    ter_case_sensitive: bool,
    average: str,
    pos_label: str | None,
    per_class: bool,
) -> None:
    """Score HYPOTHESIS against REFERENCES (one segment or label per line), as sacrebleu does.

    Text metrics (bleu, chrf, ter) take one or more reference files and print sacrebleu's score
    and signature; label metrics (accuracy, precision, recall, f1, confusion_matrix) take one
    file of labels; exact_match takes one or more (a line matches if it equals any).
    """
    from llmkit.metrics.scoring import format_result, score_files

    prf: dict[str, object] = {"average": average}
    if pos_label is not None:
        prf["pos_label"] = int(pos_label) if pos_label.lstrip("-").isdigit() else pos_label
    options: dict[str, dict[str, object]] = {
        "bleu": {"lowercase": lowercase, "tokenize": tokenize},
        "chrf": {"lowercase": lowercase, "word_order": chrf_word_order},
        "ter": {"case_sensitive": ter_case_sensitive},
        "precision": prf,
        "recall": prf,
        "f1": prf,
    }
    results = score_files(list(dict.fromkeys(metrics)), hypothesis, list(references), options)
    if as_json:
        import json

        payload = [r.to_dict() for r in results]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    for result in results:
        click.echo(format_result(result, width, per_class))
