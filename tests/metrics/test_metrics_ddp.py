"""`sync()` across two real torch.distributed (gloo) ranks sums counts: equal to one process on all data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

WORKER = """
import json, sys
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    import llmkit
    import torch

    golds = [0, 1, 2, 2, 1, 0, 3, 3, 1, 2]
    preds = [0, 2, 2, 1, 1, 0, 3, 0, 1, 2]
    hyps = ["the cat sat", "a dog ran", "hello world", "the end ."]
    refs = ["the cat sat down", "the dog ran", "hello there world", "the end ."]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 11, generator=g)
    targets = torch.randint(0, 11, (4, 6), generator=g)
    metrics = {
        "f1": llmkit.create("metric", "f1", average="macro", zero_division=0),
        "accuracy": llmkit.create("metric", "accuracy"),
        "bleu": llmkit.create("metric", "bleu"),
        "perplexity": llmkit.create("metric", "perplexity"),
    }
    # uneven shards; rank 1 sees labels (3) that rank 0 never sees
    cut = 3
    part = slice(0, cut) if rank == 0 else slice(cut, None)
    metrics["f1"].update(preds[part], golds[part])
    metrics["accuracy"].update(preds[part], golds[part])
    metrics["bleu"].update(hyps[rank::2], refs[rank::2])
    metrics["perplexity"].update(logits[rank::2], targets[rank::2])
    results = {}
    for name, metric in metrics.items():
        metric.sync()
        metric.sync()  # a second sync must not double the counts
        results[name] = float(metric.compute())
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump(results, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    out = sys.argv[1]
    import llmkit, torch  # noqa: F401  (imported once, then forked)

    mp.start_processes(run, args=(2, f"file://{out}/store", out), nprocs=2, start_method="fork")
"""


@pytest.mark.slow
def test_sync_across_two_gloo_ranks(tmp_path: Path) -> None:
    import subprocess

    import torch

    import llmkit

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=300)
    golds = [0, 1, 2, 2, 1, 0, 3, 3, 1, 2]
    preds = [0, 2, 2, 1, 1, 0, 3, 0, 1, 2]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 11, generator=g)
    targets = torch.randint(0, 11, (4, 6), generator=g)
    f1 = llmkit.create("metric", "f1", average="macro", zero_division=0)
    f1.update(preds, golds)
    acc = llmkit.create("metric", "accuracy")
    acc.update(preds, golds)
    bleu = llmkit.create("metric", "bleu")
    bleu.update(
        ["the cat sat", "a dog ran", "hello world", "the end ."],
        ["the cat sat down", "the dog ran", "hello there world", "the end ."],
    )
    ppl = llmkit.create("metric", "perplexity")
    ppl.update(logits, targets)
    expected = {
        "f1": float(f1.compute()),
        "accuracy": float(acc.compute()),
        "bleu": float(bleu.compute()),
        "perplexity": float(ppl.compute()),
    }
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6), (rank, name)
