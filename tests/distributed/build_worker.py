"""Builds a model with `fsdp.build` on every rank and writes what it holds.

Usage: build_worker.py OUT [INIT_FROM]: a fresh GPT (seed 0; sinusoidal positions, a non-persistent
buffer) or the checkpoint INIT_FROM with a LoRA adapter on it; rank 0 writes the gathered weights
to OUT/weights.safetensors and every rank OUT/rank-R.json (its local parameter elements, whether
any is still on the meta device, a draw from its RNG after the build).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import llmkit
from llmkit.train import distributed, fsdp


def fresh() -> torch.nn.Module:
    """Two blocks (two FSDP groups plus the root); sinusoidal positions, a non-persistent buffer."""
    return llmkit.create(
        "model", "gpt", vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_positions=16,
        position="sinusoidal",
    )  # fmt: skip


def main(out: str, init_from: str = "") -> None:
    dist = distributed.setup("cpu")
    try:
        torch.manual_seed(0)

        def make() -> torch.nn.Module:
            if not init_from:
                return fresh()
            from llmkit.adapters import apply_adapter

            model = llmkit.load_model(init_from).train()
            return apply_adapter(model, {"name": "lora", "r": 2, "targets": ["q", "v"]})

        model = fsdp.build(make, dist, fsdp.DistributedSettings(strategy="fsdp"))
        local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
        report = {
            "sharded": fsdp.is_sharded(model),
            "local": sum(t.numel() for t in local),
            "meta": any(t.is_meta for t in local) or any(b.is_meta for b in model.buffers()),
            "training": model.training,
            # FSDP shards the frozen weights; the trainable ones stay whole on every rank.
            "apart": all(hasattr(p, "to_local") != p.requires_grad for p in model.parameters()),
            "draw": torch.rand(()).item(),
        }
        Path(out, f"rank-{dist.rank}.json").write_text(json.dumps(report))
        with fsdp.gathered(model) as whole:
            if dist.is_main:
                from safetensors.torch import save_file

                state = {k: v.detach().contiguous() for k, v in whole.state_dict().items()}
                state.update({f"buffer.{k}": v for k, v in whole.named_buffers()})
                save_file(
                    {k: v for k, v in state.items() if "head" not in k},
                    out + "/weights.safetensors",
                )
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
