"""Optimizers, schedules and losses against their defining formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import step_without_host_reads

import llmkit
from llmkit.errors import UsageError


def test_lamb_one_step_matches_formula() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    grad = torch.randn(4, 3)
    w0 = w.detach().clone()
    opt = llmkit.create("optimizer", "lamb", [w], lr=0.1, weight_decay=0.01, max_trust_ratio=None)
    w.grad = grad.clone()
    opt.step()
    beta1, beta2, eps = 0.9, 0.999, 1e-6
    m_hat = (1 - beta1) * grad / (1 - beta1)
    v_hat = (1 - beta2) * grad**2 / (1 - beta2)
    update = m_hat / (v_hat.sqrt() + eps) + 0.01 * w0
    trust = w0.norm() / update.norm()
    assert torch.allclose(w.detach(), w0 - 0.1 * trust * update, atol=1e-6)


def test_lamb_trains_a_regression() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)
    model = torch.nn.Linear(8, 1)
    opt = llmkit.create("optimizer", "lamb", model.parameters(), lr=0.05, weight_decay=0.0)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first / 100


def test_lamb_rejects_bad_values() -> None:
    with pytest.raises(UsageError, match="betas"):
        llmkit.create("optimizer", "lamb", [torch.nn.Parameter(torch.ones(1))], betas=(1.0, 0.9))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_torch_optimizers_step(name: str) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = llmkit.create("optimizer", name, [w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    assert torch.all(w < 1)


def test_cosine_schedule_shape() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    sched = llmkit.create(
        "scheduler", "cosine", opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1
    )
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))


def test_schedule_rejects_inconsistent_steps() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    with pytest.raises(UsageError, match=r"total_steps \(5\) must exceed warmup_steps \(10\)"):
        llmkit.create("scheduler", "linear", opt, total_steps=5, warmup_steps=10)


def test_cross_entropy_matches_manual() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    targets[0, 0] = -100
    loss = llmkit.create("loss", "cross_entropy")(logits, targets)
    logp = logits.log_softmax(-1)
    keep = targets != -100
    manual = -logp[keep].gather(-1, targets[keep].unsqueeze(-1)).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    with pytest.raises(UsageError, match="disagree"):
        llmkit.create("loss", "cross_entropy")(logits, targets[:, :3])


def test_kl_divergence_matches_definition() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    kl = llmkit.create("loss", "kl_div", temperature=2.0)(student, teacher)
    p = (teacher / 2).softmax(-1)
    q = (student / 2).softmax(-1)
    manual = (p * (p.log() - q.log())).sum(-1).mean() * 4
    assert kl.item() == pytest.approx(manual.item(), rel=1e-5)
    assert llmkit.create("loss", "kl_div")(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def _lamb_reference(params: list[torch.Tensor], grads: list[list[torch.Tensor]], wd: float) -> None:
    """Algorithm 2 of You et al. (2020), one tensor at a time, with llmkit's defaults."""
    lr, beta1, beta2, eps, clip = 0.01, 0.9, 0.999, 1e-6, 10.0
    ms = [torch.zeros_like(p) for p in params]
    vs = [torch.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for p, g, m, v in zip(params, step_grads, ms, vs, strict=True):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            r = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps) + wd * p
            w_norm, r_norm = p.norm(), r.norm()
            trust = min(float(w_norm / r_norm), clip) if w_norm > 0 and r_norm > 0 else 1.0
            p.sub_(lr * trust * r)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_matches_algorithm_2_after_100_steps(wd: float) -> None:
    torch.manual_seed(0)
    shapes = [(32, 16), (16,), (8, 32), (1,)]
    start = [torch.randn(s) for s in shapes] + [torch.zeros(4)]  # a zero tensor: trust ratio 1
    grads = [[torch.randn(p.shape) for p in start] for _ in range(100)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = llmkit.create("optimizer", "lamb", params, lr=0.01, weight_decay=wd)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    reference = [p.clone() for p in start]
    _lamb_reference(reference, grads, wd)
    for p, r in zip(params, reference, strict=True):
        assert (p.detach() - r).abs().max() <= 1e-6
    assert opt.last_trust_ratios[0].shape == (len(params),)


def test_lamb_step_reads_nothing_back_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    params = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))]
    opt = llmkit.create("optimizer", "lamb", params, lr=0.01)
    step_without_host_reads(opt, params, monkeypatch)
    assert isinstance(opt.state[params[0]]["trust_ratio"], torch.Tensor)
