"""Position information, registered as `position` components: learned, sinusoidal, RoPE, ALiBi, none.

Every scheme has the same three hooks, so attention and models need not know which one is in use:
`embed` adds absolute embeddings to the token embeddings, `rotate` turns queries and keys (RoPE),
`bias` returns an additive score bias (ALiBi). The hooks a scheme does not use are identities.

A position component is a subclass of `Positions` called with keyword arguments only:
`cls(d_model=, n_heads=, head_dim=, max_positions=, theta=)` (`theta` is the model's RoPE base);
it takes the ones it needs and swallows the rest with `**_`. It overrides the hooks it uses, sets
`has_bias = True` if `bias` returns one, and lives in the model as `positions` (a learned table's
`weight` is `positions.weight` in the state dict).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from llmkit.errors import UsageError
from llmkit.nn.components import build_part


class Positions(nn.Module):
    """No position information (the base of every scheme)."""

    absolute = False
    has_bias = False  # True when `bias` returns a score bias (ALiBi)

    def __init__(self, **_: object) -> None:
        super().__init__()

    def fit(self, end: int) -> None:
        """Make positions 0 .. end - 1 encodable (grow tables; a fixed table too small is an error).

        `embed` and `rotate` call it for offset-based positions; a model given `position_ids`
        calls it once per forward with their maximum + 1, so layers need not read it back from
        the device each time.
        """

    def embed(self, x: Tensor, offset: int = 0, position_ids: Tensor | None = None) -> Tensor:
        """Add absolute position embeddings to x (B, T, D) at positions offset.. offset + T, or at
        `position_ids` (B, T) when given (left-padded rows start at 0 after their padding)."""
        return x

    def rotate(
        self, q: Tensor, k: Tensor, offset: int, position_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Rotate queries/keys (B, nh, T, hs) at positions offset.. offset + T or `position_ids`
        (B, T) (identity here)."""
        return q, k

    def bias(self, q_pos: Tensor, k_pos: Tensor, causal: bool) -> Tensor | None:
        """Additive attention-score bias (nh, Tq, Tk) for these positions, or None."""
        return None


