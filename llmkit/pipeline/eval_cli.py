"""`llmkit eval`: evaluate a checkpoint (language modelling, masked LM, classification, generation)."""

from __future__ import annotations

from typing import Any

import click

#: What `--dtype` takes: the float dtypes a checkpoint converts to and the weight-only quantisations.
DTYPES = ("float32", "bfloat16", "float16", "int8", "int4")


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--data",
    "data",
    default=None,
    help="Evaluation data (shard dir for lm and masked_lm; JSONL otherwise).",
)
@click.option(
    "--task",
    default="causal_lm",
    show_default=True,
    help="An objective (causal_lm, masked_lm, seq2seq, classification, a plugin's; lm is "
    "causal_lm) or generation.",
)
@click.option("--compare", "compare", default=None, help="A second checkpoint (or results JSON).")
@click.option("-o", "--out", default=None, help="Write the results JSON here (atomically).")
@click.option("--png", default=None, help="Classification: write the confusion matrix PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option(
    "--dtype",
    default=None,
    metavar="|".join(DTYPES),
    help="Weights to evaluate in (default: as saved): float32; bfloat16/float16 (half the "
    "bytes, weights and activations rounded); int8 (each linear layer's rows as int8 with a "
    "scale each) or int4 (groups of 32 weights as 4-bit codes with a scale and zero), both "
    "computing in bfloat16: the fast choice on a CPU, scores close to float32.",
)
@click.option(
    "--split", default="validation", show_default=True, help="lm, masked_lm: shard split."
)
@click.option(
    "--context", type=int, default=None, help="lm, masked_lm: tokens per window (default: model's)."
)
@click.option(
    "--stride",
    type=int,
    default=None,
    help="lm: start a window every N tokens (default: the context; smaller = more context per token).",
)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Examples per batch.")
@click.option(
    "--max-batches", type=int, default=None, help="lm, masked_lm: stop after this many batches."
)
@click.option(
    "--text-field",
    default="text",
    show_default=True,
    help="classification, seq2seq: text (source) field.",
)
@click.option(
    "--label-field", default="label", show_default=True, help="classification: label field."
)
@click.option(
    "--labels",
    default=None,
    help="classification: label names in class-index order, comma-separated.",
)
@click.option(
    "--template",
    default="{text}\nLabel:",
    show_default=True,
    help="classification with a plain LM: prompt before each candidate label.",
)
@click.option(
    "--max-length", type=int, default=512, show_default=True, help="Tokens kept per text."
)
@click.option(
    "--prompt-field", default="prompt", show_default=True, help="generation: prompt field."
)
@click.option(
    "--reference-field",
    default="reference",
    show_default=True,
    help="generation, seq2seq: reference (target) field.",
)
@click.option(
    "--max-new-tokens", type=int, default=64, show_default=True, help="generation: length."
)
@click.option("--temperature", type=float, default=None, help="generation: 0 = greedy (default).")
@click.option("--top-k", type=int, default=None, help="generation: sample from the k best.")
@click.option("--top-p", type=float, default=None, help="generation: nucleus sampling mass.")
@click.option("--beams", type=int, default=None, help="generation: beam search width (1 = none).")
@click.option(
    "--length-penalty", type=float, default=1.0, show_default=True, help="beam score / len**this."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="generation: sampling seed; masked_lm: masking seed.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="An objective task's metric to report (repeatable; default: the objective's defaults), "
    "e.g. --metric perplexity --metric bleu for seq2seq.",
)
@click.option(
    "--limit", type=int, default=None, help="classification/generation: first N examples."
)
@click.option(
    "--predictions-out",
    default=None,
    help="classification/generation: write one prediction per line here (for `llmkit score`).",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Load the checkpoint without checking its files against manifest.json (edited weights).",
)
def evaluate(
    checkpoint: str,
    data: str | None,
    task: str,
    compare: str | None,
    out: str | None,
    png: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Evaluate CHECKPOINT on --data: perplexity (lm), masked-token perplexity and accuracy of a
    BERT's masked-LM head (masked_lm), accuracy/F1/confusion (classification), BLEU/chrF/TER of
    generated text (generation); print tables, write JSON with --out.

    CHECKPOINT may also be a results JSON from an earlier --out, to print or --compare it.
    """
    import json

    from llmkit.errors import UsageError
    from llmkit.evaluation import core
    from llmkit.pipeline.evaluate import EvalOptions, evaluate_checkpoint

    if options["dtype"] is not None and options["dtype"] not in DTYPES:
        raise UsageError(f"--dtype {options['dtype']!r} is not one of {', '.join(DTYPES)}")
    labels = options.pop("labels")
    options["metrics"] = list(options.pop("metrics")) or None
    verify = not options.pop("no_verify")
    opts = EvalOptions(task=task, verify=verify, **options)
    if labels:
        opts.labels = [name.strip() for name in labels.split(",") if name.strip()]

    def run(target: str) -> dict[str, Any]:
        if target.endswith(".json"):
            return core.load_results(target)
        if data is None:
            raise click.UsageError("--data is required to evaluate a checkpoint")
        return evaluate_checkpoint(target, data, opts)

    first = run(checkpoint)
    second = run(compare) if compare else None
    payload: Any = first if second is None else {"runs": [first, second]}
    if out:
        core.write_results(out, payload)
    cm = first.get("details", {}).get("confusion_matrix")
    if png and cm:
        from llmkit.plots.confusion import save_confusion_png

        save_confusion_png(png, cm["labels"], cm["matrix"])
    if as_json:
        click.echo(json.dumps(core.jsonable(payload), indent=2))
        return
    click.echo(core.format_results(first))
    if second is not None:
        click.echo("")
        click.echo(core.format_results(second))
        click.echo("")
        click.echo(core.compare_results(first, second))
