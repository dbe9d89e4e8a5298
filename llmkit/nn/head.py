"""The language-model head: hidden states -> vocabulary logits, a linear layer with a decode path.

On the CPU, MKL's GEMM for a few rows against a wide transposed weight (x @ W^T with x (B, D) and
W (V, D), V in the thousands) takes a slow path; computing the same product as W @ x^T is up to
2x faster there (benches/generation.py). Decoding runs exactly that shape once per token, so the
head switches orientation for a few rows on the CPU; training (thousands of rows) and GPUs take
the plain `F.linear`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: Up to this many rows the transposed product is used on the CPU.
DECODE_ROWS = 64


class LMHead(nn.Linear):
    """`nn.Linear(d_model, vocab_size)` whose forward picks the faster GEMM orientation."""

    def forward(self, x: Tensor) -> Tensor:
        """Logits (..., V) for hidden states (..., D)."""
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if x.device.type != "cpu" or rows > DECODE_ROWS or rows == 0:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, x.shape[-1])
        logits = (self.weight @ flat.t()).t()  # (rows, V)
        if self.bias is not None:
            logits = logits + self.bias
        return logits.contiguous().view(*x.shape[:-1], self.weight.shape[0])
