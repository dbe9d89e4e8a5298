"""The LM head's GEMM orientation on the CPU: `F.linear(x, W)` against `W @ x^T`, by row count.

Decoding projects a few rows onto the vocabulary once per token; `llmkit.nn.head.LMHead` takes the
transposed product for up to 64 rows because MKL's plain one is slow there. This prints both
timings (process CPU ms, one thread, medians) for vocabulary-shaped weights and, as a control,
for block-shaped ones, where the plain product is as fast or faster.

    python benches/lm_head.py
    python benches/lm_head.py --rows 1 4 16 --reps 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

SHAPES = {
    "vocab 8192 x 256 (bench GPT)": (8192, 256),
    "vocab 49152 x 576 (SmolLM2)": (49152, 576),
    "vocab 32000 x 512": (32000, 512),
    "block 576 x 576": (576, 576),
    "block 1536 x 576": (1536, 576),
    "block 768 x 256": (768, 256),
}


def cpu_ms(fn: Callable[[], object], reps: int) -> float:
    """Median process-CPU milliseconds of `fn` over `reps` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    import torch
    import torch.nn.functional as F

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU ms, F.linear / W @ x^T, median of {args.reps}, {args.threads} thread(s)")
    print("| weight | " + " | ".join(f"{r} rows" for r in args.rows) + " |")
    print("|---|" + "---:|" * len(args.rows))
    with torch.inference_mode():
        for label, (n, d) in SHAPES.items():
            weight = torch.randn(n, d)
            cells = []
            for rows in args.rows:
                x = torch.randn(rows, d)
                plain = cpu_ms(lambda: F.linear(x, weight), args.reps)  # noqa: B023
                flipped = cpu_ms(lambda: (weight @ x.t()).t(), args.reps)  # noqa: B023
                cells.append(f"{plain:.2f} / {flipped:.2f}")
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
