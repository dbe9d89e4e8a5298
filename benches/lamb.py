"""LAMB step time: llmkit's `LAMB` against timm's `Lamb`, side by side in one run.

24 Linear(512, 512) layers (weights and biases) with fixed random gradients. Each optimizer steps
its own copy of the same parameters; rounds interleave the optimizers (two steps each per round)
and the table gives the median ms of one `step()` (process CPU time and wall time) and the ratio
timm / llmkit of the medians (above 1: llmkit is faster), on one thread and on torch's default
threads. timm's `Lamb` runs with `max_grad_norm=None` (no global gradient clipping: the same work
as llmkit's; its trust ratio is not clipped, and llmkit's bound of 10 is never reached here) and,
as a second anchor, with its default `max_grad_norm=1.0`. After the timing, the largest
|llmkit - timm| over the parameters (same start, same gradients, same number of steps) shows that
the two compute the same thing. timm is optional: without it only llmkit's times are printed.

    python benches/lamb.py
    python benches/lamb.py --layers 24 --width 512 --rounds 30 --threads 1,0   # 0: torch's default
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import types
from typing import Any


def timm_lamb() -> type | None:
    """timm's `Lamb` class, or None without timm.

    `timm/__init__.py` imports torchvision; when that fails, `timm/optim/lamb.py` (which needs only
    torch and its package's helpers) is loaded under empty stand-ins for `timm` and `timm.optim`.
    """
    try:
        from timm.optim import Lamb

        return Lamb  # type: ignore[no-any-return]
    except ImportError:
        pass
    for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = next(iter(spec.submodule_search_locations))
    for name, path in (("timm", root), ("timm.optim", f"{root}/optim")):
        package = types.ModuleType(name)
        package.__path__ = [path]
        sys.modules[name] = package
    lamb_spec = importlib.util.spec_from_file_location("timm.optim.lamb", f"{root}/optim/lamb.py")
    assert lamb_spec is not None and lamb_spec.loader is not None
    module = importlib.util.module_from_spec(lamb_spec)
    sys.modules["timm.optim.lamb"] = module
    lamb_spec.loader.exec_module(module)
    return module.Lamb  # type: ignore[no-any-return]


def timings(optimizers: dict[str, Any], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (CPU ms, wall ms) of one step of each optimizer, over interleaved rounds."""
    for opt in optimizers.values():
        for _ in range(3):
            opt.step()
    cpu: dict[str, list[float]] = {name: [] for name in optimizers}
    wall: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(rounds):
        for name, opt in optimizers.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            opt.step()
            opt.step()
            cpu[name].append((time.process_time() - start_cpu) / 2 * 1e3)
            wall[name].append((time.perf_counter() - start_wall) / 2 * 1e3)
    return {name: (statistics.median(cpu[name]), statistics.median(wall[name])) for name in cpu}


def main() -> None:
    import torch

    from llmkit.optim.lamb import LAMB

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", default="1,0", help="comma-separated; 0: torch's default")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()

    def params_with_grads() -> list[torch.nn.Parameter]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            *(torch.nn.Linear(args.width, args.width) for _ in range(args.layers))
        )
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
        return params

    common: dict[str, Any] = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    print(
        f"LAMB step, {args.layers} x Linear({args.width}, {args.width}), torch {torch.__version__}, "
        f"median of {args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.2f}"
    )
    print("| threads | optimizer | CPU ms / step | wall ms / step | timm / llmkit (CPU) | (wall) |")
    print("|---:|---|---:|---:|---:|---:|")
    Lamb = timm_lamb()
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads or default_threads)
        optimizers: dict[str, Any] = {"llmkit LAMB": LAMB(params_with_grads(), **common)}
        if Lamb is not None:
            optimizers["timm Lamb, max_grad_norm=None"] = Lamb(
                params_with_grads(), **common, max_grad_norm=None
            )
            optimizers["timm Lamb, default max_grad_norm=1.0"] = Lamb(params_with_grads(), **common)
        times = timings(optimizers, args.rounds)
        mine_cpu, mine_wall = times["llmkit LAMB"]
        for name, (cpu, wall) in times.items():
            print(
                f"| {torch.get_num_threads()} | {name} | {cpu:.2f} | {wall:.2f} "
                f"| {cpu / mine_cpu:.2f} | {wall / mine_wall:.2f} |"
            )
        if Lamb is not None:
            ours = optimizers["llmkit LAMB"].param_groups[0]["params"]
            theirs = optimizers["timm Lamb, max_grad_norm=None"].param_groups[0]["params"]
            gap = max(
                float((a.detach() - b.detach()).abs().max())
                for a, b in zip(ours, theirs, strict=True)
            )
            steps = 3 + 2 * args.rounds
            print(f"|  | max abs(llmkit - timm) after {steps} steps: {gap:.1e} |  |  |  |  |")


if __name__ == "__main__":
    main()
