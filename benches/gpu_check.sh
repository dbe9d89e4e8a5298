#!/usr/bin/env bash
# One-command GPU check for llmkit's models (a few minutes on one modern GPU):
#   GPT-2-small-sized llmkit `gpt` (124M parameters, context 1024), bf16 autocast, flash SDPA
#   (the FLASH_ATTENTION backend is forced, so a fallback to another kernel is an error),
#   fused AdamW, eager and torch.compile (model + loss, as the trainer compiles);
#   transformers' GPT2LMHeadModel (sdpa) eager alongside.
#   Prints training tokens/s, peak GPU memory and MFU against the measured bf16 matmul peak.
#
#   benches/gpu_check.sh                 # defaults: batch 16, 20 timed steps
#   benches/gpu_check.sh --batch 8 --steps 10
#   benches/gpu_check.sh --smoke         # tiny model on CPU: checks the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
exec python - "$@" <<'PY'
import argparse
import contextlib
import os
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("LLMKIT_PLUGINS", "")
import llmkit  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
parser.add_argument("--smoke", action="store_true", help="tiny model on CPU (compile included)")
args = parser.parse_args()

if args.smoke:
    device, V, L, D, H, T, args.batch, args.steps, args.warmup = "cpu", 512, 2, 64, 4, 64, 2, 2, 1
else:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False)")
    device, V, L, D, H, T = "cuda", 50257, 12, 768, 12, 1024
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; torch {torch.__version__}")


def sync() -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak() -> float:
    """Best bf16 matmul FLOP/s (8192^3 on GPU): the MFU denominator."""
    n = 8192 if device == "cuda" else 256
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - t0) / 5)
    return 2 * n**3 / best


def flash_only():
    if device != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def autocast():
    if device != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def run(label: str, model: torch.nn.Module, compile_model: bool, hf: bool, flash: bool = True) -> dict:
    model = model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device == "cuda")
    data = torch.randint(0, V, (args.batch, T + 1), device=device)
    x, y = data[:, :-1], data[:, 1:]

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x)
        logits = out.logits if hf else out
        return F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))

    # Compiled as llmkit's trainer compiles (model and loss in one graph).
    fwd_loss = torch.compile(forward_loss) if compile_model else forward_loss

    def step() -> None:
        with autocast(), flash_only() if flash else contextlib.nullcontext():
            loss = fwd_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / args.steps
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    tok_s = args.batch * T / dt
    flops_per_token = 6 * (n_params - T * D) + 12 * L * D * T  # params minus position table
    return dict(label=label, tok_s=tok_s, step_ms=1e3 * dt, mem_gib=mem, warm_s=warm,
                flops=tok_s * flops_per_token, params=n_params)


def llmkit_gpt() -> torch.nn.Module:
    torch.manual_seed(0)
    return llmkit.create("model", "gpt", vocab_size=V, max_positions=T, n_layers=L, d_model=D,
                         n_heads=H, attention="sdpa", dropout=0.0)


peak = matmul_peak()
print(f"measured matmul peak: {peak / 1e12:.1f} TFLOP/s ({'bf16' if device == 'cuda' else 'fp32'})")
results = [run("llmkit gpt, eager", llmkit_gpt(), False, False)]
results.append(run("llmkit gpt, torch.compile", llmkit_gpt(), True, False))
if not args.no_hf:
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=D, n_layer=L, n_head=H,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  attn_implementation="sdpa")
    torch.manual_seed(0)
    try:
        results.append(run("transformers GPT2LMHeadModel (sdpa, flash forced), eager",
                           transformers.GPT2LMHeadModel(cfg), False, True))
    except RuntimeError as exc:  # HF passed a mask that the flash kernel cannot take
        print(f"HF with flash forced failed ({str(exc).splitlines()[0]}); using SDPA's own choice")
        torch.manual_seed(0)
        results.append(run("transformers GPT2LMHeadModel (sdpa, auto kernel), eager",
                           transformers.GPT2LMHeadModel(cfg), False, True, flash=False))

print(f"\nGPT-2 small shape: vocab {V}, {L} layers, d {D}, {H} heads, context {T}, batch "
      f"{args.batch}, bf16 autocast, flash SDPA forced, {args.steps} timed steps")
print("| model | params | step ms | tokens/s | MFU | peak GPU mem GiB | warm-up s |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in results:
    print(f"| {r['label']} | {r['params'] / 1e6:.0f} M | {r['step_ms']:.1f} | {r['tok_s']:,.0f} | "
          f"{100 * r['flops'] / peak:.1f}% | {r['mem_gib']:.1f} | {r['warm_s']:.0f} |")
base = results[-1]["tok_s"] if not args.no_hf else results[0]["tok_s"]
for r in results:
    print(f"{r['label']}: {r['tok_s'] / base:.2f}x the last row")
PY
