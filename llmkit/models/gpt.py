"""GPT: a decoder-only causal language model in the GPT-2 layout (pre-norm blocks, tied LM head).

    tokens -> embedding (+ positions) -> n_layers x [x + attn(norm(x)); x + mlp(norm(x))]
           -> final norm -> LM head (the embedding matrix, transposed) -> logits

Attention, positions, norm and MLP are chosen by name in `GPTConfig`, so the same file runs GPT-2
(learned positions, LayerNorm, GELU) or, with other choices, a RoPE/RMSNorm/SwiGLU model
(see llama.py). Weights load from and save to the Hugging Face GPT-2 layout (`from_hf`/`to_hf`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from llmkit.errors import UsageError
from llmkit.models.config import ModelConfig, build_attention, init_weights, model_factory
from llmkit.models.hf_keys import reject_unexpected
from llmkit.models.traits import ModelTraits
from llmkit.nn.block import Block
from llmkit.nn.cache import KVCache
from llmkit.nn.dropout import dropout_layer
from llmkit.nn.head import LMHead
from llmkit.nn.mlp import build_mlp
from llmkit.nn.norms import build_norm
from llmkit.nn.positions import build_positions


@dataclasses.dataclass
class GPTConfig(ModelConfig):
    """A decoder-only causal LM (GPT-2 layout by default).

    Args:
        vocab_size: Number of token ids.
        max_positions: Longest sequence (the size of a learned position table).
        n_layers: Number of Transformer blocks.
        n_heads: Attention heads per block; must divide d_model.
        d_model: Width of the residual stream.
        d_ff: Hidden width of the MLP; default 4 * d_model.
        n_kv_heads: Key/value heads for grouped-query attention; default n_heads.
        attention: Attention variant by registry name (mha, sdpa, mqa, gqa, sliding_window, linear, ...).
        attention_options: Extra keyword arguments for the attention variant, e.g. {"window": 128}.
        position: Position scheme by registry name (learned, sinusoidal, rope, alibi, none, ...).
        norm: Norm by registry name (layernorm, rmsnorm, ...).
        mlp: Feed-forward block by registry name (gelu, gelu_tanh, relu, swiglu, ...).
        norm_eps: Epsilon of the norms.
        bias: Biases in the linear layers.
        dropout: Dropout on embeddings, attention weights and residual branches (training only).
        tie_embeddings: Share the LM head's weight with the token embedding.
        rope_theta: RoPE base frequency.
        gradient_checkpointing: Recompute block activations in backward (less memory, ~30% slower).
        n_labels: Outputs of a classification head on the last real token (0: no head).
    """

    model_name = "gpt"

    vocab_size: int = 50257
    max_positions: int = 1024
    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    d_ff: int | None = None
    n_kv_heads: int | None = None
    attention: str = "sdpa"
    attention_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    position: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu_tanh"
    norm_eps: float = 1e-5
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    gradient_checkpointing: bool = False
    n_labels: int = 0


class GPT(nn.Module):
    """Decoder-only Transformer LM: `model(input_ids)` -> logits (B, T, vocab_size).

    With `n_labels` > 0 (or after `add_classifier`) it also has `classify(input_ids,
    attention_mask=)` -> (B, n_labels), read from the hidden state of each row's last real token.
    """

    traits: ClassVar[ModelTraits] = ModelTraits(
        "decoder", hf_model_types=("gpt2",), grows_classifier=True
    )

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = build_positions(
            c.position,
            d_model=c.d_model,
            n_heads=c.n_heads,
            max_positions=c.max_positions,
            rope_theta=c.rope_theta,
        )
        self.drop = dropout_layer(c.dropout)
        self.blocks = nn.ModuleList(
            Block(
                build_attention(
                    c.attention,
                    c.attention_options,
                    d_model=c.d_model,
                    n_heads=c.n_heads,
                    n_kv_heads=c.n_kv_heads,
                    causal=True,
                    dropout=c.dropout,
                    bias=c.bias,
                ),
                build_mlp(
                    c.mlp, c.d_model, c.d_ff or 4 * c.d_model, bias=c.bias, dropout=c.dropout
                ),
                build_norm(c.norm, c.d_model, c.norm_eps, bias=c.bias),
                build_norm(c.norm, c.d_model, c.norm_eps, bias=c.bias),
                pre_norm=True,
                checkpoint=c.gradient_checkpointing,
            )
            for _ in range(c.n_layers)
        )
        self.norm = build_norm(c.norm, c.d_model, c.norm_eps, bias=c.bias)
        self.head = LMHead(c.d_model, c.vocab_size, bias=False)
        init_weights(self)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * c.n_layers))
        if c.tie_embeddings:
            self.head.weight = self.embed.weight
        if c.n_labels < 0:
            raise UsageError(f"n_labels={c.n_labels} must be 0 (no head) or positive")
        if c.n_labels:
            self.add_classifier(c.n_labels)

    def add_classifier(self, n_labels: int) -> None:
        """Give the decoder a classification head (`score`) of `n_labels` outputs, randomly set."""
        if n_labels < 1:
            raise UsageError(f"n_labels={n_labels} must be positive")
        weight = self.embed.weight
        self.score = nn.Linear(self.config.d_model, n_labels, bias=False)
        self.score.to(device=weight.device, dtype=weight.dtype)
        nn.init.normal_(self.score.weight, std=0.02)
        self.config.n_labels = n_labels
        self.traits = dataclasses.replace(type(self).traits, classifier=True)  # type: ignore[misc]  # a per-instance override of the class traits

    def task_heads(self) -> tuple[str, ...]:
        """Modules a task adds on top of the pretrained model, trained even under an adapter."""
        return ("score",) if hasattr(self, "score") else ()

    def adapter_targets(self) -> dict[str, list[tuple[str, int, int]]]:
        """Short projection name -> (module path, first, end output row) in every block.

        q, k and v are row ranges of the fused qkv projection; o is the attention output; up,
        down (alias fc1, fc2) and gate (SwiGLU) are the MLP's. Adapters target these names.
        """
        out: dict[str, list[tuple[str, int, int]]] = {}
        for i, block in enumerate(self.blocks):
            attn, mlp = block.attn, block.mlp
            prefix = f"blocks.{i}"
            qkv = getattr(attn, "qkv", None)
            if isinstance(qkv, nn.Linear):
                d = int(getattr(attn, "d_model", self.config.d_model))
                kv = (qkv.out_features - d) // 2
                for name, start, stop in (("q", 0, d), ("k", d, d + kv), ("v", d + kv, d + 2 * kv)):
                    out.setdefault(name, []).append((f"{prefix}.attn.qkv", start, stop))
            out_proj = getattr(attn, "out", None)
            if isinstance(out_proj, nn.Linear):
                out.setdefault("o", []).append((f"{prefix}.attn.out", 0, out_proj.out_features))
            for name, aliases in (("gate", ()), ("up", ("fc1",)), ("down", ("fc2",))):
                layer = getattr(mlp, name, None)
                if isinstance(layer, nn.Linear):
                    for key in (name, *aliases):
                        site = (f"{prefix}.mlp.{name}", 0, layer.out_features)
                        out.setdefault(key, []).append(site)
        return out

    def hidden_states(
        self,
        input_ids: Tensor,
        *,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """The final-norm hidden states (B, T, D) that the LM and classification heads read."""
        offset = cache.length if cache is not None else 0
        if position_ids is not None:
            self.positions.fit(int(position_ids.max()) + 1)  # one device read, not one per layer
        x = self.embed(input_ids)  # (B, T, D)
        x = self.drop(self.positions.embed(x, offset, position_ids))
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                attention_mask=attention_mask,
                cache=cache[i] if cache is not None else None,
                positions=self.positions,
                position_ids=position_ids,
            )
        return self.norm(x)

    def classify(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Classification logits (B, n_labels) at each row's last real token.

        Padding may sit on either side: positions count from each row's first real token, and
        the pooled position is the last one the mask marks, so a padded row scores as unpadded.
        """
        score = getattr(self, "score", None)
        if score is None:
            raise UsageError("this model has no classification head; add one with add_classifier")
        if attention_mask is None:
            h = self.hidden_states(input_ids)
            return score(h[:, -1])
        mask = attention_mask.to(torch.long)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        h = self.hidden_states(input_ids, attention_mask=mask, position_ids=position_ids)
        steps = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * steps).argmax(-1)  # (B,) the last real token of each row
        pooled = h[torch.arange(h.shape[0], device=h.device), last]  # (B, D)
        return score(pooled)

    def forward(
        self,
        input_ids: Tensor,
        *,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> Tensor:
        """Logits (B, T, V) for token ids (B, T); with a cache, positions continue from cache.length.

        `attention_mask` (B, Tk) is 1 for tokens and 0 for padding, `position_ids` (B, T) each
        token's position (for left-padded rows: counted from their first real token), and
        `logits_to_keep` > 0 computes only the last that many positions' logits (B, n, V).
        """
        x = self.hidden_states(
            input_ids, cache=cache, attention_mask=attention_mask, position_ids=position_ids
        )
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        return self.head(x)  # (B, T, V)

    def new_cache(self, batch_size: int = 1, max_length: int | None = None) -> KVCache:
        """An empty KV cache for incremental decoding (buffers are sized on first use)."""
        return KVCache(self.config.n_layers, max_length)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights once); optionally without the token embedding."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n


