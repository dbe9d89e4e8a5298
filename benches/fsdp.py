"""FSDP against DDP on 2 gloo ranks (CPU): model-state memory per rank, peak RSS and step time.

Each strategy runs in its own `torchrun --nproc_per_node 2`: a GPT trained with AdamW through
llmkit's Trainer path (ObjectiveLoss, token-weighted loss, clipping), the same global batch. Every
rank reports the bytes of the parameters, gradients and optimizer state it holds (its shards under
FSDP), its peak RSS (getrusage), and the median wall time of an optimizer step after warm-up.
`--budget-mb` names a per-rank budget for the model state; the default model is sized at 4x it
for DDP, and the table says whether each strategy fits.

    python benches/fsdp.py
    python benches/fsdp.py --d-model 512 --layers 8 --steps 6 --budget-mb 48
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


def worker(args: argparse.Namespace) -> None:
    """One rank: build, shard (fsdp) or wrap (ddp), train, report one JSON line on rank 0."""
    import torch
    import torch.distributed as torch_dist

    import llmkit
    from llmkit.train import distributed, fsdp
    from llmkit.train.objectives import ObjectiveLoss

    dist = distributed.setup("cpu")
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "gpt", vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers,
        n_heads=max(1, args.d_model // 64), max_positions=args.context,
    )  # fmt: skip
    model = fsdp.shard(model, dist, fsdp.DistributedSettings(strategy=args.strategy))
    objective = llmkit.create("objective", "causal_lm")
    scored = ObjectiveLoss(model, objective, llmkit.create("loss", "cross_entropy"))
    step_fn = scored if fsdp.is_sharded(model) else distributed.wrap(scored, dist)
    optimizer = llmkit.create("optimizer", "adamw", model.parameters(), lr=1e-3)
    per_rank = args.batch // dist.world_size
    g = torch.Generator().manual_seed(dist.rank)
    times = []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, args.vocab, (per_rank, args.context + 1), generator=g)
        batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
        start = time.perf_counter()
        loss, count = step_fn(batch)
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients' memory counted
        if step >= args.warmup:
            times.append(time.perf_counter() - start)

    def local(t: Any) -> Any:
        return t.to_local() if hasattr(t, "to_local") else t

    tensors = [local(p) for p in model.parameters()]
    tensors += [local(p.grad) for p in model.parameters() if p.grad is not None]
    tensors += [
        local(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    ]
    state_bytes = sum(t.numel() * t.element_size() for t in tensors)
    report = {
        "rank": dist.rank,
        "params": sum(p.numel() for p in model.parameters()),
        "state_mb": state_bytes / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_s": statistics.median(times),
    }
    reports: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(reports, report)
    if dist.is_main:
        print("RESULT " + json.dumps(reports))
    distributed.teardown()


def run(strategy: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The 2-rank reports of one strategy, from its own torchrun."""
    flags = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("strategy", "worker")
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__, "--worker", f"--strategy={strategy}", *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return list(json.loads(line[len("RESULT ") :]))
    raise SystemExit(f"{strategy} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over ranks)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget-mb", type=float, default=0.0, help="default: DDP's state / 4")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    budget = args.budget_mb
    rows = {s: run(s, args) for s in ("ddp", "fsdp")}
    ddp_state = max(r["state_mb"] for r in rows["ddp"])
    budget = budget or ddp_state / 4
    print(f"GPT d_model {args.d_model}, {args.layers} layers, vocab {args.vocab}: "
          f"{rows['ddp'][0]['params'] / 1e6:.1f}M parameters, global batch {args.batch} x "
          f"{args.context}, AdamW, 2 gloo ranks; budget {budget:.1f} MiB of model state per rank")  # fmt: skip
    print("| strategy | model state / rank (MiB) | x budget | peak RSS / rank (MiB) | step (s) |")
    print("|---|---:|---:|---:|---:|")
    for strategy, reports in rows.items():
        state = max(r["state_mb"] for r in reports)
        rss = max(r["peak_rss_mb"] for r in reports)
        step = statistics.median(r["step_s"] for r in reports)
        print(f"| {strategy} | {state:.1f} | {state / budget:.2f} | {rss:.0f} | {step:.3f} |")
    ratio = statistics.median(r["step_s"] for r in rows["fsdp"]) / statistics.median(
        r["step_s"] for r in rows["ddp"]
    )
    print(f"fsdp step time / ddp step time: {ratio:.2f}")


if __name__ == "__main__":
    main()
