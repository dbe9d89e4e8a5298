"""Position-wise feed-forward blocks, chosen by name: GELU (exact or tanh), ReLU, SwiGLU."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.errors import UsageError
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


class SwiGLU(nn.Module):
    """Gated MLP (Shazeer 2020): down(silu(gate(x)) * up(x)), as in Llama."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        activation: str = "silu",
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=bias)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = dropout_layer(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


MLPS: dict[str, tuple[type[nn.Module], str]] = {
    "gelu": (MLP, "gelu"),
    "gelu_tanh": (MLP, "gelu_tanh"),
    "relu": (MLP, "relu"),
    "swiglu": (SwiGLU, "silu"),
}


def build_mlp(name: str, d_model: int, hidden: int, bias: bool, dropout: float = 0.0) -> nn.Module:
    """The feed-forward block `name`; unknown names are a UsageError listing choices."""
    if name not in MLPS:
        raise UsageError(f"mlp: unknown mlp '{name}'; choose one of {', '.join(MLPS)}")
    cls, activation = MLPS[name]
    return cls(d_model, hidden, activation=activation, bias=bias, dropout=dropout)