gpt = model_factory(GPTConfig, GPT)


# -- Hugging Face GPT-2 layout ----------------------------------------------------------------------
def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """GPTConfig from a Hugging Face GPT-2 config.json dict."""
    act = hf.get("activation_function", "gelu_new")
    mlp = {
        "gelu_new": "gelu_tanh",
        "gelu_pytorch_tanh": "gelu_tanh",
        "gelu": "gelu",
        "relu": "relu",
    }
    if act not in mlp:
        raise UsageError(f"activation_function '{act}' is not supported")
    if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("reorder_and_upcast_attn"):
        raise UsageError("scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn unsupported")
    return GPTConfig(
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("n_positions", 1024),
        n_layers=hf.get("n_layer", 12),
        n_heads=hf.get("n_head", 12),
        d_model=hf.get("n_embd", 768),
        d_ff=hf.get("n_inner"),
        mlp=mlp[act],
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=hf.get("tie_word_embeddings", True),
    )


def config_to_hf(c: GPTConfig) -> dict[str, Any]:
    """A Hugging Face GPT-2 config.json dict; only the GPT-2 choices have an HF equivalent."""
    wanted = {"position": "learned", "norm": "layernorm", "bias": True}
    for field, value in wanted.items():
        if getattr(c, field) != value:
            raise UsageError(
                f"{field}={getattr(c, field)!r} has no GPT-2 equivalent (needs {value!r})"
            )
    if c.mlp not in ("gelu_tanh", "gelu", "relu") or (c.n_kv_heads not in (None, c.n_heads)):
        raise UsageError(
            "mlp/n_kv_heads: only GELU/ReLU MLPs and full heads have a GPT-2 equivalent"
        )
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.mlp]
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.max_positions,
        "n_layer": c.n_layers,
        "n_head": c.n_heads,
        "n_embd": c.d_model,
        "n_inner": c.d_ff,
        "activation_function": act,
        "layer_norm_epsilon": c.norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
    }


