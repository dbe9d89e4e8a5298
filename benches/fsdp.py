"""FSDP against DDP on gloo ranks (CPU): model-state bytes and peak RSS per rank, and step time.

A GPT trained with AdamW through llmkit's Trainer path (ObjectiveLoss, token-weighted loss,
clipping) at the same global batch, built as `llmkit run` builds it (`llmkit.train.fsdp.build`:
under fsdp rank 0 builds the model and every rank a meta-device copy that receives its shards).
Each configuration runs in its own `torchrun`, in interleaved rounds (ddp on 2 ranks, fsdp on 2,
fsdp on 4, again); figures are medians over the rounds. Every rank reports the bytes of the
parameters, gradients and AdamW state it holds (its shards under FSDP), its RSS after importing
torch and joining the group (before any model exists), and its peak RSS (VmHWM) after the build
and at the end. The per-rank budget is a quarter of DDP's model state, so the model is 4x DDP's
budget. Every rank runs with MALLOC_MMAP_THRESHOLD_=1 MiB (`--mmap-threshold`): with glibc's
dynamic threshold, freed all-gather buffers stay in the heap and the peak RSS hides the sharding.

    python benches/fsdp.py
    python benches/fsdp.py --d-model 768 --layers 12 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = (("ddp", 2), ("fsdp", 2), ("fsdp", 4))


def _vm(key: str) -> float:
    """A /proc/self/status figure (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {key}")


def worker(args: argparse.Namespace) -> None:
    """One rank: build (sharded under fsdp), train, report one JSON line on rank 0."""
    import torch
    import torch.distributed as torch_dist

    import llmkit
    from llmkit.train import distributed, fsdp
    from llmkit.train.objectives import ObjectiveLoss

    dist = distributed.setup("cpu")
    torch_dist.barrier()
    base_rss = _vm("VmRSS")  # torch, gloo and llmkit, before any model
    torch.manual_seed(0)

    def make() -> torch.nn.Module:
        return llmkit.create(
            "model", "gpt", vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers,
            n_heads=max(1, args.d_model // 64), max_positions=args.context,
        )  # fmt: skip

    model = fsdp.build(make, dist, fsdp.DistributedSettings(strategy=args.strategy))
    built_rss = _vm("VmHWM")
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
    report = {
        "rank": dist.rank,
        "params": sum(p.numel() for p in model.parameters()),
        "state_mb": sum(t.numel() * t.element_size() for t in tensors) / 2**20,
        "base_rss_mb": base_rss,
        "built_rss_mb": built_rss,
        "peak_rss_mb": _vm("VmHWM"),
        "step_s": statistics.median(times),
    }
    reports: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(reports, report)
    if dist.is_main:
        print("RESULT " + json.dumps(reports))
    distributed.teardown()


def run(strategy: str, ranks: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The per-rank reports of one configuration, from its own torchrun."""
    skip = ("strategy", "worker", "rounds", "mmap_threshold")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in skip]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(ranks), __file__, "--worker", f"--strategy={strategy}",
               *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if args.mmap_threshold:  # glibc hands freed buffers of this size or more back at once
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return list(json.loads(line[len("RESULT ") :]))
    raise SystemExit(f"{strategy} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="global batch (split over ranks)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=2**20,
        help="MALLOC_MMAP_THRESHOLD_ for every rank (0: glibc's default, which keeps freed "
        "all-gather buffers in its heap once its dynamic threshold has grown past them)",
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(
        f"load average before: {os.getloadavg()[0]:.2f}; MALLOC_MMAP_THRESHOLD_ {args.mmap_threshold}"
    )
    rounds: dict[tuple[str, int], list[list[dict[str, Any]]]] = {c: [] for c in CONFIGS}
    for _ in range(args.rounds):
        for strategy, ranks in CONFIGS:
            rounds[(strategy, ranks)].append(run(strategy, ranks, args))
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    def med(config: tuple[str, int], key: str, pick: Any = max) -> float:
        return statistics.median(pick(r[key] for r in reports) for reports in rounds[config])

    ddp = ("ddp", 2)
    budget = med(ddp, "state_mb") / 4
    print(f"GPT d_model {args.d_model}, {args.layers} layers, vocab {args.vocab}: "
          f"{rounds[ddp][0][0]['params'] / 1e6:.1f}M parameters, global batch {args.batch} x "
          f"{args.context}, AdamW, {args.rounds} interleaved rounds; budget {budget:.0f} MiB of "
          "model state per rank (DDP's / 4)")  # fmt: skip
    print("| strategy | ranks | model state / rank (MiB) | x budget | RSS before model (MiB) | "
          "peak RSS after build, rank 0 / others (MiB) | peak RSS rank 0 (MiB) | "
          "peak RSS other ranks (MiB) | peak - before, max (MiB) | step (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config in CONFIGS:
        state = med(config, "state_mb")
        base = med(config, "base_rss_mb")
        rank0 = statistics.median(reports[0]["peak_rss_mb"] for reports in rounds[config])
        others = statistics.median(
            max(r["peak_rss_mb"] for r in reports[1:]) for reports in rounds[config]
        )
        grown = statistics.median(
            max(r["peak_rss_mb"] - r["base_rss_mb"] for r in reports) for reports in rounds[config]
        )
        built0 = statistics.median(reports[0]["built_rss_mb"] for reports in rounds[config])
        built = statistics.median(
            max(r["built_rss_mb"] for r in reports[1:]) for reports in rounds[config]
        )
        step = med(config, "step_s", statistics.median)
        print(f"| {config[0]} | {config[1]} | {state:.0f} | {state / budget:.2f} | {base:.0f} | "
              f"{built0:.0f} / {built:.0f} | {rank0:.0f} | {others:.0f} | {grown:.0f} | "
              f"{step:.2f} |")  # fmt: skip
    ratio = med(("fsdp", 2), "step_s", statistics.median) / med(ddp, "step_s", statistics.median)
    print(f"fsdp / ddp step time on 2 ranks: {ratio:.2f}")


if __name__ == "__main__":
    main()