class LearnedPositions(Positions):
    """Learned absolute position embeddings (GPT-2, BERT): a (max_positions, D) table.

    Args:
        d_model: Width of the embeddings.
        max_positions: Rows of the table: the longest sequence the model accepts.
    """

    absolute = True

    def __init__(self, d_model: int, max_positions: int, **_: object) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.zeros(max_positions, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def fit(self, end: int) -> None:
        if end > self.max_positions:
            raise UsageError(
                f"sequence reaches position {end} but max_positions is {self.max_positions}; "
                "use shorter inputs or a model with a larger max_positions"
            )

    def embed(self, x: Tensor, offset: int = 0, position_ids: Tensor | None = None) -> Tensor:
        if position_ids is not None:
            return x + self.weight[position_ids]  # (B, T, D) + (B, T, D)
        self.fit(offset + x.shape[1])
        return x + self.weight[offset : offset + x.shape[1]]  # (B, T, D) + (T, D)


def sinusoid_table(n: int, d_model: int) -> Tensor:
    """The Vaswani et al. table: sin on even, cos on odd channels, wavelengths up to 10000*2pi."""
    position = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(n, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return table


class SinusoidalPositions(Positions):
    """Fixed sinusoidal absolute positions (Vaswani et al.), extended on demand when needed.

    Args:
        d_model: Width of the embeddings.
        max_positions: Rows computed up front (more are computed when a sequence needs them).
    """

    absolute = True
    table: Tensor

    def __init__(self, d_model: int, max_positions: int = 2048, **_: object) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", sinusoid_table(max_positions, d_model), persistent=False)

    def fit(self, end: int) -> None:
        if end > self.table.shape[0]:
            self.table = sinusoid_table(2 * end, self.d_model).to(self.table.device)

    def embed(self, x: Tensor, offset: int = 0, position_ids: Tensor | None = None) -> Tensor:
        if position_ids is not None:
            return x + self.table[position_ids].to(x.dtype)
        self.fit(offset + x.shape[1])
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)


class RotaryPositions(Positions):
    """Rotary position embeddings (RoPE, Su et al.) in the half-split layout of HF Llama.

    Channel i is paired with channel i + hs/2 and rotated by angle pos * theta^(-2i/hs).
    The cos/sin tables stay float32 whatever the model's dtype (as in HF), so bf16 models do not
    lose precision at large positions; they follow the inputs' device on first use.

    Args:
        head_dim: Width of each attention head (even).
        max_positions: Angles computed up front (more are computed when a sequence needs them).
        theta: The base of the rotation frequencies (Llama 2: 10000, Llama 3: 500000).
    """

    def __init__(
        self, head_dim: int, max_positions: int = 2048, theta: float = 10000.0, **_: object
    ) -> None:
        super().__init__()
        if head_dim % 2:
            raise UsageError(f"rope needs an even head size, got head_dim={head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        self.inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)  # as HF
        self.cos, self.sin = self._tables(max_positions, self.inv_freq.device)

    def _tables(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        freqs = torch.outer(
            torch.arange(n, dtype=torch.float32), self.inv_freq.float()
        )  # (n, hs/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (n, hs)
        return angles.cos().to(device), angles.sin().to(device)

    def fit(self, end: int) -> None:
        if end > self.cos.shape[0]:
            self.cos, self.sin = self._tables(2 * end, self.cos.device)

    def rotate(
        self, q: Tensor, k: Tensor, offset: int, position_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.cos.device != q.device:
            self.cos, self.sin = self._tables(self.cos.shape[0], q.device)
        if position_ids is None:
            end = offset + q.shape[2]
            self.fit(end)
            cos = self.cos[offset:end].to(q.dtype)  # (T, hs)
            sin = self.sin[offset:end].to(q.dtype)
        else:
            cos = self.cos[position_ids].to(q.dtype)[:, None]  # (B, 1, T, hs)
            sin = self.sin[position_ids].to(q.dtype)[:, None]
        q_rotated: Tensor = _Rotate.apply(q, cos, sin)
        k_rotated: Tensor = _Rotate.apply(k, cos, sin)
        return q_rotated, k_rotated


class _Rotate(torch.autograd.Function):
    """t * cos + rotate_half(t) * sin (rotate_half: (t1, t2) -> (-t2, t1), the halves of the last
    dim in the Hugging Face layout), computed half by half into t * cos.

    The same products and sums as the formula, so the same bits, without the negated half, the
    concatenation and the second full product; backward applies the transposed rotation the same
    way (t1 * c1 + t2 * s2, t2 * c2 - t1 * s1) and keeps only the tables, as autograd of the
    formula does, in one node instead of eight.
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        h = t.shape[-1] // 2
        out = t * cos
        out[..., :h].sub_(t[..., h:] * sin[..., :h])
        out[..., h:].add_(t[..., :h] * sin[..., h:])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        h = grad.shape[-1] // 2
        out = grad * cos
        out[..., :h].add_(grad[..., h:] * sin[..., h:])
        out[..., h:].sub_(grad[..., :h] * sin[..., :h])
        return out, None, None


def alibi_slopes(n_heads: int) -> Tensor:
    """Per-head slopes 2^(-8i/n) (Press et al.); the paper's interleaving for non-powers of two."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


class AlibiPositions(Positions):
    """ALiBi: no embeddings; each head's scores get -slope * distance between query and key.

    The distance is counted in sequence slots, so `position_ids` do not change it; for left-padded
    batches that is the same thing, as the padding slots are masked out.

    Args:
        n_heads: Attention heads, one slope each.
    """

    has_bias = True

    slopes: Tensor

    def __init__(self, n_heads: int, **_: object) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def bias(self, q_pos: Tensor, k_pos: Tensor, causal: bool) -> Tensor | None:
        distance = (q_pos[:, None] - k_pos[None, :]).abs().to(self.slopes.dtype)  # (Tq, Tk)
        return -self.slopes[:, None, None] * distance  # (nh, Tq, Tk)


def build_positions(
    name: str, *, d_model: int, n_heads: int, max_positions: int, rope_theta: float = 10000.0
) -> Positions:
    """The registered position scheme `name` sized for a model; an unknown name lists the registered ones."""
    return build_part(
        "position",
        name,
        Positions,
        d_model=d_model,
        head_dim=d_model // n_heads,
        n_heads=n_heads,
        max_positions=max_positions,
        theta=rope_theta,
    )