def hf_export_type(c: GPTConfig) -> str:
    """The Hugging Face model_type a GPT config exports as: with RoPE it is a Llama, else GPT-2."""
    return "llama" if c.position == "rope" else "gpt2"


#: Tensors a GPT-2 checkpoint may hold that carry nothing to load: a tied LM head, and the causal
#: mask buffers older transformers versions saved.
HF_IGNORED = ("lm_head.weight", ".attn.bias", ".attn.masked_bias")


def _hf_key_map(c: GPTConfig) -> list[tuple[str, str, bool]]:
    """(llmkit key, HF key, transpose) pairs; HF GPT-2 stores its linear weights as Conv1D (in, out)."""
    pairs = [("embed.weight", "transformer.wte.weight", False)]
    pairs.append(("positions.weight", "transformer.wpe.weight", False))
    for i in range(c.n_layers):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("norm1", "ln_1"), ("norm2", "ln_2")):
            pairs += [(f"{ours}{a}.weight", f"{theirs}{b}.weight", False)]
            pairs += [(f"{ours}{a}.bias", f"{theirs}{b}.bias", False)]
        for a, b in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.out", "attn.c_proj"),
            ("mlp.up", "mlp.c_fc"),
            ("mlp.down", "mlp.c_proj"),
        ):
            pairs += [(f"{ours}{a}.weight", f"{theirs}{b}.weight", True)]
            pairs += [(f"{ours}{a}.bias", f"{theirs}{b}.bias", False)]
    pairs += [("norm.weight", "transformer.ln_f.weight", False)]
    pairs += [("norm.bias", "transformer.ln_f.bias", False)]
    if not c.tie_embeddings:
        pairs.append(("head.weight", "lm_head.weight", False))
    return pairs


def state_dict_from_hf(c: GPTConfig, hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """llmkit GPT weights from a Hugging Face GPT-2 state dict (with or without 'transformer.')."""
    if not any(k.startswith("transformer.") for k in hf):  # a bare GPT2Model checkpoint
        hf = {f"transformer.{k}": v for k, v in hf.items()}
    out: dict[str, Tensor] = {}
    missing = []
    for ours, theirs, transpose in _hf_key_map(c):
        if theirs not in hf:
            missing.append(theirs)
            continue
        out[ours] = hf[theirs].t().contiguous() if transpose else hf[theirs]
    if missing:
        raise UsageError(
            f"GPT-2 weights lack {len(missing)} tensors, first: {', '.join(missing[:5])}"
        )
    used = {theirs for _, theirs, _ in _hf_key_map(c)}
    reject_unexpected("GPT-2", hf, used, HF_IGNORED)
    return out


def state_dict_to_hf(model: GPT) -> dict[str, Tensor]:
    """A Hugging Face GPT-2 (GPT2LMHeadModel) state dict of the model's weights."""
    sd = model.state_dict()
    out = {
        theirs: (sd[ours].t() if transpose else sd[ours]).contiguous()
        for ours, theirs, transpose in _hf_key_map(model.config)
    }
    return out  # a tied lm_head is implied by tie_word_embeddings, as save_pretrained writes it
