"""Weight-only quantised linear layers, and the one function that gives a model a dtype.

Decoding one token reads every weight once, so on a CPU its speed is the bytes per weight. `int8`
keeps each output row as int8 with one scale per row (torch's `_weight_int8pack_mm`); `int4` keeps
groups of 32 weights along the input as 4-bit codes with a scale and a zero each, the layout of
torch's `_weight_int4pack_mm_for_cpu` and of GGUF's Q4_1 (w = (q - 8) * scale + zero). Activations,
norms, embeddings and the KV cache run in bfloat16, the dtype those kernels are fast in.

The state dict holds portable tensors (`qweight`, `scales`, `zeros`): int4 codes two per byte, the
low nibble the even input column. The CPU kernel's blocked layout is built from them on first use;
other devices dequantise per call (correct, not fast).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.errors import UsageError

#: Weight dtypes that replace the linear layers, and their compute (activation) dtype.
QUANTISED = ("int8", "int4")
COMPUTE_DTYPE = torch.bfloat16
INT4_GROUP = 32
#: The CPU int4 kernel packs the input dimension in tiles of this many columns.
_INT4_INNER_K_TILES = 2
#: Above this many rows the int8 weight is dequantised for one GEMM instead (prefill, evaluation).
INT8_KERNEL_ROWS = 32


class QuantLinear(nn.Module):
    """What the int8 and int4 linears share: shapes, an optional bias, the (rows, in) reshape."""

    dtype_name = ""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.zeros(out_features, dtype=COMPUTE_DTYPE), requires_grad=False)
            if bias
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """y = x W^T (+ b) for x (..., in_features)."""
        flat = x.reshape(-1, self.in_features)
        y = self.matmul(flat)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def matmul(self, x: Tensor) -> Tensor:
        """x (rows, in) @ W^T -> (rows, out)."""
        raise NotImplementedError

    def dequantized(self, dtype: torch.dtype) -> Tensor:
        """The weight (out, in) as floats."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, weights={self.dtype_name}"
        )


