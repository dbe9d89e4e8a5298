"""Attention variants with one interface: `mha`, `sdpa`, `mqa`, `gqa`, `sliding_window`, `linear`.

Every variant is built as `Variant(d_model, n_heads, n_kv_heads=None, causal=, cross=, dropout=)`
and called as `attn(x, context=None, attention_mask=None, cache=None, positions=None)`:

- `x` (B, T, D) gives the queries; keys and values come from `x` (self-attention) or from `context`
  (B, S, D_context) when the module was built with `cross=True` (encoder-decoder attention).
- `attention_mask` (B, Tk) marks real keys with 1/True and padding with 0/False (as in Hugging
  Face); with a cache it covers every position seen so far. Causal masking comes from `causal=True`.
- `cache` is a `LayerCache` (llmkit.nn.cache): new keys/values are appended and positions continue
  from `cache.length`, so decoding one token at a time gives the same result as one full forward.
- `positions` is the model's position scheme (llmkit.nn.positions): RoPE rotates q and k, ALiBi adds
  a score bias; absolute schemes do nothing here.

`Attention` (`mha`) writes softmax(QK^T/sqrt(d))V out in plain tensor math and is the reference that
the tests hold the other variants to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.errors import UsageError
from llmkit.nn.cache import LayerCache
from llmkit.nn.dropout import dropout_layer
from llmkit.nn.positions import Positions

#: torch >= 2.5 lets scaled_dot_product_attention share key/value heads itself (`enable_gqa`).
SDPA_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None) -> int:
    """Validate head counts (errors name the fields) and return the number of key/value heads."""
    if n_heads <= 0 or d_model <= 0:
        raise UsageError(f"d_model={d_model} and n_heads={n_heads} must be positive")
    if d_model % n_heads:
        raise UsageError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    kv = n_heads if n_kv_heads is None else n_kv_heads
    if kv <= 0 or n_heads % kv:
        raise UsageError(f"n_heads={n_heads} is not a multiple of n_kv_heads={kv}")
    return kv


class Attention(nn.Module):
    """Multi-head attention in plain tensor math, softmax(QK^T/sqrt(d))V: the reference variant.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads; the head size is d_model / n_heads.
        n_kv_heads: Number of key/value heads (grouped-query attention); default n_heads.
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
    """

    #: Why this variant has no softmax weights to show (None: it has; `llmkit attention`).
    no_weights_reason: str | None = None
    #: When True, `kernel` keeps its softmax weights (B, nh, Tq, Tk) in `last_weights`.
    keep_weights: bool = False
    last_weights: Tensor | None = None

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = False,
        cross: bool = False,
        d_context: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.n_kv_heads = check_heads(d_model, n_heads, n_kv_heads)
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"dropout={dropout} must be in [0, 1)")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.causal, self.cross, self.dropout = causal, cross, dropout
        kv_width = 2 * self.n_kv_heads * self.head_dim
        if cross:
            self.q = nn.Linear(d_model, d_model, bias=bias)
            self.kv = nn.Linear(d_context or d_model, kv_width, bias=bias)
        else:
            self.qkv = nn.Linear(d_model, d_model + kv_width, bias=bias)  # fused: one matmul
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = dropout_layer(dropout)

    # -- the shared path ---------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Positions | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Attend from x (B, T, D) to itself or to `context`; returns (B, T, D).

        `position_ids` (B, T) overrides the positions RoPE rotates by (left-padded batches).
        """
        B, T, _ = x.shape
        q, k, v = self._project(x, context, cache)  # (B, nh, T, hs), (B, nkv, Tk, hs) x2
        offset = 0 if self.cross or cache is None else cache.length
        q_pos = torch.arange(offset, offset + T, device=x.device)
        if positions is not None and not self.cross:
            rotated = positions.rotate(q, k, offset, position_ids)
            if rotated[1] is not k and torch.is_grad_enabled():
                v = v.contiguous()  # else the view kept for backward holds all of qkv's output
            q, k = rotated
        y = self.attend(q, k, v, q_pos, attention_mask, cache, positions)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, D)
        return self.resid_dropout(self.out(y))

    def _heads(self, t: Tensor, n: int) -> Tensor:
        return t.view(t.shape[0], t.shape[1], n, self.head_dim).transpose(1, 2)  # (B, n, T, hs)

    def _project(
        self, x: Tensor, context: Tensor | None, cache: LayerCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        kv_dim = self.n_kv_heads * self.head_dim
        if not self.cross:
            if context is not None:
                raise UsageError(
                    "context given to a self-attention module; build it with cross=True"
                )
            q, k, v = self.qkv(x).split([self.d_model, kv_dim, kv_dim], dim=-1)
            return (
                self._heads(q, self.n_heads),
                self._heads(k, self.n_kv_heads),
                self._heads(v, self.n_kv_heads),
            )
        q = self._heads(self.q(x), self.n_heads)
        if cache is not None and "k" in cache.state:  # encoder memory projected on the first step
            return q, cache.state["k"], cache.state["v"]
        if context is None:
            raise UsageError("cross-attention needs a context (the encoder memory)")
        k, v = self.kv(context).split([kv_dim, kv_dim], dim=-1)
        k, v = self._heads(k, self.n_kv_heads), self._heads(v, self.n_kv_heads)
        if cache is not None:
            cache.state["k"], cache.state["v"] = k, v
            cache.length = k.shape[2]
        return q, k, v

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_pos: Tensor,
        attention_mask: Tensor | None,
        cache: LayerCache | None,
        positions: Positions | None,
    ) -> Tensor:
        """Softmax attention of q (B, nh, Tq, hs) over held + new keys; returns (B, nh, Tq, hs)."""
        if cache is not None and not self.cross:
            k, v = cache.append(k, v)  # (B, nkv, Tk, hs): everything held so far
        unmasked = (  # no padding, no score bias, no window: only causality can hide a key
            attention_mask is None
            and (positions is None or self.cross or not positions.has_bias)
            and type(self).window_mask is Attention.window_mask
        )
        if unmasked and self.causal and cache is None:
            y = self.kernel(q, k, v, None, is_causal=True)  # the kernel's own causal mask
        elif unmasked and (not self.causal or q.shape[2] == 1):
            y = self.kernel(q, k, v, None, is_causal=False)  # one new query sees every held key
        else:
            if cache is not None and not self.cross:
                k_pos = torch.arange(cache.start, cache.start + k.shape[2], device=q.device)
            else:
                k_pos = q_pos if not self.cross else torch.arange(k.shape[2], device=q.device)
            bias = (
                None
                if positions is None or self.cross
                else positions.bias(q_pos, k_pos, self.causal)
            )
            keep = self.keep_mask(q_pos, k_pos, attention_mask, q.shape[0])
            y = self.kernel(q, k, v, additive_mask(keep, bias, q.dtype), is_causal=False)
        self.after_attend(cache)
        return y

    def keep_mask(
        self, q_pos: Tensor, k_pos: Tensor, attention_mask: Tensor | None, batch: int
    ) -> Tensor | None:
        """Boolean (B|1, 1, Tq, Tk) mask of allowed query-key pairs, or None if all are allowed."""
        keep: Tensor | None = None
        if self.causal and len(q_pos) > 1:  # one new query is the newest position: sees every key
            keep = (k_pos[None, :] <= q_pos[:, None])[None, None]  # (1, 1, Tq, Tk)
        window = self.window_mask(q_pos, k_pos)
        if window is not None:
            keep = window if keep is None else keep & window
        if attention_mask is not None:
            pad = padding_mask(attention_mask, len(k_pos), batch)  # (B, 1, 1|Tq, Tk)
            keep = pad if keep is None else keep & pad
        return keep

    def window_mask(self, q_pos: Tensor, k_pos: Tensor) -> Tensor | None:
        """Extra locality mask (sliding window); none for full attention."""
        return None

    def score_keys(self, n_keys: int) -> int:
        """Keys each query is scored against out of `n_keys` (the attention FLOPs' length)."""
        return n_keys

    def after_attend(self, cache: LayerCache | None) -> None:
        """Hook run after each step (sliding window trims its cache here)."""

    def kernel(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        """softmax(q k^T / sqrt(hs) + mask) v; q (B, nh, Tq, hs), k and v (B, nkv, Tk, hs).

        Scores are masked in fp32: in fp16 a masked score (the dtype's minimum plus a negative
        logit) would overflow to -inf and a padding query's row would become NaN.
        """
        k, v = repeat_kv(k, self.n_heads), repeat_kv(v, self.n_heads)  # (B, nh, Tk, hs)
        scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(self.head_dim)  # (B, nh, Tq, Tk)
        if is_causal:
            tq, tk = scores.shape[-2:]
            causal = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        if mask is not None:
            scores = scores + mask
        weights = self.normalize(scores).to(q.dtype)
        if self.keep_weights:
            self.last_weights = weights.detach()
        weights = F.dropout(weights, self.dropout, self.training)
        return weights @ v  # (B, nh, Tq, hs)

    def normalize(self, scores: Tensor) -> Tensor:
        """Attention weights from masked fp32 scores (..., Tq, Tk): a softmax over the keys.

        Variants that change only this step (e.g. a softmax with an extra zero logit) override it.
        """
        return torch.softmax(scores, dim=-1)


def repeat_kv(t: Tensor, n_heads: int) -> Tensor:
    """Repeat kv heads (B, nkv, T, hs) -> (B, nh, T, hs); query head h uses kv head h // group."""
    group = n_heads // t.shape[1]
    return t if group == 1 else t.repeat_interleave(group, dim=1)


def padding_mask(attention_mask: Tensor, n_keys: int, batch: int) -> Tensor:
    """(B, Tk) 1/0 or (B, 1|nh, Tq, Tk) bool -> bool mask broadcastable to (B, nh, Tq, Tk).

    A 2-D mask longer than the held keys (a sliding window dropped old ones) keeps its last columns.
    """
    if attention_mask.dim() == 2:
        if attention_mask.shape[0] != batch or attention_mask.shape[1] < n_keys:
            raise UsageError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({batch}, "
                f"{n_keys}) covering every key position"
            )
        return attention_mask[:, -n_keys:].bool()[:, None, None, :]  # (B, 1, 1, Tk)
    if attention_mask.dim() == 4:
        if attention_mask.dtype != torch.bool:
            raise UsageError(
                f"a 4-D attention_mask must be boolean (True = may attend), got {attention_mask.dtype}"
                "; an additive float mask would be misread"
            )
        return attention_mask
    raise UsageError(
        f"attention_mask must be (B, T) or (B, heads, Tq, Tk), got {attention_mask.dim()}-D"
    )


def additive_mask(keep: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Combine a boolean keep-mask and a score bias into one additive float mask (or None).

    Masked pairs get the dtype's most negative value rather than -inf, so a row with no allowed key
    (a padding query) gives a finite uniform average instead of NaN.
    """
    if keep is None and bias is None:
        return None
    mask = torch.zeros((), dtype=dtype) if bias is None else bias.to(dtype)
    if keep is not None:
        mask = torch.where(keep, mask, torch.finfo(dtype).min)
    return mask


class SDPAttention(Attention):
    """Multi-head attention through F.scaled_dot_product_attention (flash/memory-efficient kernels).

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads; default n_heads.
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
    """

    def kernel(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        if type(self).normalize is not Attention.normalize or self.keep_weights:  # plain math
            return Attention.kernel(self, q, k, v, mask, is_causal)
        if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
            # torch's CPU kernels run bf16/fp16 attention 2-7x slower than fp32 (docs/benchmarks.md)
            if mask is not None and mask.is_floating_point():
                mask = mask.float()
            y = self.kernel(q.float(), k.float(), v.float(), mask, is_causal)
            return y.to(q.dtype)
        dropout = self.dropout if self.training else 0.0
        if k.shape[1] != q.shape[1]:
            if SDPA_GQA:  # kv heads shared inside the kernel: no copy of the whole cache per step
                return F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, enable_gqa=True
                )
            k, v = repeat_kv(k, self.n_heads), repeat_kv(v, self.n_heads)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
        )


class GroupedQueryAttention(SDPAttention):
    """Grouped-query attention (Ainslie et al.): n_heads query heads share n_kv_heads kv heads.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads; must divide n_heads (required).
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = False,
        cross: bool = False,
        d_context: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        if n_kv_heads is None:
            raise UsageError("attention 'gqa' needs n_kv_heads (the number of key/value heads)")
        super().__init__(
            d_model,
            n_heads,
            n_kv_heads,
            causal=causal,
            cross=cross,
            d_context=d_context,
            dropout=dropout,
            bias=bias,
        )


class MultiQueryAttention(SDPAttention):
    """Multi-query attention (Shazeer 2019): every query head shares one key/value head.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Must be 1 (accepted so that configs can state it).
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = 1,
        *,
        causal: bool = False,
        cross: bool = False,
        d_context: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        if n_kv_heads not in (None, 1):
            raise UsageError(f"attention 'mqa' has one key/value head; got n_kv_heads={n_kv_heads}")
        super().__init__(
            d_model,
            n_heads,
            1,
            causal=causal,
            cross=cross,
            d_context=d_context,
            dropout=dropout,
            bias=bias,
        )


class SlidingWindowAttention(SDPAttention):
    """Local attention: each query sees only keys less than `window` positions away (Mistral).

    A full forward runs blockwise (each block of `window` queries against its own and the
    neighbouring blocks), so time and memory grow as T * window instead of T^2; the cache keeps
    only the last `window - 1` keys, so decoding cost stays constant.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads; default n_heads.
        causal: Each position attends only to itself and earlier positions.
        cross: Not supported (a window over encoder memory has no meaning); must be false.
        d_context: Unused; accepted for a uniform interface.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
        window: Positions a query sees: itself and the window - 1 nearest on each allowed side.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = False,
        cross: bool = False,
        d_context: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        window: int = 256,
    ) -> None:
        if cross:
            raise UsageError("attention 'sliding_window' does not support cross=True")
        if window < 1:
            raise UsageError(f"window={window} must be at least 1")
        super().__init__(d_model, n_heads, n_kv_heads, causal=causal, dropout=dropout, bias=bias)
        self.window = window

    def window_mask(self, q_pos: Tensor, k_pos: Tensor) -> Tensor | None:
        distance = q_pos[:, None] - k_pos[None, :]  # (Tq, Tk)
        if not self.causal:
            distance = distance.abs()
        return (distance < self.window)[None, None]  # (1, 1, Tq, Tk)

    def after_attend(self, cache: LayerCache | None) -> None:
        if cache is not None:
            cache.keep_last(self.window - 1)

    def score_keys(self, n_keys: int) -> int:
        return min(n_keys, self.window)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_pos: Tensor,
        attention_mask: Tensor | None,
        cache: LayerCache | None,
        positions: Positions | None,
    ) -> Tensor:
        T = q.shape[2]
        own_window = type(self).window_mask is not SlidingWindowAttention.window_mask
        full = own_window or self.keep_weights  # kept weights: one (Tq, Tk) matrix, not blocks
        if (cache is not None and cache.length > 0) or 2 * self.window >= T or full:
            return super().attend(q, k, v, q_pos, attention_mask, cache, positions)
        y = self.blockwise(q, k, v, attention_mask, positions)
        if cache is not None:
            cache.append(k, v)
            self.after_attend(cache)
        return y

    def blockwise(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attention_mask: Tensor | None,
        positions: Positions | None,
    ) -> Tensor:
        """Full-sequence local attention in blocks of `window` queries; O(T * window)."""
        B, nh, T, _ = q.shape
        W = self.window
        n = -(-T // W)  # number of blocks
        pad = n * W - T
        sides = 2 if self.causal else 3  # key blocks per query block: previous, own (, next)
        k, v = repeat_kv(k, nh), repeat_kv(v, nh)
        keep_keys = torch.ones(B, T, dtype=torch.bool, device=q.device)
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise UsageError("sliding_window takes a (B, T) attention_mask")
            keep_keys = padding_mask(attention_mask, T, B)[:, 0, 0]
        # One empty block before the first and after the last, so every block has neighbours.
        q = F.pad(q, (0, 0, 0, pad))
        k, v = (F.pad(t, (0, 0, W, pad + W)) for t in (k, v))  # (B, nh, (n + 2) * W, hs)
        keep_keys = F.pad(keep_keys, (W, pad + W), value=False)  # (B, (n + 2) * W)

        def with_neighbours(t: Tensor) -> Tensor:  # (B, nh, (n+2)W, hs) -> (B*n, nh, sides*W, hs)
            parts = [t[:, :, i * W : (i + n) * W].unflatten(2, (n, W)) for i in range(sides)]
            return torch.cat(parts, dim=3).transpose(1, 2).flatten(0, 1)

        qb = q.unflatten(2, (n, W)).transpose(1, 2).flatten(0, 1)  # (B*n, nh, W, hs)
        kb, vb = with_neighbours(k), with_neighbours(v)  # (B*n, nh, sides*W, hs)
        keep = torch.cat(
            [keep_keys[:, i * W : (i + n) * W].unflatten(1, (n, W)) for i in range(sides)], dim=2
        ).flatten(0, 1)  # (B*n, sides*W)
        # Inside a block, query a sits at W + a on the key axis and key c at c.
        q_at = torch.arange(W, device=q.device) + W
        k_at = torch.arange(sides * W, device=q.device)
        rel = q_at[:, None] - k_at[None, :]  # (W, sides*W)
        local = (rel >= 0) & (rel < W) if self.causal else rel.abs() < W
        allowed = local[None] & keep[:, None, :]  # (B*n, W, sides*W)
        # ALiBi depends only on the distance, so one (nh, W, sides*W) bias serves every block.
        bias = None if positions is None else positions.bias(q_at, k_at, self.causal)
        mask = additive_mask(allowed[:, None], bias, q.dtype)  # (B*n, nh|1, W, sides*W)
        y = self.kernel(qb, kb, vb, mask, is_causal=False)  # (B*n, nh, W, hs)
        return y.unflatten(0, (B, n)).transpose(1, 2).flatten(2, 3)[:, :, :T]


class LinearAttention(Attention):
    """Kernelised linear attention (Katharopoulos et al. 2020), O(T) in sequence length.

    Softmax is replaced by a feature map phi(x) = elu(x) + 1, so
    out_i = phi(q_i) . sum_j phi(k_j) v_j^T / phi(q_i) . sum_j phi(k_j), with j <= i when causal.
    The causal form runs in chunks (quadratic inside a chunk, a running state across chunks); the
    cache holds that state, (B, nh, hs, hs) and (B, nh, hs), so a decoding step costs the same at
    any length. ALiBi is not defined for it; RoPE is applied before the feature map. Dropout applies
    to the output.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads; default n_heads.
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
        chunk_size: Positions per chunk in the causal form (memory/speed trade-off only).
    """

    eps = 1e-6
    no_weights_reason = (
        "linear attention has no softmax weight matrix: it sums phi(k) v^T into a running state, "
        "so no query-key weights exist to show"
    )

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = False,
        cross: bool = False,
        d_context: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        chunk_size: int = 64,
    ) -> None:
        super().__init__(
            d_model,
            n_heads,
            n_kv_heads,
            causal=causal,
            cross=cross,
            d_context=d_context,
            dropout=dropout,
            bias=bias,
        )
        if chunk_size < 1:
            raise UsageError(f"chunk_size={chunk_size} must be at least 1")
        self.chunk_size = chunk_size

    def score_keys(self, n_keys: int) -> int:
        return self.head_dim  # each query meets the (hs, hs) state, not the keys

    @staticmethod
    def feature_map(x: Tensor) -> Tensor:
        """phi(x) = elu(x) + 1: positive, so the normaliser never vanishes."""
        return F.elu(x) + 1.0

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_pos: Tensor,
        attention_mask: Tensor | None,
        cache: LayerCache | None,
        positions: Positions | None,
    ) -> Tensor:
        if positions is not None and positions.has_bias:
            raise UsageError("linear attention cannot use ALiBi positions; choose rope or absolute")
        B, nh, T, _ = q.shape
        q, k = self.feature_map(q), self.feature_map(repeat_kv(k, nh))  # (B, nh, T|S, hs)
        v = repeat_kv(v, nh)
        if attention_mask is not None:
            keep = padding_mask(attention_mask, k.shape[2], B)  # (B, 1, 1, Tk)
            if keep.shape[2] != 1:
                raise UsageError("linear attention takes a (B, T) attention_mask")
            k = k * keep[:, 0, 0, None, :, None].to(k.dtype)  # padded keys contribute nothing
        if self.cross and cache is not None and "S" in cache.state:
            state, norm = cache.state["S"], cache.state["z"]
            y = (q @ state) / ((q @ norm[..., None]) + self.eps)
        elif not self.causal:
            state = k.transpose(-2, -1) @ v  # (B, nh, hs, hs)
            norm = k.sum(2)  # (B, nh, hs)
            y = (q @ state) / ((q @ norm[..., None]) + self.eps)
            if self.cross and cache is not None:
                cache.state["S"], cache.state["z"] = state, norm
        else:
            state0 = cache.state.get("S") if cache is not None else None
            norm0 = cache.state.get("z") if cache is not None else None
            y, state, norm = self.causal_chunks(q, k, v, state0, norm0)
            if cache is not None:
                cache.state["S"], cache.state["z"] = state, norm
                cache.length += T
        return y

    def causal_chunks(
        self, q: Tensor, k: Tensor, v: Tensor, state0: Tensor | None, norm0: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Causal linear attention of feature-mapped q, k (B, nh, T, hs) from a running state."""
        B, nh, T, hs = q.shape
        C = min(self.chunk_size, T)
        n = -(-T // C)
        pad = n * C - T
        q, k, v = (
            F.pad(t, (0, 0, 0, pad)).unflatten(2, (n, C)) for t in (q, k, v)
        )  # (B,nh,n,C,hs)
        if state0 is None or norm0 is None:
            state0 = q.new_zeros(B, nh, hs, v.shape[-1])
            norm0 = q.new_zeros(B, nh, hs)
        chunk_state = k.transpose(-2, -1) @ v  # (B, nh, n, hs, hs)
        chunk_norm = k.sum(3)  # (B, nh, n, hs)
        before = chunk_state.cumsum(2) - chunk_state + state0[:, :, None]  # state entering chunk
        norm_before = chunk_norm.cumsum(2) - chunk_norm + norm0[:, :, None]  # (B, nh, n, hs)
        tril = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        inside = (q @ k.transpose(-2, -1)).masked_fill(~tril, 0.0)  # (B, nh, n, C, C)
        num = inside @ v + q @ before  # (B, nh, n, C, hs)
        den = inside.sum(-1) + (q * norm_before[:, :, :, None, :]).sum(-1)  # (B, nh, n, C)
        y = (num / (den[..., None] + self.eps)).flatten(2, 3)[:, :, :T]  # (B, nh, T, hs)
        return y, state0 + chunk_state.sum(2), norm0 + chunk_norm.sum(2)
