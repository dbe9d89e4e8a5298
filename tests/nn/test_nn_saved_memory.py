"""Dropout, SwiGLU, RMSNorm and RoPE: fewer passes and less kept for backward than their plain
formulas, with the same values."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from llmkit.nn.dropout import Dropout, dropout_layer
from llmkit.nn.mlp import SwiGLU, silu_mul
from llmkit.nn.norms import RMSNorm, _RMSNorm
from llmkit.nn.positions import RotaryPositions

DTYPES = st.sampled_from([torch.float32, torch.float64, torch.bfloat16])
SHAPES = st.lists(st.integers(1, 9), min_size=1, max_size=3)


@contextmanager
def saved() -> Iterator[list[Tensor]]:
    """The tensors autograd saves for backward inside the block."""
    kept: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield kept


def forward_backward(
    f: Callable[..., Tensor], inputs: list[Tensor], grad: Tensor
) -> tuple[Tensor, list[Tensor | None]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = f(*leaves)
    out.backward(grad)
    return out.detach(), [x.grad for x in leaves]


@settings(max_examples=40, deadline=None)
@given(
    shape=SHAPES, p=st.floats(0.01, 0.9), dtype=DTYPES, seed=st.integers(0, 2**31), t=st.booleans()
)
def test_dropout_is_nn_dropout_bit_for_bit(
    shape: list[int], p: float, dtype: torch.dtype, seed: int, t: bool
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, 3, generator=g).to(dtype)
    x = x.transpose(0, -1) if t else x  # a non-contiguous input draws its mask in its own layout
    grad = torch.randn(x.shape, generator=g).to(dtype)
    ours, plain = Dropout(p).train(), torch.nn.Dropout(p).train()
    torch.manual_seed(seed)
    want, want_grad = forward_backward(plain, [x], grad)
    after_plain = torch.rand(4)
    torch.manual_seed(seed)
    got, got_grad = forward_backward(ours, [x], grad)
    assert torch.equal(torch.rand(4), after_plain)  # the same draws from the generator
    assert torch.equal(got, want) and got.dtype == dtype
    assert got_grad[0] is not None and want_grad[0] is not None
    assert torch.equal(got_grad[0], want_grad[0])


def test_dropout_saves_a_boolean_mask_and_is_free_in_eval() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    with saved() as plain:
        torch.nn.Dropout(0.1).train()(x)
    with saved() as ours:
        Dropout(0.1).train()(x)
    assert [t.dtype for t in plain] == [torch.float32]
    assert [t.dtype for t in ours] == [torch.bool]  # 1 byte an element instead of 4
    layer = dropout_layer(0.1)
    assert isinstance(layer, Dropout) and isinstance(layer, torch.nn.Dropout)
    assert layer.eval()(x) is x


def plain_swiglu(gate: Tensor, up: Tensor) -> Tensor:
    return F.silu(gate) * up


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, seed=st.integers(0, 2**31), which=st.sampled_from("gub"))
def test_silu_mul_equals_the_plain_formula_in_values_and_gradients(
    shape: list[int], dtype: torch.dtype, seed: int, which: str
) -> None:
    g = torch.Generator().manual_seed(seed)
    gate, up, grad = (torch.randn(*shape, generator=g).mul(3).to(dtype) for _ in range(3))

    def only(f: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def call(a: Tensor, b: Tensor) -> Tensor:  # one input frozen, or neither
            return f(a if which in "gb" else a.detach(), b if which in "ub" else b.detach())

        return call

    want, want_grads = forward_backward(only(plain_swiglu), [gate, up], grad)
    got, got_grads = forward_backward(only(silu_mul), [gate, up], grad)
    assert torch.equal(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert (a is None) == (b is None)
        assert a is None or b is None or torch.equal(a, b)


def test_silu_mul_saves_two_activations_and_passes_gradcheck() -> None:
    gate = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    with saved() as plain:
        plain_swiglu(gate, up)
    with saved() as ours:
        silu_mul(gate, up)
    assert len({t.data_ptr() for t in plain}) == 3  # gate, silu(gate), up
    assert len({t.data_ptr() for t in ours}) == 2  # gate, up
    assert torch.autograd.gradcheck(silu_mul, (gate, up))


def test_swiglu_module_trains_as_its_formula() -> None:
    torch.manual_seed(0)
    mlp = SwiGLU(8, 16).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    mlp(x).square().sum().backward()
    got = [x.grad.clone(), *(p.grad.clone() for p in mlp.parameters())]  # type: ignore[union-attr]
    x.grad = None
    mlp.zero_grad()
    mlp.down(F.silu(mlp.gate(x)) * mlp.up(x)).square().sum().backward()
    want = [x.grad, *(p.grad for p in mlp.parameters())]
    for a, b in zip(got, want, strict=True):
        assert b is not None and torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(mlp(x), mlp.down(F.silu(mlp.gate(x)) * mlp.up(x)))


def plain_rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """HF Llama's RMSNorm, op for op (float64 kept, not rounded to float32)."""
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rms_norm_module(weight: Tensor, eps: float) -> RMSNorm:
    norm = RMSNorm(weight.shape[0], eps=eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm


@settings(max_examples=60, deadline=None)
@given(
    shape=SHAPES,
    width=st.integers(1, 40),
    dtype=DTYPES,
    weight_dtype=st.sampled_from([None, torch.float32]),
    seed=st.integers(0, 2**31),
    which=st.sampled_from("xwb"),
    t=st.booleans(),
)
def test_rms_norm_equals_the_plain_formula(
    shape: list[int],
    width: int,
    dtype: torch.dtype,
    weight_dtype: torch.dtype | None,
    seed: int,
    which: str,
    t: bool,
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, width, generator=g).mul(4).to(dtype)
    x = x.transpose(0, -2) if t and x.dim() > 2 else x  # rows that are not contiguous
    weight = torch.randn(width, generator=g).to(weight_dtype or dtype)
    norm = rms_norm_module(weight, 1e-5)
    norm.weight.requires_grad_(which in "wb")
    x = x.requires_grad_(which in "xb")
    got = norm(x)
    want = plain_rms_norm(x, norm.weight, 1e-5)
    # the forward's ops are the plain ones
    assert torch.equal(got, want) and got.dtype == want.dtype
    grad = torch.randn(got.shape, generator=g).to(got.dtype)
    leaves = [v for v in (x, norm.weight) if v.requires_grad]
    got_grads = torch.autograd.grad(got, leaves, grad)
    want_grads = torch.autograd.grad(want, leaves, grad)
    # the closed form rounds differently from autograd's chain: the two agree to a few ulps of the
    # sizes of the terms summed (float64), which also covers gradients that cancel to ~0
    x64, g64 = x.detach().double(), grad.double()
    r = torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5)
    gy = (g64 * norm.weight.detach().double()).abs()
    sizes = {
        "x": (gy * r + x64.abs() * r**3 * (gy * x64.abs()).mean(-1, keepdim=True)).max(),
        "w": (g64.abs() * (x64 * r).abs()).flatten(0, -2).sum(0).max(),
    }
    names = [n for n, v in (("x", x), ("w", norm.weight)) if v.requires_grad]
    ulps = {torch.float64: 1e-13, torch.float32: 1e-5, torch.bfloat16: 5e-2}
    for name, a, b in zip(names, got_grads, want_grads, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (a.double() - b.double()).abs().max() <= ulps[a.dtype] * sizes[name]
    with torch.no_grad():  # the inference path: the same function, no autograd node
        assert torch.equal(norm(x), want.detach())


def test_rms_norm_saves_input_and_scale_and_passes_gradcheck() -> None:
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    norm = rms_norm_module(torch.randn(8, dtype=torch.float64), 1e-6)
    with saved() as plain:
        plain_rms_norm(x, norm.weight, 1e-6)
    with saved() as ours:
        norm(x)
    big = [t for t in plain if t.numel() == x.numel()]
    assert len({t.data_ptr() for t in big}) == 2  # x and the normalised x
    assert [t.shape for t in ours if t.numel() == x.numel()] == [x.shape]  # x alone
    weight = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: _RMSNorm.apply(a, w, 1e-6), (x, weight))


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dim (the Hugging Face RoPE layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def bits(t: Tensor) -> Tensor:
    """t's bytes, so that equal means the same bits (-0.0 is not 0.0)."""
    return t.contiguous().view(torch.uint8)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    length=st.integers(1, 9),
    half=st.integers(1, 8),
    offset=st.integers(0, 5),
    dtype=DTYPES,
    seed=st.integers(0, 2**31),
    per_row=st.booleans(),
)
def test_rope_is_the_formula_bit_for_bit(
    batch: int,
    heads: int,
    length: int,
    half: int,
    offset: int,
    dtype: torch.dtype,
    seed: int,
    per_row: bool,
) -> None:
    g = torch.Generator().manual_seed(seed)
    hs = 2 * half
    rope = RotaryPositions(hs, max_positions=8)  # offset + length may pass it: the tables grow
    # q and k as attention makes them: head views of one projection, (B, n, T, hs) non-contiguous
    fused = torch.randn(batch, length, 2 * heads * hs, generator=g).mul(3).to(dtype)
    q, k = (t.unflatten(-1, (heads, hs)).transpose(1, 2) for t in fused.chunk(2, dim=-1))
    position_ids = None
    if per_row:  # left-padded rows: each its own positions, tables (B, 1, T, hs)
        position_ids = torch.randint(0, 8, (batch, length), generator=g)
    leaves = [q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()]
    got = rope.rotate(*leaves, offset, position_ids)
    rope.fit(offset + length)
    if position_ids is None:
        cos, sin = (t[offset : offset + length].to(dtype) for t in (rope.cos, rope.sin))
    else:
        cos, sin = (t[position_ids].to(dtype)[:, None] for t in (rope.cos, rope.sin))
    plain = [x.detach().clone().requires_grad_() for x in leaves]
    want = [t * cos + rotate_half(t) * sin for t in plain]
    grads = [torch.randn(w.shape, generator=g).to(dtype) for w in want]
    torch.autograd.backward(list(got), grads)
    torch.autograd.backward(want, grads)
    for a, b, la, lb in zip(got, want, leaves, plain, strict=True):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        assert torch.equal(bits(a), bits(b))
        assert la.grad is not None and lb.grad is not None
        assert torch.equal(bits(la.grad), bits(lb.grad))


def test_rope_keeps_only_its_tables_for_backward() -> None:
    q = torch.randn(2, 3, 5, 8, requires_grad=True)
    rope = RotaryPositions(8)
    with saved() as kept:
        rope.rotate(q, q, 0)
    assert {tuple(t.shape) for t in kept} == {(5, 8)}  # cos and sin, never q
