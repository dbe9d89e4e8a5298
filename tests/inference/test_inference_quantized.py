"""Weight-only int8/int4 quantisation: close to fp32, saved and loaded as it was, refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import llmkit
from llmkit.errors import UsageError
from llmkit.nn.quantized import Int4Linear, Int8Linear, convert


def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return llmkit.create(
        "model",
        "llama",
        vocab_size=96,
        max_positions=64,
        n_layers=2,
        n_heads=4,
        d_model=64,
        d_ff=128,
        n_kv_heads=2,
        tie_embeddings=True,
    ).eval()


def test_int4_layer_matches_its_dequantised_weight() -> None:
    torch.manual_seed(1)
    w = torch.randn(48, 64)
    layer = Int4Linear.from_weight(w)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    ref = x.float() @ layer.dequantized(torch.float32).t()
    assert torch.allclose(layer(x).float(), ref, atol=0.1, rtol=0.02)
    assert (layer.dequantized(torch.float32) - w).abs().max() <= (w.max() - w.min()) / 15


def test_int8_layer_kernel_and_dequantised_path_agree() -> None:
    torch.manual_seed(2)
    layer = Int8Linear.from_weight(torch.randn(40, 64))
    few, many = torch.randn(2, 64, dtype=torch.bfloat16), torch.randn(40, 64, dtype=torch.bfloat16)
    for x in (few, many):
        ref = x.float() @ layer.dequantized(torch.float32).t()
        assert torch.allclose(layer(x).float(), ref, atol=0.1, rtol=0.02)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_quantised_logits_follow_fp32_and_survive_a_checkpoint(dtype: str, tmp_path: Path) -> None:
    model = tiny_llama()
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model(ids).float()
    llmkit.save_model(model, tmp_path / "fp32")
    quant = llmkit.load_model(tmp_path / "fp32", dtype=dtype)
    assert quant.quantization["dtype"] == dtype
    kinds = {type(m) for m in quant.modules()}
    assert Int8Linear in kinds and (Int4Linear in kinds) == (dtype == "int4")
    assert isinstance(quant.head, Int8Linear)  # the LM head stays int8 in an int4 model
    with torch.inference_mode():
        out = quant(ids).float()
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.8
    llmkit.save_model(quant, tmp_path / dtype)
    again = llmkit.load_model(tmp_path / dtype)
    with torch.inference_mode():
        assert torch.equal(again(ids), quant(ids))


def test_another_quantisation_of_a_quantised_model_is_refused() -> None:
    model = convert(tiny_llama(), "int4")
    with pytest.raises(UsageError, match="held in int4"):
        convert(model, "int8")
