"""LAMB's fast paths (fused kernel, large tensors on their own, multi-tensor fallback) against a
per-tensor Algorithm 2 of You et al. (2020)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import step_without_host_reads

from llmkit.optim.lamb import LAMB, LARGE_ELEMENTS


def _reference_step(
    p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], options: dict[str, Any]
) -> float:
    """One Algorithm 2 step of `p`, in place; returns the trust ratio."""
    beta1, beta2 = options.get("betas", (0.9, 0.999))
    eps, wd = options.get("eps", 1e-6), options.get("weight_decay", 0.01)
    clip = options.get("max_trust_ratio", 10.0)
    m, v = state.setdefault("m", torch.zeros_like(p)), state.setdefault("v", torch.zeros_like(p))
    t = state["t"] = state.get("t", 0) + 1
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bc1, bc2 = (1 - beta1**t, 1 - beta2**t) if options.get("bias_correction", True) else (1, 1)
    r = (m / bc1) / ((v / bc2).sqrt() + eps) + wd * p
    w_norm, r_norm = float(p.norm()), float(r.norm())
    trust = 1.0
    if w_norm > 0 and r_norm > 0:
        trust = w_norm / r_norm if clip is None else min(w_norm / r_norm, clip)
    p.sub_(options.get("lr", 0.01) * trust * r)
    return trust


def _run(
    start: list[torch.Tensor],
    grads: list[list[torch.Tensor | None]],
    options: dict[str, Any],
    make: Any = torch.nn.Parameter,
) -> tuple[list[torch.Tensor], list[torch.Tensor], LAMB]:
    """llmkit's LAMB and the reference from `start` through `grads`: (ours, reference, optimizer)."""
    params = [make(p.clone()) for p in start]
    opt = LAMB(params, **{"lr": 0.01, **options})
    reference = [p.clone() for p in start]
    states: list[dict[str, Any]] = [{} for _ in start]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = None if g is None else g.clone()
        opt.step()
        for r, g, s in zip(reference, step_grads, states, strict=True):
            if g is not None:
                s["trust"] = _reference_step(r, g, s, options)
    return [p.detach() for p in params], reference, opt


