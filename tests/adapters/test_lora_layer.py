"""LoRALinear with several targets in one projection (q, k, v of a fused qkv): the stacked-A,
block-diagonal-B path computes each target's own formula, W x + b + scale * B_t A_t x in its rows."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from llmkit.adapters.lora import LoRALinear


def per_target(layer: LoRALinear, x: Tensor) -> Tensor:
    """The plain formula: each target's update computed alone and added to its rows."""
    y = F.linear(x.to(layer.weight.dtype), layer.weight, layer.bias).float()
    for t, (start, stop) in layer.rows.items():
        delta = F.linear(F.linear(x.float(), layer.lora_A[t]), layer.lora_B[t]) * layer.scale
        y = y + F.pad(delta, (start, layer.out_features - stop))
    return y.to(layer.weight.dtype)


@st.composite
def layouts(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Disjoint row ranges of a 12-row projection, some rows possibly left to the base alone."""
    cuts = sorted(draw(st.sets(st.integers(0, 12), min_size=2, max_size=7)))
    spans = list(itertools.pairwise(cuts))
    keep = draw(st.lists(st.booleans(), min_size=len(spans), max_size=len(spans)))
    chosen = [s for s, k in zip(spans, keep, strict=True) if k]
    return chosen or spans[:1]


@settings(max_examples=40, deadline=None)
@given(
    spans=layouts(),
    bias=st.booleans(),
    bf16=st.booleans(),
    r=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_several_targets_equal_their_formulas(
    spans: list[tuple[int, int]], bias: bool, bf16: bool, r: int, seed: int
) -> None:
    torch.manual_seed(seed)
    base = nn.Linear(10, 12, bias=bias).requires_grad_(False)
    if bf16:
        base = base.to(torch.bfloat16)
    layer = LoRALinear(base, r=r, alpha=2.0 * r, dropout=0.0).train()
    for i, (start, stop) in enumerate(spans):
        layer.add(f"t{i}", start, stop)
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.normal_()
    x = torch.randn(2, 3, 10, dtype=base.weight.dtype)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = layer(x1), per_target(layer, x2)
    assert got.dtype == base.weight.dtype
    tol = {"rtol": 2e-2, "atol": 2e-2} if bf16 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(got, want, **tol)
    g = torch.randn_like(got.float())
    grads = torch.autograd.grad(
        (got.float() * g).sum(), [x1, *layer.lora_A.values(), *layer.lora_B.values()]
    )
    wants = torch.autograd.grad(
        (want.float() * g).sum(), [x2, *layer.lora_A.values(), *layer.lora_B.values()]
    )
    for a, b in zip(grads, wants, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_rows_left_out_are_the_base_alone_and_targets_share_one_dropout_draw() -> None:
    torch.manual_seed(0)
    base = nn.Linear(8, 9, bias=True).requires_grad_(False)
    layer = LoRALinear(base, r=2, alpha=4.0, dropout=0.5).train()
    layer.add("q", 0, 3)
    layer.add("v", 6, 9)
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.normal_()
    x = torch.randn(4, 8)
    out = layer(x)
    torch.testing.assert_close(out[:, 3:6], base(x)[:, 3:6], rtol=0, atol=0)
    torch.manual_seed(5)
    got = layer(x)
    torch.manual_seed(5)
    h = F.dropout(x, 0.5, training=True)  # one draw for every target, in the layer's own order
    for t, (start, stop) in layer.rows.items():
        want = (
            base(x)[:, start:stop] + F.linear(F.linear(h, layer.lora_A[t]), layer.lora_B[t]) * 2.0
        )
        torch.testing.assert_close(got[:, start:stop], want, rtol=1e-5, atol=1e-5)
