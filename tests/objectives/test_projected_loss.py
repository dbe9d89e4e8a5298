"""The chunked LM-head cross-entropy equals the plain one: loss and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import llmkit
from llmkit.losses import projected
from llmkit.losses.projected import ProjectedLogits, linear_cross_entropy
from llmkit.objectives.causal_lm import CausalLM


def leaves(bias: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 7, 16, generator=g, dtype=torch.float32).requires_grad_()
    weight = torch.randn(50, 16, generator=g, dtype=torch.float32).requires_grad_()
    b = torch.randn(50, generator=g, dtype=torch.float32).requires_grad_() if bias else None
    return hidden, weight, b


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_equals_plain_cross_entropy(
    monkeypatch: pytest.MonkeyPatch, bias: bool, smoothing: float, reduction: str
) -> None:
    monkeypatch.setattr(projected, "CHUNK_ELEMENTS", 50 * 4)  # 4 rows a chunk: 21 rows, 6 chunks
    targets = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    targets[0, :3] = -100
    targets[2, -1] = -100
    h1, w1, b1 = leaves(bias)
    got = linear_cross_entropy(ProjectedLogits(h1, w1, b1), targets, -100, smoothing, reduction)
    h2, w2, b2 = leaves(bias)
    want = F.cross_entropy(
        F.linear(h2, w2, b2).reshape(-1, 50),
        targets.reshape(-1),
        label_smoothing=smoothing,
        reduction=reduction,
    )
    torch.testing.assert_close(got, want)
    (got * 3).backward()
    (want * 3).backward()
    for a, b in [(h1, h2), (w1, w2)] + ([(b1, b2)] if bias else []):
        assert a is not None and b is not None
        torch.testing.assert_close(a.grad, b.grad)


def test_frozen_head_gets_no_gradient_and_no_grad_mode_scores() -> None:
    hidden, weight, _ = leaves(False)
    weight.requires_grad_(False)
    targets = torch.randint(0, 50, (3, 7))
    loss = linear_cross_entropy(ProjectedLogits(hidden, weight), targets)
    loss.backward()
    assert weight.grad is None and hidden.grad is not None
    with torch.no_grad():
        again = linear_cross_entropy(ProjectedLogits(hidden, weight), targets)
    torch.testing.assert_close(again, loss.detach())


def test_causal_lm_leaves_the_head_to_the_loss_and_matches_logits() -> None:
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "llama", vocab_size=64, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32
    )
    ids = torch.randint(0, 64, (2, 9))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    objective = CausalLM()
    out, targets = objective.forward(model, batch)
    assert isinstance(out, ProjectedLogits) and out.shape == (2, 8, 64)
    ce = llmkit.create("loss", "cross_entropy")
    fused = objective.score(ce, out, targets, batch)
    plain = F.cross_entropy(model(batch["input_ids"]).reshape(-1, 64), targets.reshape(-1))
    torch.testing.assert_close(fused, plain)

    def other(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # a loss of plain logits
        assert isinstance(logits, torch.Tensor)
        return F.cross_entropy(logits.reshape(-1, 64), t.reshape(-1))

    torch.testing.assert_close(objective.score(other, out, targets, batch), plain)
