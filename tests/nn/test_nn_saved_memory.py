"""Dropout and SwiGLU keep less for backward than their plain formulas, and compute the same bits."""

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
