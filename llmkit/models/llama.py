"""Llama: the GPT decoder with RMSNorm, rotary positions, a SwiGLU MLP and grouped-query attention.

Architecturally it is `GPT` (gpt.py) with other choices, so the module is the same; what this file
adds is the config defaults and the Hugging Face `LlamaForCausalLM` key mapping. RoPE uses the
half-split ("rotate_half") layout of HF checkpoints, so their q/k weights load unpermuted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor

from llmkit.errors import UsageError
from llmkit.models.config import model_factory
from llmkit.models.gpt import GPT, GPTConfig
from llmkit.models.hf_keys import reject_unexpected
from llmkit.models.traits import ModelTraits


@dataclasses.dataclass
class LlamaConfig(GPTConfig):
    """A Llama-family decoder-only LM: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases.

    Args:
        vocab_size: Number of token ids.
        max_positions: Longest sequence the model is meant for (RoPE itself extends past it).
        n_layers: Number of Transformer blocks.
        n_heads: Query heads per block; must divide d_model.
        d_model: Width of the residual stream.
        d_ff: Hidden width of the SwiGLU MLP.
        n_kv_heads: Key/value heads (grouped-query attention); must divide n_heads.
        attention: Attention variant by registry name.
        attention_options: Extra keyword arguments for the attention variant.
        position: Position scheme by registry name (rope for Llama).
        norm: Norm by registry name (rmsnorm for Llama; layernorm, ...).
        mlp: Feed-forward block by registry name (swiglu for Llama; gelu, gelu_tanh, relu, ...).
        norm_eps: Epsilon of the norms.
        bias: Biases in the linear layers (attention_bias in HF configs).
        dropout: Dropout (training only).
        tie_embeddings: Share the LM head's weight with the token embedding.
        rope_theta: RoPE base frequency.
        gradient_checkpointing: Recompute block activations in backward (less memory, ~30% slower).
        n_labels: Outputs of a classification head on the last real token (0: no head).
    """

    model_name = "llama"

    vocab_size: int = 32000
    max_positions: int = 2048
    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    d_ff: int | None = 2048
    n_kv_heads: int | None = 4
    attention: str = "sdpa"
    attention_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    position: str = "rope"
    norm: str = "rmsnorm"
    mlp: str = "swiglu"
    norm_eps: float = 1e-6
    bias: bool = False
    dropout: float = 0.0
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    gradient_checkpointing: bool = False
    n_labels: int = 0


class Llama(GPT):
    """Llama-family decoder LM: `model(input_ids)` -> logits (B, T, vocab_size)."""

    traits: ClassVar[ModelTraits] = ModelTraits(
        "decoder", hf_model_types=("llama",), grows_classifier=True
    )

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)


llama = model_factory(LlamaConfig, Llama)


# -- Hugging Face Llama layout ----------------------------------------------------------------------
def config_from_hf(hf: dict[str, Any]) -> LlamaConfig:
    """LlamaConfig from a Hugging Face Llama config.json dict (rope_theta or rope_parameters)."""
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d_model // n_heads
    if head_dim * n_heads != d_model:
        raise UsageError(f"head_dim={head_dim} * num_attention_heads != hidden_size")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise UsageError(f"rope type '{rope.get('rope_type')}' is not supported")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if hf.get("hidden_act", "silu") != "silu":
        raise UsageError(f"hidden_act '{hf.get('hidden_act')}' is not supported")
    bias = bool(hf.get("attention_bias", False))
    if bool(hf.get("mlp_bias", False)) != bias:
        raise UsageError("attention_bias and mlp_bias must agree")
    return LlamaConfig(
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("max_position_embeddings", 2048),
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        d_model=d_model,
        d_ff=hf["intermediate_size"],
        n_kv_heads=hf.get("num_key_value_heads") or n_heads,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        bias=bias,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rope_theta=float(theta),
    )


def config_to_hf(c: GPTConfig) -> dict[str, Any]:
    """A Hugging Face Llama config.json dict (LlamaForCausalLM)."""
    wanted = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
    for field, value in wanted.items():
        if getattr(c, field) != value:
            raise UsageError(
                f"{field}={getattr(c, field)!r} has no Llama equivalent (needs {value!r})"
            )
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_positions,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads or c.n_heads,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff or 4 * c.d_model,
        "head_dim": c.d_model // c.n_heads,
        "hidden_act": "silu",
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_dropout": c.dropout,
    }


#: Tensors a Llama checkpoint may hold that carry nothing to load (older rotary-frequency buffers);
#: with tied embeddings an `lm_head.weight` copy is ignored too.
HF_IGNORED = ("rotary_emb.inv_freq",)


def _pairs(c: GPTConfig) -> list[tuple[str, list[str]]]:
    """(llmkit key, HF keys concatenated along dim 0) for every tensor."""
    names = ["weight", "bias"] if c.bias else ["weight"]
    pairs = [("embed.weight", ["model.embed_tokens.weight"])]
    for i in range(c.n_layers):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        pairs.append((f"{ours}norm1.weight", [f"{theirs}input_layernorm.weight"]))
        pairs.append((f"{ours}norm2.weight", [f"{theirs}post_attention_layernorm.weight"]))
        for n in names:
            qkv = [f"{theirs}self_attn.{p}_proj.{n}" for p in "qkv"]
            pairs.append((f"{ours}attn.qkv.{n}", qkv))
            pairs.append((f"{ours}attn.out.{n}", [f"{theirs}self_attn.o_proj.{n}"]))
            for a in ("gate", "up", "down"):
                pairs.append((f"{ours}mlp.{a}.{n}", [f"{theirs}mlp.{a}_proj.{n}"]))
    pairs.append(("norm.weight", ["model.norm.weight"]))
    if not c.tie_embeddings:
        pairs.append(("head.weight", ["lm_head.weight"]))
    return pairs


def state_dict_from_hf(c: GPTConfig, hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """llmkit weights from a Hugging Face Llama state dict."""
    if not any(k.startswith("model.") for k in hf):  # a bare LlamaModel checkpoint
        hf = {(k if k == "lm_head.weight" else f"model.{k}"): v for k, v in hf.items()}
    out: dict[str, Tensor] = {}
    missing = [k for _, keys in _pairs(c) for k in keys if k not in hf]
    if missing:
        raise UsageError(
            f"Llama weights lack {len(missing)} tensors, first: {', '.join(missing[:5])}"
        )
    for ours, keys in _pairs(c):
        out[ours] = torch.cat([hf[k] for k in keys], dim=0) if len(keys) > 1 else hf[keys[0]]
    ignored = ("rotary_emb.inv_freq", "lm_head.weight") if c.tie_embeddings else HF_IGNORED
    reject_unexpected("Llama", hf, {k for _, keys in _pairs(c) for k in keys}, ignored)
    return out


def state_dict_to_hf(model: GPT) -> dict[str, Tensor]:
    """A Hugging Face LlamaForCausalLM state dict of the model's weights."""
    c = model.config
    sd = model.state_dict()
    hs = c.d_model // c.n_heads
    sizes = [c.d_model, (c.n_kv_heads or c.n_heads) * hs, (c.n_kv_heads or c.n_heads) * hs]
    out: dict[str, Tensor] = {}
    for ours, keys in _pairs(c):
        parts = sd[ours].split(sizes, dim=0) if len(keys) > 1 else [sd[ours]]
        out.update({k: p.contiguous() for k, p in zip(keys, parts, strict=True)})
    return out