class Int8Linear(QuantLinear):
    """A linear layer with int8 weights and one scale per output row (symmetric)."""

    dtype_name = "int8"

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=COMPUTE_DTYPE))
        self.qweight: Tensor
        self.scales: Tensor

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None) -> Int8Linear:
        """Quantise a float weight (out, in): scale = max |w| of the row / 127, rounded codes."""
        w = weight.detach().float()
        layer = cls(w.shape[1], w.shape[0], bias is not None)
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        layer.qweight = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        layer.scales = scale.to(COMPUTE_DTYPE)
        if bias is not None and layer.bias is not None:
            layer.bias.data = bias.detach().to(COMPUTE_DTYPE)
        return layer

    def matmul(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.shape[0] <= INT8_KERNEL_ROWS:
            return torch.ops.aten._weight_int8pack_mm(x, self.qweight, self.scales.to(x.dtype))
        # Per-row scales commute with the product: x (q s)^T = (x q^T) s.
        return F.linear(x, self.qweight.to(x.dtype)) * self.scales.to(x.dtype)

    def dequantized(self, dtype: torch.dtype) -> Tensor:
        return self.qweight.to(dtype) * self.scales.to(dtype)[:, None]


class Int4Linear(QuantLinear):
    """A linear layer with 4-bit weights in groups of `group_size` inputs, each with a scale and
    a zero: w = (q - 8) * scale + zero, q in 0..15 (asymmetric, as GGUF's Q4_1)."""

    dtype_name = "int4"

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, group_size: int = INT4_GROUP
    ) -> None:
        super().__init__(in_features, out_features, bias)
        if in_features % group_size:
            raise UsageError(
                f"int4 needs the input width ({in_features}) to be a multiple of the group size "
                f"{group_size}"
            )
        groups = in_features // group_size
        self.group_size = group_size
        self.register_buffer(
            "qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
        )
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=COMPUTE_DTYPE))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=COMPUTE_DTYPE))
        self.qweight: Tensor
        self.scales: Tensor
        self.zeros: Tensor
        self._packed: tuple[tuple[int, int, torch.dtype], Tensor, Tensor] | None = None

    @staticmethod
    def fits(in_features: int, group_size: int = INT4_GROUP) -> bool:
        """True when a layer of this input width can be held in int4."""
        return in_features % group_size == 0 and in_features % (16 * _INT4_INNER_K_TILES) == 0

    @classmethod
    def from_codes(
        cls, codes: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None = None
    ) -> Int4Linear:
        """A layer from codes (out, in) in 0..15 and per-group scales and zeros (out, groups)."""
        out_features, in_features = codes.shape
        group = in_features // scales.shape[1]
        layer = cls(in_features, out_features, bias is not None, group_size=group)
        c = codes.to(torch.uint8)
        layer.qweight = (c[:, 0::2] | (c[:, 1::2] << 4)).contiguous()
        layer.scales = scales.to(COMPUTE_DTYPE).contiguous()
        layer.zeros = zeros.to(COMPUTE_DTYPE).contiguous()
        if bias is not None and layer.bias is not None:
            layer.bias.data = bias.detach().to(COMPUTE_DTYPE)
        return layer

    @classmethod
    def from_weight(
        cls, weight: Tensor, bias: Tensor | None = None, group_size: int = INT4_GROUP
    ) -> Int4Linear:
        """Quantise a float weight (out, in): each group's [min, max] in 16 even steps."""
        w = weight.detach().float()
        n, k = w.shape
        g = w.reshape(n, k // group_size, group_size)
        low, high = g.amin(dim=-1), g.amax(dim=-1)
        scale = ((high - low) / 15.0).clamp(min=1e-12)
        codes = torch.round((g - low[..., None]) / scale[..., None]).clamp(0, 15)
        zero = low + 8.0 * scale
        return cls.from_codes(codes.reshape(n, k), scale, zero, bias)

    def codes(self) -> Tensor:
        """The 4-bit codes (out, in) as int32 values 0..15."""
        q = self.qweight
        low, high = (q & 0x0F).to(torch.int32), (q >> 4).to(torch.int32)
        return torch.stack((low, high), dim=-1).reshape(self.out_features, self.in_features)

    def dequantized(self, dtype: torch.dtype) -> Tensor:
        codes = self.codes().to(dtype).reshape(self.out_features, -1, self.group_size)
        w = (codes - 8) * self.scales.to(dtype)[..., None] + self.zeros.to(dtype)[..., None]
        return w.reshape(self.out_features, self.in_features)

    def _cpu_kernel_args(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (id(self.qweight), self.qweight._version, dtype)
        if self._packed is None or self._packed[0] != key:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                self.codes(), _INT4_INNER_K_TILES
            )
            scales_zeros = torch.stack((self.scales, self.zeros), dim=-1)  # (out, groups, 2)
            scales_zeros = scales_zeros.transpose(0, 1).contiguous().to(dtype)
            self._packed = (key, packed, scales_zeros)
        return self._packed[1], self._packed[2]

    def matmul(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            packed, scales_zeros = self._cpu_kernel_args(x.dtype)
            return torch.ops.aten._weight_int4pack_mm_for_cpu(
                x, packed, self.group_size, scales_zeros
            )
        return F.linear(x, self.dequantized(x.dtype))

    def _apply(self, fn: Any, recurse: bool = True) -> Int4Linear:
        self._packed = None
        return super()._apply(fn, recurse)


def _linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) for every nn.Linear in the model."""
    out = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                out.append((parent, name, child))
    return out


def quantization_of(model: nn.Module) -> dict[str, Any] | None:
    """What a quantised model records in its checkpoint ({"dtype", "group_size"}), or None."""
    value = getattr(model, "quantization", None)
    return dict(value) if isinstance(value, dict) else None


def _keeps_int8(model: nn.Module, layer: nn.Linear, group_size: int) -> bool:
    """True for a layer an int4 model holds in int8: too narrow for int4, or the LM head (a
    vocabulary-wide output, as llama.cpp's 4-bit files keep it finer: int4 there cost SmolLM2 +4%
    perplexity, int8 +0.25% for the whole model)."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    return not Int4Linear.fits(layer.in_features, group_size) or layer.out_features == vocab


def quantize(model: nn.Module, dtype: str, group_size: int = INT4_GROUP) -> nn.Module:
    """Replace each nn.Linear of `model` with its int8/int4 version (from its float weights), and
    put the rest in bfloat16; returns the model. int4 keeps the LM head and narrow layers int8."""
    if dtype not in QUANTISED:
        raise UsageError(f"unknown quantised dtype {dtype!r}; use one of {', '.join(QUANTISED)}")
    if quantization_of(model) is not None:
        raise UsageError(f"the model is already quantised ({quantization_of(model)})")
    names = {id(m): n for n, m in model.named_modules()}
    int8_layers: list[str] = []
    for parent, name, layer in _linears(model):
        if dtype == "int4" and not _keeps_int8(model, layer, group_size):
            new: QuantLinear = Int4Linear.from_weight(layer.weight, layer.bias, group_size)
        else:
            new = Int8Linear.from_weight(layer.weight, layer.bias)
            if dtype == "int4":
                int8_layers.append(names[id(layer)])
        setattr(parent, name, new.to(layer.weight.device))
    model.to(COMPUTE_DTYPE)
    vars(model)["quantization"] = {
        "dtype": dtype,
        "group_size": group_size,
        "int8_layers": int8_layers,
    }
    return model


def quantized_structure(model: nn.Module, spec: dict[str, Any], source: str) -> nn.Module:
    """Give a freshly built model the empty quantised layers a checkpoint's `spec` describes, so
    that its saved state dict loads into it."""
    dtype = spec.get("dtype")
    group = spec.get("group_size", INT4_GROUP)
    int8_layers = spec.get("int8_layers", [])
    if (
        dtype not in QUANTISED
        or not isinstance(group, int)
        or group < 1
        or not isinstance(int8_layers, list)
    ):
        raise UsageError(
            f"{source}: field 'quantization' must be {{dtype: int8|int4, group_size: N, "
            f"int8_layers: [names]}}, got {spec!r}"
        )
    names = {id(m): n for n, m in model.named_modules()}
    for parent, name, layer in _linears(model):
        bias = layer.bias is not None
        if dtype == "int4" and names[id(layer)] not in int8_layers:
            new: QuantLinear = Int4Linear(layer.in_features, layer.out_features, bias, group)
        else:
            new = Int8Linear(layer.in_features, layer.out_features, bias)
        setattr(parent, name, new)
    model.to(COMPUTE_DTYPE)
    vars(model)["quantization"] = {"dtype": dtype, "group_size": group, "int8_layers": int8_layers}
    return model


#: The names `convert` takes: float dtypes (see llmkit.devices.as_dtype) and the quantised ones.
DTYPE_NAMES = ("float32", "bfloat16", "float16", *QUANTISED)


def convert(
    model: nn.Module, dtype: str | torch.dtype | None = None, device: Any = None
) -> nn.Module:
    """`model` in `dtype` (a float dtype, or int8/int4 weights) on `device`; returns it.

    A quantised model keeps its quantisation: a float dtype then sets its compute dtype, and
    asking for another quantisation is a UsageError (quantise from the float checkpoint instead).
    """
    from llmkit.devices import as_dtype

    current = quantization_of(model)
    if isinstance(dtype, str) and dtype in QUANTISED:
        if current is None:
            model = quantize(model, dtype)
        elif current["dtype"] != dtype:
            raise UsageError(
                f"the model is held in {current['dtype']}; it cannot become {dtype} (load the "
                "float checkpoint with that dtype instead)"
            )
        return model.to(device=device) if device is not None else model
    torch_dtype = as_dtype(dtype) if dtype is not None else None
    if device is not None or torch_dtype is not None:
        model = model.to(device=device, dtype=torch_dtype)
    return model
