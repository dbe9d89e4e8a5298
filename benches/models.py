"""Model benchmarks, side by side in one run (CPU, fp32).

1. Training step of a small GPT (vocab 8192, 4 layers, d 256, 4 heads, context 256, batch 8):
   llmkit `gpt` against transformers' GPT2LMHeadModel (attn_implementation="sdpa") with the same
   config and weights layout, the same AdamW (foreach) and the same loss code. Steps alternate
   between the two models in rounds, so load on the machine hits both alike; medians are reported.
   Peak memory is the growth of peak RSS in a fresh process over three steps (weights, gradients,
   optimizer state, activations). MFU = achieved model FLOP/s / measured fp32 matmul peak.
2. Attention variants by sequence length (256..8192, batch 1, d 256, 4 heads, causal, forward
   under no_grad): time and peak-memory growth per variant; one fresh process per variant.

    python benches/models.py                  # both parts (a few minutes on 2 cores)
    python benches/models.py --part train --threads 1
    python benches/models.py --part attention --max-len 4096
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

VOCAB, LAYERS, D, HEADS, CTX, BATCH = 8192, 4, 256, 4, 256, 8
ATTN_VARIANTS: dict[str, dict[str, Any]] = {
    "mha": {},
    "sdpa": {},
    "gqa": {"n_kv_heads": 1},
    "sliding_window": {"window": 256},
    "linear": {},
}


def rss_peak_mb() -> float:
    """Peak resident set size of this process so far, MiB (VmHWM: unlike ru_maxrss, not inherited
    from the parent across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(side: str) -> Any:
    import torch

    torch.manual_seed(0)
    if side == "llmkit":
        import llmkit

        return llmkit.create(
            "model",
            "gpt",
            vocab_size=VOCAB,
            max_positions=CTX,
            n_layers=LAYERS,
            d_model=D,
            n_heads=HEADS,
            dropout=0.0,
        )
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(  # type: ignore[call-arg]
        vocab_size=VOCAB,
        n_positions=CTX,
        n_embd=D,
        n_layer=LAYERS,
        n_head=HEADS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="sdpa",
    )
    model = transformers.GPT2LMHeadModel(config)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def make_step(side: str) -> Any:
    """One training step closure (forward, loss, backward, AdamW) on a fixed random batch.

    A `+compile` side compiles model and loss together, the way llmkit's trainer does with
    `train.compile: true` (its own ObjectiveLoss module for llmkit, the same function for HF).
    """
    import torch
    import torch.nn.functional as F

    base, compiled = side.removesuffix("+compile"), side.endswith("+compile")
    model = build(base).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    gen = torch.Generator().manual_seed(1)
    data = torch.randint(0, VOCAB, (BATCH, CTX + 1), generator=gen)
    batch = {"input_ids": data[:, :-1], "labels": data[:, 1:]}

    if base == "llmkit":
        import llmkit
        from llmkit.train.objectives import Objective, ObjectiveLoss

        scored: Any = ObjectiveLoss(
            Objective(model, "causal_lm"), llmkit.create("loss", "cross_entropy")
        )
    else:

        def scored(b: dict[str, Any]) -> Any:
            logits = model(b["input_ids"]).logits
            return F.cross_entropy(logits.reshape(-1, VOCAB), b["labels"].reshape(-1))

    forward = torch.compile(scored) if compiled else scored

    def step() -> float:
        loss = forward(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.item())

    return step, model


def matmul_peak(threads: int, n: int = 1024, reps: int = 20) -> tuple[float, float]:
    """Best fp32 matmul FLOP/s over n x n x n products, by wall clock and by process CPU time."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    wall = cpu = float("inf")
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        a @ b
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, (time.process_time() - c0) / threads)
    return 2 * n**3 / wall, 2 * n**3 / cpu


def model_flops_per_token() -> float:
    """Training FLOPs per token: 6 x matmul parameters (blocks + tied LM head) + attention scores."""
    block_params = LAYERS * 12 * D * D  # qkv 3D^2 + out D^2 + MLP 8D^2 (biases/norms negligible)
    head = VOCAB * D
    attention = 12 * LAYERS * D * CTX  # QK^T and AV, forward + backward (PaLM appendix B)
    return 6 * (block_params + head) + attention


def memory_child(side: str, threads: int) -> None:
    """Print the peak-RSS growth (MiB) of three training steps in this fresh process."""
    import torch

    torch.set_num_threads(threads)
    import transformers  # noqa: F401  (import cost counted in the baseline for both sides)

    import llmkit  # noqa: F401

    base = rss_peak_mb()
    step, _ = make_step(side)
    for _ in range(3):
        step()
    print(json.dumps({"peak_mb": rss_peak_mb() - base}))


def run_child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def bench_train(threads: int, rounds: int, steps: int, compile_too: bool) -> dict[str, Any]:
    """Alternate rounds of training steps between the sides; median wall and CPU time per step.

    CPU time (process time / threads) is reported next to wall time because on a shared machine
    other processes stretch wall time; with one thread it is the time the step actually computed.
    """
    import torch

    torch.set_num_threads(threads)
    sides = ["llmkit", "hf"] + (["llmkit+compile", "hf+compile"] if compile_too else [])
    peak_before = matmul_peak(threads)  # measured before and after; the best is the peak
    runners = {side: make_step(side) for side in sides}
    params = {side: sum(p.numel() for p in runners[side][1].parameters()) for side in sides}
    for side in sides:  # warm-up (and compilation)
        for _ in range(2):
            runners[side][0]()
    wall: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            step = runners[side][0]
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            wall[side].append((time.perf_counter() - w0) / steps)
            cpu[side].append((time.process_time() - c0) / steps / threads)
    peak_after = matmul_peak(threads)
    peak_wall, peak_cpu = (max(pair) for pair in zip(peak_before, peak_after, strict=True))
    flops = model_flops_per_token()
    result: dict[str, Any] = {
        "threads": threads,
        "load_avg": os.getloadavg()[0],
        "thp": os.environ.get("THP_MEM_ALLOC_ENABLE", ""),
        "matmul_peak_gflops": {"wall": peak_wall / 1e9, "cpu": peak_cpu / 1e9},
        "sides": {},
    }
    for side in sides:
        tok_wall = BATCH * CTX / statistics.median(wall[side])
        tok_cpu = BATCH * CTX / statistics.median(cpu[side])
        # compiler memory would swamp the model's: not measured for compiled sides
        compiled = side.endswith("+compile")
        mem = (
            float("nan")
            if compiled
            else run_child(["--memory-child", side, "--threads", str(threads)])["peak_mb"]
        )
        result["sides"][side] = {
            "params": params[side],
            "step_ms_wall": 1e3 * statistics.median(wall[side]),
            "tokens_per_s_wall": tok_wall,
            "tokens_per_cpu_s": tok_cpu,
            "mfu_wall": tok_wall * flops / peak_wall,
            "mfu_cpu": tok_cpu * flops / peak_cpu,
            "peak_mb": mem,
        }
    s = result["sides"]
    result["speedup_wall"] = s["llmkit"]["tokens_per_s_wall"] / s["hf"]["tokens_per_s_wall"]
    result["speedup_cpu"] = s["llmkit"]["tokens_per_cpu_s"] / s["hf"]["tokens_per_cpu_s"]
    result["memory_ratio"] = s["llmkit"]["peak_mb"] / s["hf"]["peak_mb"]
    if compile_too:
        ours = s["llmkit+compile"]["tokens_per_cpu_s"]
        result["compiled_vs_hf_cpu"] = ours / s["hf"]["tokens_per_cpu_s"]
        result["compiled_vs_hf_compiled_cpu"] = ours / s["hf+compile"]["tokens_per_cpu_s"]
    return result


def attention_child(variant: str, threads: int, lengths: list[int]) -> None:
    """Time and peak-RSS growth of one attention variant at each length, shortest first."""
    import torch

    import llmkit

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kwargs = dict(ATTN_VARIANTS[variant])
    attn = llmkit.create("attention", variant, d_model=D, n_heads=HEADS, causal=True, **kwargs)
    attn.eval()
    base = rss_peak_mb()
    rows = []
    for n in lengths:
        x = torch.randn(1, n, D)
        reps = 5 if n <= 1024 else 2 if n <= 4096 else 1
        with torch.no_grad():
            attn(x)  # warm-up (also the first peak)
            wall = cpu = float("inf")
            for _ in range(reps):
                w0, c0 = time.perf_counter(), time.process_time()
                attn(x)
                wall = min(wall, time.perf_counter() - w0)
                cpu = min(cpu, (time.process_time() - c0) / threads)
        rows.append(
            {"len": n, "ms": 1e3 * cpu, "wall_ms": 1e3 * wall, "peak_mb": rss_peak_mb() - base}
        )
    print(json.dumps(rows))


def bench_attention(threads: int, max_len: int) -> dict[str, list[dict[str, float]]]:
    lengths = [n for n in (256, 512, 1024, 2048, 4096, 8192) if n <= max_len]
    out = {}
    for variant in ATTN_VARIANTS:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--attention-child",
                variant,
                "--threads",
                str(threads),
                "--lengths",
                ",".join(map(str, lengths)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        out[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def print_train(r: dict[str, Any]) -> None:
    peak = r["matmul_peak_gflops"]
    print(
        f"\n## Training step: GPT vocab {VOCAB}, {LAYERS} layers, d {D}, {HEADS} heads, "
        f"context {CTX}, batch {BATCH}, fp32, CPU, {r['threads']} thread(s), "
        f"load average {r['load_avg']:.1f}, THP_MEM_ALLOC_ENABLE={r['thp']}"
    )
    print(
        f"fp32 matmul peak (1024^3): {peak['wall']:.1f} GFLOP/s wall, {peak['cpu']:.1f} GFLOP/s "
        f"per CPU-second; model FLOPs/token {model_flops_per_token() / 1e6:.1f} M"
    )
    print(
        "| model | params | step ms (wall) | tokens/s (wall) | tokens per CPU-s | MFU (CPU time) "
        "| peak RSS growth MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    labels = {
        "llmkit": "llmkit gpt",
        "hf": "transformers GPT2LMHeadModel (sdpa)",
        "llmkit+compile": "llmkit gpt + torch.compile (model and loss)",
        "hf+compile": "transformers GPT2LMHeadModel + torch.compile (model and loss)",
    }
    for side, s in r["sides"].items():
        print(
            f"| {labels[side]} | {s['params'] / 1e6:.2f} M | {s['step_ms_wall']:.0f} | "
            f"{s['tokens_per_s_wall']:,.0f} | {s['tokens_per_cpu_s']:,.0f} | "
            f"{100 * s['mfu_cpu']:.0f}% | {s['peak_mb']:.0f} |"
        )
    print(
        f"llmkit/HF: {r['speedup_wall']:.2f}x tokens/s (wall), {r['speedup_cpu']:.2f}x tokens per "
        f"CPU-second; peak memory ratio {r['memory_ratio']:.2f}"
    )
    if "compiled_vs_hf_cpu" in r:
        print(
            f"llmkit + compile: {r['compiled_vs_hf_cpu']:.2f}x HF eager, "
            f"{r['compiled_vs_hf_compiled_cpu']:.2f}x HF + compile (tokens per CPU-second)"
        )


def print_attention(rows: dict[str, list[dict[str, float]]], threads: int) -> None:
    print(
        f"\n## Attention by sequence length: batch 1, d {D}, {HEADS} heads, causal, forward, "
        f"fp32, {threads} thread(s); CPU time ms (best of up to 5) / peak RSS growth MiB"
    )
    lengths = [row["len"] for row in rows["mha"]]
    print("| variant | " + " | ".join(str(int(n)) for n in lengths) + " |")
    print("|---|" + "---:|" * len(lengths))
    for variant, data in rows.items():
        label = variant + (
            f" (window {ATTN_VARIANTS[variant]['window']})" if variant == "sliding_window" else ""
        )
        cells = [f"{row['ms']:.1f} / {row['peak_mb']:.0f}" for row in data]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for fast in ("linear", "sliding_window"):
        for ref in ("sdpa", "mha"):
            over = next(
                (
                    int(a["len"])
                    for a, b in zip(rows[fast], rows[ref], strict=True)
                    if a["ms"] < b["ms"]
                ),
                None,
            )
            print(f"{fast} faster than {ref} from length: {over if over else 'not within range'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "train", "attention"], default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=8192)
    parser.add_argument(
        "--compile", action="store_true", help="add both models + torch.compile (slow)"
    )
    parser.add_argument(
        "--thp",
        choices=["0", "1"],
        default="1",
        help="THP_MEM_ALLOC_ENABLE for this run and its children (1, as the llmkit CLI sets it)",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--attention-child", help=argparse.SUPPRESS)
    parser.add_argument("--lengths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("LLMKIT_PLUGINS", "")
    os.environ["THP_MEM_ALLOC_ENABLE"] = args.thp
    if args.memory_child:
        memory_child(args.memory_child, args.threads)
        return
    if args.attention_child:
        attention_child(
            args.attention_child, args.threads, [int(n) for n in args.lengths.split(",")]
        )
        return
    results: dict[str, Any] = {}
    if args.part in ("all", "train"):
        results["train"] = bench_train(args.threads, args.rounds, args.steps, args.compile)
        print_train(results["train"])
    if args.part in ("all", "attention"):
        results["attention"] = bench_attention(args.threads, args.max_len)
        print_attention(results["attention"], args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
