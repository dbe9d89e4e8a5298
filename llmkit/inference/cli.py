"""`llmkit import hf|gguf`, `llmkit export hf|peft` and `llmkit generate`.

Only click is imported here; torch and the models load when a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def output_dir(text: str) -> Any:
    """The required `-o/--output DIR` option every import and export command takes."""
    return click.option(
        "-o", "--output", "output", required=True, type=click.Path(path_type=Path), help=text
    )


@click.group("import")
def import_group() -> None:
    """Convert outside weights (Hugging Face, GGUF) into llmkit checkpoints."""


@import_group.command("hf")
@click.argument("src_dir", type=click.Path(path_type=Path))
@output_dir("Checkpoint directory to write.")
def import_hf_command(src_dir: Path, output: Path) -> None:
    """Import a Hugging Face GPT-2/BERT/Llama directory (config.json + safetensors).

    A byte-level BPE `tokenizer.json` beside the weights is imported too, with the chat template
    of `tokenizer_config.json` and the eos/bos ids.
    """
    from llmkit.storage.checkpoint import save_model
    from llmkit.storage.hf import import_hf

    model, tokenizer, generation, skipped = import_hf(src_dir)
    if skipped:
        click.echo(f"warning: tokenizer not imported: {skipped}", err=True)
    save_model(model, output, tokenizer=tokenizer, generation=generation)
    _report(model, output, tokenizer)


@import_group.command("gguf")
@click.argument("file", type=click.Path(path_type=Path))
@output_dir("Checkpoint directory to write.")
@click.option(
    "--keep-quant",
    is_flag=True,
    help="Keep the file's Q4_1 weights as llmkit int4 (the same 4-bit codes, bf16 scales); the "
    "rest (a Q8_0 embedding used as the LM head) becomes int8.",
)
def import_gguf_command(file: Path, output: Path, keep_quant: bool) -> None:
    """Import a Llama-family GGUF file (any quantisation gguf can dequantise) and its tokenizer."""
    from llmkit.storage.checkpoint import save_model
    from llmkit.storage.gguf import generation_defaults, import_gguf, keep_quantisation

    model, tokenizer, read = import_gguf(file)
    if keep_quant:
        model = keep_quantisation(model, read, file)
    save_model(model, output, tokenizer=tokenizer, generation=generation_defaults(read))
    _report(model, output, tokenizer)


def _report(model: Any, output: Path, tokenizer: Any) -> None:
    n = sum(p.numel() for p in model.parameters())
    size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"
    tok = f", tokenizer with {tokenizer.vocab_size} ids" if tokenizer is not None else ""
    vocab = getattr(model.config, "vocab_size", None)
    if tokenizer is not None and vocab is not None and tokenizer.vocab_size > vocab + 256:
        click.echo(
            f"warning: the tokenizer has {tokenizer.vocab_size} ids but the model {vocab}; "
            "they do not belong together, and prompts will be refused",
            err=True,
        )
    click.echo(f"wrote {output}: {model.config.model_name}, {size} parameters{tok}")


@click.group("export")
def export_group() -> None:
    """Write llmkit checkpoints in other layouts."""


@export_group.command("hf")
@click.argument("ckpt_dir", type=click.Path(path_type=Path))
@output_dir("Directory for config.json + model.safetensors (transformers' from_pretrained layout).")
@click.option(
    "--merge",
    is_flag=True,
    help="Fold the checkpoint's adapter into the weights (W + alpha/r B A) and export the result.",
)
@click.option(
    "--base-only",
    "base_only",
    is_flag=True,
    help="Export the base model of an adapter checkpoint without its adapter (the model that "
    "`llmkit export peft`'s adapter is put on).",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Load the checkpoint without checking its files against manifest.json (edited weights).",
)
def export_hf(ckpt_dir: Path, output: Path, merge: bool, base_only: bool, no_verify: bool) -> None:
    """Export a GPT/BERT/Llama checkpoint in the Hugging Face layout (with tokenizer.json).

    A checkpoint with an adapter (a LoRA run's model/) needs --merge (one model) or --base-only
    (the base, for the adapter that `llmkit export peft` writes).
    """
    from llmkit.adapters import merge_adapter, remove_adapter
    from llmkit.errors import UsageError
    from llmkit.storage.checkpoint import load_model, read_config
    from llmkit.storage.hf import save_hf
    from llmkit.storage.tokenizer_files import load_checkpoint_tokenizer

    if merge and base_only:
        raise UsageError("--merge and --base-only exclude each other; choose one")
    if output.absolute().resolve() == ckpt_dir.absolute().resolve():
        raise UsageError(f"{output}: is the checkpoint being exported; choose another output")
    config = read_config(ckpt_dir)
    spec = config.get("adapter")  # asked before the weights load: a refusal costs nothing
    if spec is None and (merge or base_only):
        flag = "--merge" if merge else "--base-only"
        raise UsageError(f"{ckpt_dir}: holds no adapter (it was trained without one); drop {flag}")
    if spec is not None and not (merge or base_only):
        name = spec.get("name", "an") if isinstance(spec, dict) else "an"
        raise UsageError(
            f"{ckpt_dir}: holds a {name} adapter; add --merge to fold it into the weights, or "
            "write it with `llmkit export peft` (and the base with --base-only)"
        )
    model = load_model(ckpt_dir, verify=not no_verify)
    if merge:
        model = merge_adapter(model, str(ckpt_dir))
    elif base_only:
        model = remove_adapter(model, str(ckpt_dir))
    tokenizer = (
        load_checkpoint_tokenizer(ckpt_dir, verify=not no_verify)
        if config.get("tokenizer")
        else None
    )
    save_hf(model, output, tokenizer=tokenizer)
    what = " (adapter merged)" if merge else " (base, without the adapter)" if base_only else ""
    click.echo(f"wrote {output}{what}")


@export_group.command("peft")
@click.argument("ckpt_dir", type=click.Path(path_type=Path))
@output_dir("Directory for adapter_config.json + adapter_model.safetensors (PEFT's layout).")
@click.option(
    "--base",
    "base",
    default=None,
    type=click.Path(path_type=Path),
    help="Also write the base model here (as `export hf --base-only`); the adapter's config "
    "then names it as base_model_name_or_path.",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Load the checkpoint without checking its files against manifest.json (edited weights).",
)
def export_peft_command(ckpt_dir: Path, output: Path, base: Path | None, no_verify: bool) -> None:
    """Export a LoRA checkpoint's adapter in PEFT's layout, with the module names of the base
    that `llmkit export hf --base-only` writes (PeftModel.from_pretrained loads it on that base)."""
    from llmkit.storage.peft import export_peft

    config = export_peft(ckpt_dir, output, base_dir=base, verify=not no_verify)
    click.echo(
        f"wrote {output}: LoRA r={config['r']} on {', '.join(config['target_modules'][:8])}"
        + (f"; base in {base}" if base is not None else "")
    )


@click.command("generate")
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", default=None, help="Prompt text ('-' or absent: read stdin).")
@click.option("-n", "--max-new-tokens", default=128, show_default=True, type=click.IntRange(0))
@click.option(
    "-t",
    "--temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="0 = greedy.",
)
@click.option("--top-k", default=None, type=click.IntRange(1), help="Sample among the k likeliest.")
@click.option(
    "--top-p",
    default=None,
    type=click.FloatRange(0, 1, min_open=True),
    help="Sample within the smallest set with this probability mass.",
)
@click.option("--seed", default=None, type=int, help="Seed for sampling (reproducible output).")
@click.option(
    "--repetition-penalty",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="> 1 discourages repeating tokens already in the text (1.1-1.3 is typical).",
)
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@click.option(
    "--stop-token-id",
    "stop_token_ids",
    multiple=True,
    type=int,
    help="Stop at this token id (repeatable; the checkpoint's eos id is always one).",
)
@click.option(
    "--beams",
    default=None,
    type=click.IntRange(1),
    help="Beam search with this many beams (output at the end, not streamed). Encoder-decoder "
    "checkpoints always use beam search (default 4 beams).",
)
@click.option("--chat", is_flag=True, help="Wrap the prompt in the checkpoint's chat template.")
@click.option("--system", default=None, help="System message for --chat.")
@click.option(
    "--prompts",
    "prompts_file",
    default=None,
    type=click.Path(path_type=Path),
    help='Many prompts, one per line (or .jsonl with a "prompt" field), generated in '
    'left-padded batches; writes one JSON line per prompt: {"prompt", "output"}.',
)
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(1), help="With --prompts."
)
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(path_type=Path),
    help="With --prompts: write the JSON lines to this file (atomically) instead of stdout.",
)
@click.option(
    "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)."
)
@click.option(
    "--dtype",
    default=None,
    type=click.Choice(["float32", "bfloat16", "float16", "int8", "int4"]),
    help="Weights dtype (default: as stored); int8/int4 quantise the linear layers (bf16 "
    "activations), the fast choice for CPU decoding.",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Load the checkpoint without checking its files against manifest.json (edited weights).",
)
def generate_command(
    ckpt: Path,
    prompt: str | None,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    repetition_penalty: float,
    stop: tuple[str, ...],
    stop_token_ids: tuple[int, ...],
    beams: int | None,
    chat: bool,
    system: str | None,
    prompts_file: Path | None,
    batch_size: int,
    output: Path | None,
    device: str | None,
    dtype: str | None,
    no_verify: bool,
) -> None:
    """Generate text from a checkpoint (or a .gguf file), streaming tokens to stdout as they come."""

    from llmkit.atomic import write_text
    from llmkit.errors import UsageError
    from llmkit.inference.batch import generate_texts_batched, read_prompts
    from llmkit.inference.generation import apply_chat_template, refuse_encoder, stream_text
    from llmkit.storage.checkpoint import load_generation_config, load_model, read_config
    from llmkit.storage.tokenizer_files import load_checkpoint_tokenizer

    gguf_file = ckpt.is_file() and ckpt.suffix.lower() == ".gguf"
    config = {"model": "llama", "tokenizer": True} if gguf_file else read_config(ckpt)
    refuse_encoder(ckpt, config)
    if not config.get("tokenizer"):
        raise UsageError(f"{ckpt}: the checkpoint carries no tokenizer; generate needs one")
    if prompts_file is not None and (prompt is not None or beams is not None):
        raise UsageError("--prompts replaces -p/--prompt and takes no --beams; drop one of them")
    if output is not None and prompts_file is None:
        raise UsageError("-o/--output goes with --prompts (a single prompt streams to stdout)")
    prompts = read_prompts(prompts_file) if prompts_file is not None else None
    if prompts is None and (prompt is None or prompt == "-"):
        prompt = sys.stdin.read()
    from llmkit.devices import resolve_device

    device = str(resolve_device(device or "auto"))
    if gguf_file:
        from llmkit.nn.quantized import convert
        from llmkit.storage.gguf import generation_defaults, import_gguf

        model, tok, read = import_gguf(ckpt)
        if tok is None:
            raise UsageError(f"{ckpt}: the GGUF file carries no tokenizer; generate needs one")
        model = convert(model, dtype, device)
        tokenizer, gen = tok, generation_defaults(read)
    else:
        model = load_model(ckpt, device=device, dtype=dtype, verify=not no_verify)
        tokenizer = load_checkpoint_tokenizer(ckpt, verify=not no_verify)
        gen = load_generation_config(ckpt)

    def wrap(text: str) -> str:
        if not chat:
            return text
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": text})
        return apply_chat_template(messages, gen.get("chat_template"))

    if system and not chat:
        raise UsageError("--system needs --chat")
    stops = set(stop_token_ids)
    eos = gen.get("eos_token_id")
    stops.update([eos] if isinstance(eos, int) else (eos or []))
    if chat and "<|im_end|>" in tokenizer.special_tokens:
        stops.add(tokenizer.special_tokens["<|im_end|>"])
    options: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop=stop,
        stop_token_ids=stops,
        seed=seed,
        repetition_penalty=repetition_penalty,
    )
    if prompts is not None:
        if hasattr(model, "encode"):
            raise UsageError(f"{ckpt}: --prompts is for decoder-only checkpoints; use -p")
        texts = generate_texts_batched(
            model, tokenizer, [wrap(p) for p in prompts], batch_size=batch_size, **options
        )
        lines = "".join(
            json.dumps({"prompt": p, "output": t}, ensure_ascii=False) + "\n"
            for p, t in zip(prompts, texts, strict=True)
        )
        if output is None:
            sys.stdout.write(lines)
        else:
            write_text(output, lines)
            click.echo(f"wrote {len(texts)} outputs to {output}", err=True)
        return
    assert prompt is not None
    prompt = wrap(prompt)
    out = sys.stdout
    if beams is not None or hasattr(model, "encode"):
        text = _beam_generate(model, tokenizer, prompt, gen, beams or 4, max_new_tokens, stops)
        out.write(text + "\n")
        return
    for piece in stream_text(model, tokenizer, prompt, **options):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()


def _beam_generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    gen: dict[str, Any],
    beams: int,
    max_new_tokens: int,
    stops: set[int],
) -> str:
    """The best beam's text: the source's translation (encoder-decoder) or the prompt's sequel."""
    from llmkit.errors import UsageError
    from llmkit.inference.generation import beam_search, decoder_start_id, encode_prompt

    ids = encode_prompt(tokenizer, prompt, vocab_size=model.config.vocab_size)
    if not ids:
        raise UsageError("the prompt is empty after tokenization; give some text")
    eos = min(stops) if len(stops) == 1 else gen.get("eos_token_id")
    if len(stops) > 1 and not isinstance(eos, int):
        raise UsageError("beam search takes one stop token; give a single --stop-token-id")
    bos = decoder_start_id(tokenizer, gen)  # the same start token `llmkit eval` decodes from
    if hasattr(model, "encode") and bos is None:
        raise UsageError(
            "an encoder-decoder checkpoint needs a decoder start token: 'bos_token_id' in its "
            "generation settings, or a BOS, PAD or end token in its tokenizer"
        )
    [[best]] = beam_search(
        model,
        [ids],
        beam_size=beams,
        max_new_tokens=max_new_tokens,
        bos_token_id=bos,
        eos_token_id=eos if isinstance(eos, int) else None,
    )
    return str(tokenizer.decode(best.tokens))


def add_commands(cli: click.Group) -> None:
    """Add import, export and generate to the `llmkit` command group."""
    cli.add_command(import_group)
    cli.add_command(export_group)
    cli.add_command(generate_command)
