"""Transformer: the encoder-decoder of Vaswani et al. (2017) for sequence-to-sequence tasks.

    source -> embedding * sqrt(D) + sinusoids -> encoder blocks (bidirectional) -> memory
    target -> embedding * sqrt(D) + sinusoids -> decoder blocks (causal self-attention,
              cross-attention to memory, MLP) -> linear (tied to the embedding) -> logits

Blocks are post-norm as in the paper (`pre_norm=True` for the more stable pre-norm variant, which
adds a final norm to each stack). Source and target share one vocabulary and embedding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from torch import Tensor, nn

from llmkit.models.config import ModelConfig, build_attention, init_weights, model_factory
from llmkit.models.traits import ModelTraits
from llmkit.nn.block import Block
from llmkit.nn.cache import KVCache
from llmkit.nn.dropout import dropout_layer
from llmkit.nn.head import LMHead
from llmkit.nn.mlp import build_mlp
from llmkit.nn.norms import build_norm
from llmkit.nn.positions import build_positions


@dataclasses.dataclass
class TransformerConfig(ModelConfig):
    """An encoder-decoder Transformer (defaults: the paper's base model, but 6+6 layers of 512).

    Args:
        vocab_size: Number of token ids (shared by source and target).
        max_positions: Longest sequence for a learned position table (sinusoids extend on demand).
        n_encoder_layers: Encoder blocks.
        n_decoder_layers: Decoder blocks.
        n_heads: Attention heads; must divide d_model.
        d_model: Width of the hidden states.
        d_ff: Hidden width of the MLP; default 4 * d_model.
        n_kv_heads: Key/value heads for grouped-query attention; default n_heads.
        attention: Self-attention variant by registry name.
        cross_attention: Encoder-decoder attention variant by registry name.
        attention_options: Extra keyword arguments for the self-attention variant.
        position: Position scheme by registry name (sinusoidal, learned, rope, alibi, none, ...).
        norm: Norm by registry name (layernorm, rmsnorm, ...).
        mlp: Feed-forward block by registry name (relu, gelu, gelu_tanh, swiglu, ...).
        norm_eps: Epsilon of the norms.
        pre_norm: Normalise sub-layer inputs (pre-norm) instead of their outputs (the paper).
        dropout: Dropout (training only).
        tie_embeddings: Share the output projection's weight with the embedding.
        gradient_checkpointing: Recompute block activations in backward (less memory, ~30% slower).
    """

    model_name = "transformer"

    vocab_size: int = 32000
    max_positions: int = 1024
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    n_heads: int = 8
    d_model: int = 512
    d_ff: int | None = 2048
    n_kv_heads: int | None = None
    attention: str = "sdpa"
    cross_attention: str = "sdpa"
    attention_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    position: str = "sinusoidal"
    norm: str = "layernorm"
    mlp: str = "relu"
    norm_eps: float = 1e-5
    pre_norm: bool = False
    dropout: float = 0.1
    tie_embeddings: bool = True
    gradient_checkpointing: bool = False

    def validate(self) -> None:
        super().validate()
        from llmkit.errors import UsageError

        for field in ("n_encoder_layers", "n_decoder_layers"):
            if getattr(self, field) <= 0:
                raise UsageError(f"{field}={getattr(self, field)} must be positive")
        if self.cross_attention == "sliding_window":
            raise UsageError(
                "cross_attention='sliding_window' is not defined; use sdpa, mha or linear"
            )


class Transformer(nn.Module):
    """Encoder-decoder: `model(src_ids, tgt_ids)` -> logits (B, T, V); `encode` and `decode` apart."""

    traits: ClassVar[ModelTraits] = ModelTraits("encoder-decoder")

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = build_positions(
            c.position, d_model=c.d_model, n_heads=c.n_heads, max_positions=c.max_positions
        )
        self.drop = dropout_layer(c.dropout)

        def attention(causal: bool, cross: bool = False) -> Any:
            name = c.cross_attention if cross else c.attention
            return build_attention(
                name,
                {} if cross else c.attention_options,
                d_model=c.d_model,
                n_heads=c.n_heads,
                n_kv_heads=c.n_kv_heads,
                causal=causal,
                cross=cross,
                dropout=c.dropout,
            )

        def norm() -> nn.Module:
            return build_norm(c.norm, c.d_model, c.norm_eps)

        def mlp() -> nn.Module:
            return build_mlp(
                c.mlp, c.d_model, c.d_ff or 4 * c.d_model, bias=True, dropout=c.dropout
            )

        self.encoder = nn.ModuleList(
            Block(
                attention(causal=False),
                mlp(),
                norm(),
                norm(),
                pre_norm=c.pre_norm,
                checkpoint=c.gradient_checkpointing,
            )
            for _ in range(c.n_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            Block(
                attention(causal=True),
                mlp(),
                norm(),
                norm(),
                pre_norm=c.pre_norm,
                checkpoint=c.gradient_checkpointing,
                cross_attn=attention(causal=False, cross=True),
                norm_cross=norm(),
            )
            for _ in range(c.n_decoder_layers)
        )
        self.encoder_norm = norm() if c.pre_norm else nn.Identity()
        self.decoder_norm = norm() if c.pre_norm else nn.Identity()
        self.head = LMHead(c.d_model, c.vocab_size, bias=False)
        init_weights(self, std=c.d_model**-0.5)
        if c.tie_embeddings:
            self.head.weight = self.embed.weight

    def _embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        x = self.embed(ids) * math.sqrt(self.config.d_model)  # (B, T, D)
        return self.drop(self.positions.embed(x, offset))

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Encoder memory (B, S, D); src_mask (B, S) is 1 for tokens and 0 for padding."""
        x = self._embed(src_ids)
        for block in self.encoder:
            x = block(x, attention_mask=src_mask, positions=self.positions)
        return self.encoder_norm(x)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
        tgt_mask: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, V) for target ids given the encoder memory (B, S, D)."""
        offset = cache.length if cache is not None else 0
        x = self._embed(tgt_ids, offset)
        for i, block in enumerate(self.decoder):
            x = block(
                x,
                attention_mask=tgt_mask,
                cache=cache[i] if cache is not None else None,
                positions=self.positions,
                memory=memory,
                memory_mask=src_mask,
                cross_cache=cache.cross[i] if cache is not None else None,
            )
        return self.head(self.decoder_norm(x))

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits (B, T, V): encode the source, decode the whole target at once."""
        return self.decode(tgt_ids, self.encode(src_ids, src_mask), src_mask, tgt_mask=tgt_mask)

    def new_cache(self, batch_size: int = 1, max_length: int | None = None) -> KVCache:
        """An empty decoder cache (self-attention keys/values plus the projected memory)."""
        return KVCache(self.config.n_decoder_layers, max_length, cross=True)


transformer = model_factory(TransformerConfig, Transformer)
