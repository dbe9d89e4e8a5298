"""LAMB step time: llmkit's `LAMB` against timm's `Lamb`, side by side in one run.

24 Linear(512, 512) layers (weights and biases) with fixed random gradients, one thread by default;
prints the median process-CPU ms of one `step()` for each optimizer and the ratio timm / llmkit
(above 1: llmkit is faster). timm is optional: without it only llmkit's time is printed. timm's
`Lamb` runs with `max_grad_norm=None` (no global gradient clipping, the same work as llmkit's) and,
as a second anchor, with its default `max_grad_norm=1.0`.

    python benches/lamb.py
    python benches/lamb.py --layers 24 --width 512 --reps 50 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any


def cpu_ms(fn: Callable[[], object], reps: int) -> float:
    """Median process-CPU milliseconds of `fn` over `reps` calls, after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def timm_lamb() -> type | None:
    """timm's `Lamb` class, or None without timm.

    `timm/__init__.py` imports torchvision; when that fails, `timm/optim/lamb.py` (which needs only
    torch) is loaded on its own under empty stand-ins for the `timm` and `timm.optim` packages.
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


def main() -> None:
    import torch

    from llmkit.optim.lamb import LAMB

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
    rows = [("llmkit LAMB", LAMB(params_with_grads(), **common))]
    Lamb = timm_lamb()
    if Lamb is not None:
        rows.append(
            (
                "timm Lamb, max_grad_norm=None",
                Lamb(params_with_grads(), **common, max_grad_norm=None),
            )
        )
        rows.append(("timm Lamb, default max_grad_norm=1.0", Lamb(params_with_grads(), **common)))
    print(
        f"LAMB step, {args.layers} x Linear({args.width}, {args.width}), {args.threads} thread(s), "
        f"CPU ms, median of {args.reps}, torch {torch.__version__}"
    )
    times = {label: cpu_ms(opt.step, args.reps) for label, opt in rows}
    mine = times["llmkit LAMB"]
    print("| optimizer | ms / step | timm / llmkit |")
    print("|---|---:|---:|")
    for label, ms in times.items():
        print(f"| {label} | {ms:.2f} | {ms / mine:.2f} |")


if __name__ == "__main__":
    main()
