"""Perplexity and bits per byte equal exp/ln2 of the mean token NLL computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import llmkit
from llmkit.errors import UsageError


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 9, 13, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 13, (4, 9), generator=g)
    targets[0, :3] = -100
    targets[2, 5:] = -100
    return logits, targets


def test_perplexity_equals_exp_mean_cross_entropy() -> None:
    logits, targets = _data()
    expected = math.exp(F.cross_entropy(logits.reshape(-1, 13), targets.reshape(-1)).item())
    ppl = llmkit.create("metric", "perplexity")
    for b in range(4):  # one sequence per update: counts, not averages, are accumulated
        ppl.update(logits[b : b + 1], targets[b : b + 1])
    result = ppl.compute()
    assert float(result) == pytest.approx(expected, rel=1e-12)
    assert result.details["tokens"] == int((targets != -100).sum())
    numpy_ppl = llmkit.create("metric", "perplexity")
    numpy_ppl.update(logits.numpy(), targets.numpy().tolist())
    assert float(numpy_ppl.compute()) == pytest.approx(expected, rel=1e-12)


def test_low_precision_logits_and_merge() -> None:
    logits, targets = _data(1)
    expected = math.exp(F.cross_entropy(logits.reshape(-1, 13).float(), targets.reshape(-1)).item())
    a, b = llmkit.create("metric", "perplexity"), llmkit.create("metric", "perplexity")
    a.update(logits[:2].to(torch.bfloat16).float(), targets[:2])
    b.update(logits[2:].to(torch.bfloat16), targets[2:])
    a.merge(b)
    assert float(a.compute()) == pytest.approx(expected, rel=2e-2)


def test_bits_per_byte_with_token_bytes_and_explicit_counts() -> None:
    logits, targets = _data(2)
    token_bytes = [0] + [1 + (i % 4) for i in range(12)]  # token 0 is special: not scored
    flat_t = targets.reshape(-1)
    nll = F.cross_entropy(logits.reshape(-1, 13), flat_t, ignore_index=-100, reduction="none")
    lengths = torch.tensor(token_bytes)[flat_t.clamp(min=0)] * (flat_t != -100)
    expected = nll[lengths > 0].sum().item() / (math.log(2) * lengths.sum().item())
    bpb = llmkit.create("metric", "bits_per_byte", token_bytes=token_bytes)
    bpb.update(logits, targets)
    assert float(bpb.compute()) == pytest.approx(expected, rel=1e-12)
    np_bpb = llmkit.create("metric", "bits_per_byte", token_bytes=token_bytes)
    np_bpb.update(logits.numpy(), targets.numpy())
    assert float(np_bpb.compute()) == pytest.approx(expected, rel=1e-12)

    manual = llmkit.create("metric", "bits_per_byte")
    manual.add(nll_sum=10.0, num_tokens=5, num_bytes=20)
    manual.add(nll_sum=4.0, num_tokens=3, num_bytes=8)
    assert float(manual.compute()) == pytest.approx(14.0 / (math.log(2) * 28))
    ppl = llmkit.create("metric", "perplexity")
    ppl.update(logits, targets, num_bytes=100)
    assert ppl.compute().details["bytes"] == 100


def test_language_metric_errors() -> None:
    ppl = llmkit.create("metric", "perplexity")
    with pytest.raises(UsageError, match="no tokens"):
        ppl.compute()
    with pytest.raises(UsageError, match="do not match targets"):
        ppl.update(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(UsageError, match=r"target ids must be in \[0, 5\)"):
        ppl.update(torch.zeros(1, 2, 5), torch.tensor([[1, 7]]))
    with pytest.raises(UsageError, match=r"target ids must be in \[0, 5\)"):
        ppl.update(np.zeros((1, 2, 5)), np.array([[1, -3]]))
    bpb = llmkit.create("metric", "bits_per_byte")
    bpb.update(torch.zeros(1, 2, 5), torch.tensor([[1, 2]]))
    with pytest.raises(UsageError, match="no bytes counted"):
        bpb.compute()
    with pytest.raises(UsageError, match="nll_sum must be a finite number"):
        bpb.add(float("nan"), 3, 4)


def test_sync_is_a_noop_without_distributed() -> None:
    ppl = llmkit.create("metric", "perplexity")
    ppl.add(2.0, 2)
    ppl.sync()
    ppl.add(2.0, 2)  # still allowed: nothing was synced
    assert float(ppl.compute()) == pytest.approx(math.e)
