"""LoRA over a bf16 base: frozen weights and activations in bf16, adapter, its gradients and optimizer
state in fp32, PEFT's casts (adapter input in fp32 before dropout, one rounding of the sum), fp32 loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmkit
from llmkit.adapters.lora import LoRALinear
from llmkit.losses.projected import ProjectedLogits, linear_cross_entropy


def test_a_bf16_base_layer_computes_peft_formula_bit_for_bit() -> None:
    torch.manual_seed(0)
    base = nn.Linear(24, 16, bias=True).to(torch.bfloat16).requires_grad_(False)
    layer = LoRALinear(base, r=4, alpha=8.0, dropout=0.2).train()
    layer.add("all", 0, 16)
    with torch.no_grad():
        layer.lora_B["all"].normal_()
    x = torch.randn(3, 5, 24).to(torch.bfloat16).requires_grad_(True)
    torch.manual_seed(1)
    got = layer(x)
    got.float().square().sum().backward()
    ours = [layer.lora_A["all"].grad, layer.lora_B["all"].grad, x.grad]
    a, b = (layer.lora_A["all"].detach().requires_grad_(True), layer.lora_B["all"].detach())
    b.requires_grad_(True)
    x2 = x.detach().requires_grad_(True)
    torch.manual_seed(1)  # PEFT: result = base(x); x cast to A's dtype; + B(A(dropout(x))) * scale
    h = F.dropout(x2.to(torch.float32), 0.2, training=True)
    want = (base(x2) + F.linear(F.linear(h, a), b) * 2.0).to(torch.bfloat16)
    want.float().square().sum().backward()
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    for g, w in zip(ours, [a.grad, b.grad, x2.grad], strict=True):
        assert g is not None and w is not None and g.dtype == w.dtype and torch.equal(g, w)
    assert ours[0] is not None and ours[0].dtype == torch.float32


def lm_loss(model: nn.Module, ids: Tensor) -> Tensor:
    hidden = model.hidden_states(ids[:, :-1])  # type: ignore[operator]
    return linear_cross_entropy(ProjectedLogits(hidden, model.head.weight), ids[:, 1:])  # type: ignore[union-attr,arg-type]


def adapted(path: Path, base_dtype: str | None) -> nn.Module:
    torch.manual_seed(0)
    model = llmkit.load_model(path)
    adapter = llmkit.create(
        "adapter", "lora", r=4, alpha=8, targets=["q", "k", "v", "o"], base_dtype=base_dtype
    )
    model = adapter.apply(model).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # a trained-looking adapter, so that A's gradient is not zero
    return model


def test_a_bf16_base_trains_the_fp32_adapter_close_to_an_fp32_base(tiny_llama: Path) -> None:
    full, half = adapted(tiny_llama, None), adapted(tiny_llama, "bfloat16")
    frozen = {p.dtype for p in half.parameters() if not p.requires_grad}
    trained = [p for p in half.parameters() if p.requires_grad]
    assert frozen == {torch.bfloat16} and {p.dtype for p in trained} == {torch.float32}
    ids = torch.randint(0, 200, (2, 17), generator=torch.Generator().manual_seed(0))
    loss32, loss16 = lm_loss(full, ids), lm_loss(half, ids)
    assert loss16.dtype == torch.float32
    gap = float((loss16 - loss32).detach().abs() / loss32.detach())
    assert gap < 1e-3, gap
    loss32.backward()
    loss16.backward()
    want = torch.cat([p.grad.flatten() for p in full.parameters() if p.requires_grad])  # type: ignore[union-attr]
    got = torch.cat([p.grad.flatten() for p in trained])  # type: ignore[union-attr]
    assert got.dtype == torch.float32
    assert F.cosine_similarity(got, want, dim=0) > 0.999
    optimizer = llmkit.create("optimizer", "adamw", trained, lr=1e-2)
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if t.numel() > 1]
    assert states and {t.dtype for t in states} == {torch.float32}
