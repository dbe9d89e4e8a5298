"""Position-wise feed-forward blocks, registered as `mlp` components: GELU (exact or tanh), ReLU, SwiGLU.

An MLP component is a class (or factory) called as `cls(d_model, hidden, bias=bias, dropout=dropout)`
with the model's width, its feed-forward width (`d_ff`, default 4 * d_model), its `bias` flag and
its dropout rate, returning an `nn.Module` that maps (B, T, d_model) to (B, T, d_model). Name the
output projection `down` if the model's scaled init of residual projections should reach it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.nn.components import build_part
from llmkit.nn.dropout import dropout_layer


class MLP(nn.Module):
    """Two linear layers with an activation between: D -> hidden -> D (GPT-2, BERT, Vaswani)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = dropout_layer(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(x)  # (B, T, hidden)
        if self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h)
        return self.dropout(self.down(h))  # (B, T, D)


class GeluMLP(MLP):
    """MLP with exact GELU (BERT, Vaswani-style models).

    Args:
        d_model: Width of the input and output.
        hidden: Width of the hidden layer (the model's d_ff).
        bias: Use biases in the linear layers.
        dropout: Dropout on the output (training only).
    """

    def __init__(self, d_model: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, hidden, activation="gelu", bias=bias, dropout=dropout)


class GeluTanhMLP(MLP):
    """MLP with the tanh approximation of GELU (GPT-2's `gelu_new`).

    Args:
        d_model: Width of the input and output.
        hidden: Width of the hidden layer (the model's d_ff).
        bias: Use biases in the linear layers.
        dropout: Dropout on the output (training only).
    """

    def __init__(self, d_model: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, hidden, activation="gelu_tanh", bias=bias, dropout=dropout)


class ReluMLP(MLP):
    """MLP with ReLU (the original Transformer).

    Args:
        d_model: Width of the input and output.
        hidden: Width of the hidden layer (the model's d_ff).
        bias: Use biases in the linear layers.
        dropout: Dropout on the output (training only).
    """

    def __init__(self, d_model: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, hidden, activation="relu", bias=bias, dropout=dropout)


class _SiluMul(torch.autograd.Function):
    """silu(gate) * up, saving gate and up alone: silu(gate) is recomputed in backward.

    Autograd of the plain formula keeps gate, silu(gate) and up, three (B, T, hidden) tensors a
    layer; this keeps two. The backward is the plain formula's own ops (silu, mul, silu_backward),
    so the gradients are the same bits; each product is taken into a tensor of its own making
    (silu_backward writes over grad * up), which saves a (B, T, hidden) buffer per op.
    """

    @staticmethod
    def forward(ctx: Any, gate: Tensor, up: Tensor) -> Tensor:
        ctx.save_for_backward(gate, up)
        return _times(F.silu(gate), up)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[0]:
            scaled = grad * up
            grad_gate = torch.ops.aten.silu_backward.grad_input(scaled, gate, grad_input=scaled)
        if ctx.needs_input_grad[1]:
            grad_up = _times(F.silu(gate), grad)
        return grad_gate, grad_up


def silu_mul(gate: Tensor, up: Tensor) -> Tensor:
    """silu(gate) * up; under autograd it keeps two of its three (B, T, hidden) activations."""
    if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
        out: Tensor = _SiluMul.apply(gate, up)
        return out
    return _times(F.silu(gate), up)


def _times(own: Tensor, other: Tensor) -> Tensor:
    """own * other, into `own` (a tensor the caller just made) when the product has its shape and
    dtype."""
    if own.shape == other.shape and own.dtype == other.dtype:
        return own.mul_(other)
    return own * other


class SwiGLU(nn.Module):
    """Gated MLP (Shazeer 2020): down(silu(gate(x)) * up(x)), as in Llama.

    Args:
        d_model: Width of the input and output.
        hidden: Width of the hidden layer (the model's d_ff).
        bias: Use biases in the linear layers.
        dropout: Dropout on the output (training only).
    """

    def __init__(self, d_model: int, hidden: int, bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=bias)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = dropout_layer(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(silu_mul(self.gate(x), self.up(x))))


def build_mlp(name: str, d_model: int, hidden: int, bias: bool, dropout: float = 0.0) -> nn.Module:
    """The registered feed-forward block `name`; an unknown name lists the registered ones."""
    return build_part("mlp", name, nn.Module, d_model, hidden, bias=bias, dropout=dropout)
