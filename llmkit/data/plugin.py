"""Built-in data components, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import Register, hookimpl

_C = "llmkit.data.cleaners"
_D = "llmkit.data.dedup"
_R = "llmkit.data.readers"


@hookimpl
def register_datasets(register: Register) -> None:
    """Streaming readers."""
    register("text", f"{_R}:TextReader", summary="Plain text files/globs/dirs (.gz/.xz/.bz2)")
    register("jsonl", f"{_R}:JsonlReader", summary="JSON Lines with text (+label/target) fields")
    register("csv", f"{_R}:CsvReader", summary="CSV/TSV with named text (+label/target) columns")
    register("parallel", f"{_R}:ParallelReader", summary="Parallel text: source+target files")
    register("hf", f"{_R}:HFReader", summary="Hugging Face datasets (needs `datasets`)")
    _B = "llmkit.data.batching"
    register("causal_lm", f"{_B}:CausalLMBatches", summary="Causal-LM windows from token shards")
    register("masked_lm", f"{_B}:MaskedLMBatches", summary="Masked-LM batches (15%, 80/10/10)")
    register("seq2seq", f"{_B}:Seq2SeqBatches", summary="Padded source/target batches")
    register("classification", f"{_B}:ClassificationBatches", summary="Text + label batches")


@hookimpl
def register_cleaners(register: Register) -> None:
    """Cleaners, in the order a pipeline usually applies them."""
    register("nfc", f"{_C}:nfc", summary="Unicode NFC normalisation")
    register("nfkc", f"{_C}:nfkc", summary="Unicode NFKC normalisation (folds ligatures, widths)")
    register("normalize", f"{_C}:Normalize", summary="Unicode normalisation to a chosen form")
    register("control_chars", f"{_C}:ControlChars", summary="Remove control/invisible chars")
    register("whitespace", f"{_C}:Whitespace", summary="Collapse spaces, trim lines, 1 blank line")
    register("lowercase", f"{_C}:Lowercase", summary="Lower-case the text")
    register("strip_html", f"{_C}:StripHtml", summary="Remove HTML tags/scripts, decode entities")
    register("urls", f"{_C}:Urls", summary="Remove or replace URLs")
    register("emails", f"{_C}:Emails", summary="Remove or replace e-mail addresses")
    register("boilerplate", f"{_C}:Boilerplate", summary="Drop short boilerplate lines")
    register("punctuation", f"{_C}:Punctuation", summary="Remove punctuation")
    register("stopwords", f"{_C}:StopWords", summary="Remove stop words (en shipped)")
    register("replace", f"{_C}:Replace", summary="Replace regular-expression matches")
    register("match", f"{_C}:Match", summary="Keep (or drop) records matching a regex")
    register("filter_label", f"{_C}:FilterLabel", summary="Keep or drop records by label value")
    register("missing", f"{_C}:Missing", summary="Drop or fill records with empty/null fields")
    register("length", f"{_C}:Length", summary="Keep records within char/word length bounds")
    register("symbol_ratio", f"{_C}:SymbolRatio", summary="Drop mostly-symbol lines or records")
    register("dedup_exact", f"{_D}:ExactDedup", summary="Drop exact duplicates (content hash)")
    register("dedup_minhash", f"{_D}:MinHashDedup", summary="Drop near duplicates (MinHash+LSH)")


@hookimpl
def register_commands(cli: Any) -> None:
    """The `llmkit data` command group."""
    from llmkit.data.cli import data

    cli.add_command(data)
