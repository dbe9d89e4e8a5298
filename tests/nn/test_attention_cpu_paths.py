"""SDPA on the CPU: bf16/fp16 attention is computed in fp32 (torch's CPU kernels are slower in
the low precisions), and a rotated attention's backward keeps v alone, not all of qkv's output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.nn.positions import build_positions

D, H = 32, 4


def make(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return llmkit.create("attention", name, d_model=D, n_heads=H, **kwargs).eval()


@settings(max_examples=20, deadline=None)
@given(
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    kv_heads=st.sampled_from([4, 2, 1]),
    t=st.integers(1, 20),
    causal=st.booleans(),
    padded=st.booleans(),
)
def test_low_precision_cpu_attention_is_fp32_attention_of_its_inputs(
    dtype: torch.dtype, kv_heads: int, t: int, causal: bool, padded: bool
) -> None:
    module = make("sdpa", n_kv_heads=kv_heads, causal=causal).to(dtype)
    g = torch.Generator().manual_seed(t)
    q = torch.randn(2, H, t, D // H, generator=g).to(dtype)
    k, v = (torch.randn(2, kv_heads, t, D // H, generator=g).to(dtype) for _ in range(2))
    mask = None
    if padded:
        keep = torch.ones(2, 1, t, t, dtype=torch.bool)
        keep[1, ..., : t // 2] = False
        keep[..., 0] = True  # every query sees a key
        mask = torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    got = module.kernel(q, k, v, mask, is_causal=causal and mask is None)
    rep = H // kv_heads
    expected = F.scaled_dot_product_attention(
        q.float(),
        k.float().repeat_interleave(rep, dim=1),
        v.float().repeat_interleave(rep, dim=1),
        attn_mask=None if mask is None else mask.float(),
        is_causal=causal and mask is None,
    ).to(dtype)
    assert got.dtype == dtype
    assert torch.equal(got, expected)


def _saved_storages(module: torch.nn.Module, x: torch.Tensor, **kwargs: object) -> list[int]:
    """The storage size, in elements, of each tensor autograd keeps for one step of `module`."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.untyped_storage().nbytes() // t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x, **kwargs).sum().backward()
    return sizes


@pytest.mark.parametrize("position", ["rope", "none"])
def test_backward_of_rotated_attention_does_not_keep_the_whole_qkv_output(position: str) -> None:
    module = make("gqa", n_kv_heads=2, causal=True).train()
    positions = build_positions(position, d_model=D, n_heads=H, max_positions=64)
    x = torch.randn(3, 16, D, requires_grad=True)
    qkv_elements = 3 * 16 * (D + 2 * 2 * (D // H))
    sizes = _saved_storages(module, x, positions=positions)
    # RoPE makes q and k new tensors, so only v could pin the qkv output: it is copied out. Without
    # rotation q, k and v are views that together need all of it anyway, and nothing is copied.
    assert (qkv_elements in sizes) == (position == "none"), sizes