def _start(shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    return [0.1 * torch.randn(s, dtype=dtype) for s in shapes]


LARGE = (LARGE_ELEMENTS // 64, 64)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.0},
        {"bias_correction": False, "max_trust_ratio": None},
        {"max_trust_ratio": 0.05, "betas": (0.0, 0.99), "eps": 1e-3},
    ],
)
def test_large_and_small_tensors_match_algorithm_2(options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    start = [*_start([LARGE, (64,), (2 * LARGE[0], 64), (3, 5)]), torch.zeros(7)]
    grads = [[torch.randn(p.shape) for p in start] for _ in range(100)]
    ours, reference, opt = _run(start, grads, options)
    for p, r in zip(ours, reference, strict=True):
        assert (p - r).abs().max() <= 1e-6
    assert opt.last_trust_ratios[0].shape == (len(start),)


def test_trust_ratios_are_logged_in_parameter_order() -> None:
    torch.manual_seed(0)
    start = _start([(3,), LARGE, (4, 4), LARGE, (2,)])
    grads = [[torch.randn(p.shape) for p in start] for _ in range(3)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = LAMB(params, lr=0.01)
    states: list[dict[str, Any]] = [{} for _ in start]
    reference = [p.clone() for p in start]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
        trusts = [
            _reference_step(r, g, s, {})
            for r, g, s in zip(reference, step_grads, states, strict=True)
        ]
    expected = torch.tensor(trusts)
    assert torch.allclose(opt.last_trust_ratios[0], expected, rtol=1e-5)
    for p, t in zip(params, expected, strict=True):
        assert torch.allclose(opt.state[p]["trust_ratio"], t, rtol=1e-5)


def test_parameters_at_different_steps_keep_their_own_bias_corrections() -> None:
    torch.manual_seed(0)
    start = _start([LARGE, (8,), LARGE, (8,)])
    grads: list[list[torch.Tensor | None]] = []
    for step in range(20):
        late = step < 5  # the last two parameters get gradients from step 5 on
        grads.append(
            [None if late and i >= 2 else torch.randn(p.shape) for i, p in enumerate(start)]
        )
    ours, reference, _ = _run(start, grads, {})
    for p, r in zip(ours, reference, strict=True):
        assert (p - r).abs().max() <= 1e-6


def test_non_contiguous_parameters_take_the_multi_tensor_path() -> None:
    torch.manual_seed(0)
    start = _start([(64, LARGE[0]), (16, 4)])

    def transposed(t: torch.Tensor) -> torch.nn.Parameter:
        return torch.nn.Parameter(t.t().contiguous().t())  # same values, column-major storage

    grads = [[torch.randn(p.shape) for p in start] for _ in range(50)]
    ours, reference, _ = _run(start, grads, {}, make=transposed)
    for p, r in zip(ours, reference, strict=True):
        assert not p.is_contiguous()
        assert (p - r).abs().max() <= 1e-6


def test_float64_matches_algorithm_2_to_double_precision() -> None:
    torch.manual_seed(0)
    start = _start([LARGE, (32,)], dtype=torch.float64)
    grads = [[torch.randn(p.shape, dtype=torch.float64) for p in start] for _ in range(30)]
    ours, reference, _ = _run(start, grads, {})
    for p, r in zip(ours, reference, strict=True):
        assert p.dtype == torch.float64
        assert (p - r).abs().max() <= 1e-12


def test_resuming_from_a_state_dict_continues_the_same_run() -> None:
    torch.manual_seed(0)
    start = _start([LARGE, (16,)])
    grads = [[torch.randn(p.shape) for p in start] for _ in range(10)]
    ours, _, _ = _run(start, grads, {})
    params = [torch.nn.Parameter(p.clone()) for p in start]
    first = LAMB(params, lr=0.01)
    for step_grads in grads[:5]:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        first.step()
    second = LAMB(params, lr=0.01)
    second.load_state_dict(first.state_dict())
    for step_grads in grads[5:]:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        second.step()
    for p, q in zip(params, ours, strict=True):
        assert torch.equal(p.detach(), q)


def test_a_large_tensor_step_reads_nothing_back_to_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = [torch.nn.Parameter(p) for p in _start([LARGE, (4,)])]
    opt = LAMB(params, lr=0.01)
    step_without_host_reads(opt, params, monkeypatch)
    assert all(isinstance(opt.state[p]["trust_ratio"], torch.Tensor) for p in params)


def test_fsdp_shards_step_as_plain_parameters_do(tmp_path: Any) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.Linear(128, 4))
    sharded = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.Linear(128, 4))
    sharded.load_state_dict(plain.state_dict())
    batches = [torch.randn(8, 256) for _ in range(3)]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        fully_shard(sharded)
        for model in (plain, sharded):
            opt = LAMB(model.parameters(), lr=0.01)
            for x in batches:
                model(x).sum().backward()
                opt.step()
                opt.zero_grad()
        for p, q in zip(plain.parameters(), sharded.parameters(), strict=True):
            assert (p.detach() - q.detach().full_tensor()).abs().max() <= 1e-6
    finally:
        dist.destroy_process_group()


def test_torch_without_the_fused_kernel_takes_the_multi_tensor_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(torch, "_fused_adam_")  # as on torch < 2.4
    torch.manual_seed(0)
    start = [*_start([LARGE, (64,), (3, 5)]), torch.zeros(7)]
    grads = [[torch.randn(p.shape) for p in start] for _ in range(20)]
    ours, reference, _ = _run(start, grads, {})
    for p, r in zip(ours, reference, strict=True):
        assert (p - r).abs().max() <= 1e-6
