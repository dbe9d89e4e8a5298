"""BERT: a bidirectional encoder with a masked-LM head and a sequence-classification head.

    tokens -> word + position + token-type embeddings -> norm -> n_layers x post-norm blocks
        -> MLM head: dense -> GELU -> norm -> vocabulary (tied to the word embedding) -> logits
        -> classification head: [CLS] -> dense -> tanh (the pooler) -> linear -> n_labels

Weights load from and save to the Hugging Face BERT layout (BertForMaskedLM /
BertForSequenceClassification / BertModel checkpoints).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.errors import UsageError
from llmkit.models.config import ModelConfig, build_attention, init_weights, model_factory
from llmkit.models.hf_keys import reject_unexpected
from llmkit.models.traits import ModelTraits
from llmkit.nn.block import Block
from llmkit.nn.dropout import dropout_layer
from llmkit.nn.mlp import build_mlp
from llmkit.nn.norms import build_norm
from llmkit.nn.positions import build_positions


@dataclasses.dataclass
class BertConfig(ModelConfig):
    """A BERT encoder with MLM and sequence-classification heads.

    Args:
        vocab_size: Number of token ids.
        max_positions: Longest sequence (size of the learned position table).
        type_vocab_size: Number of segment (token type) ids.
        n_layers: Number of Transformer blocks.
        n_heads: Attention heads per block; must divide d_model.
        d_model: Width of the hidden states.
        d_ff: Hidden width of the MLP; default 4 * d_model.
        n_kv_heads: Key/value heads for grouped-query attention; default n_heads.
        attention: Attention variant by registry name.
        attention_options: Extra keyword arguments for the attention variant.
        position: Position scheme by registry name (learned, sinusoidal, rope, alibi, none, ...).
        norm: Norm by registry name (layernorm, rmsnorm, ...).
        mlp: Feed-forward block by registry name (gelu, gelu_tanh, relu, swiglu, ...).
        norm_eps: Epsilon of the norms.
        dropout: Dropout (training only).
        n_labels: Outputs of the classification head.
        gradient_checkpointing: Recompute block activations in backward (less memory, ~30% slower).
    """

    model_name = "bert"

    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    d_ff: int | None = None
    n_kv_heads: int | None = None
    attention: str = "sdpa"
    attention_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    position: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.1
    n_labels: int = 2
    gradient_checkpointing: bool = False


class Bert(nn.Module):
    """BERT encoder: `model(input_ids)` -> MLM logits (B, T, V); `model.classify(...)` -> (B, n_labels)."""

    traits: ClassVar[ModelTraits] = ModelTraits(
        "encoder", classifier=True, masked_lm=True, hf_model_types=("bert",)
    )

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = build_positions(
            c.position, d_model=c.d_model, n_heads=c.n_heads, max_positions=c.max_positions
        )
        self.token_types = nn.Embedding(c.type_vocab_size, c.d_model)
        self.embed_norm = build_norm(c.norm, c.d_model, c.norm_eps)
        self.drop = dropout_layer(c.dropout)
        self.blocks = nn.ModuleList(
            Block(
                build_attention(
                    c.attention,
                    c.attention_options,
                    d_model=c.d_model,
                    n_heads=c.n_heads,
                    n_kv_heads=c.n_kv_heads,
                    causal=False,
                    dropout=c.dropout,
                ),
                build_mlp(c.mlp, c.d_model, c.d_ff or 4 * c.d_model, bias=True, dropout=c.dropout),
                build_norm(c.norm, c.d_model, c.norm_eps),
                build_norm(c.norm, c.d_model, c.norm_eps),
                pre_norm=False,
                checkpoint=c.gradient_checkpointing,
            )
            for _ in range(c.n_layers)
        )
        # Masked-LM head: transform, then project onto the (tied) vocabulary with its own bias.
        self.mlm_dense = nn.Linear(c.d_model, c.d_model)
        self.mlm_norm = build_norm(c.norm, c.d_model, c.norm_eps)
        self.mlm_head = nn.Linear(c.d_model, c.vocab_size)
        # Classification head: the pooler (dense + tanh on [CLS]) and a linear classifier.
        self.pooler = nn.Linear(c.d_model, c.d_model)
        self.classifier = nn.Linear(c.d_model, c.n_labels)
        init_weights(self)
        self.mlm_head.weight = self.embed.weight

    def encode(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, T, D); attention_mask (B, T) is 1 for tokens and 0 for padding."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.positions.embed(self.embed(input_ids)) + self.token_types(token_type_ids)
        x = self.drop(self.embed_norm(x))  # (B, T, D)
        for block in self.blocks:
            x = block(x, attention_mask=attention_mask, positions=self.positions)
        return x

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Masked-LM logits (B, T, V)."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        h = self.mlm_norm(self._act(self.mlm_dense(h)))
        return self.mlm_head(h)

    def classify(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Sequence-classification logits (B, n_labels) from the first ([CLS]) position."""
        h = self.encode(input_ids, attention_mask, token_type_ids)
        pooled = torch.tanh(self.pooler(h[:, 0]))  # (B, D)
        return self.classifier(self.drop(pooled))

    def _act(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh") if self.config.mlp == "gelu_tanh" else F.gelu(x)


bert = model_factory(BertConfig, Bert)


# -- Hugging Face BERT layout -----------------------------------------------------------------------
def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    """BertConfig from a Hugging Face BERT config.json dict."""
    act = hf.get("hidden_act", "gelu")
    mlp = {
        "gelu": "gelu",
        "gelu_new": "gelu_tanh",
        "gelu_pytorch_tanh": "gelu_tanh",
        "relu": "relu",
    }
    if act not in mlp:
        raise UsageError(f"hidden_act '{act}' is not supported")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UsageError("only position_embedding_type 'absolute' is supported")
    n_labels = hf.get("num_labels") or len(hf.get("id2label") or {}) or 2
    return BertConfig(
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_model=hf["hidden_size"],
        d_ff=hf.get("intermediate_size"),
        mlp=mlp[act],
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        n_labels=n_labels,
    )


def config_to_hf(c: BertConfig) -> dict[str, Any]:
    """A Hugging Face BERT config.json dict (BertForMaskedLM; pooler/classifier weights included)."""
    if (c.position, c.norm) != ("learned", "layernorm") or c.mlp == "swiglu":
        raise UsageError(
            "position/norm/mlp: only learned positions, LayerNorm and GELU/ReLU map to BERT"
        )
    if c.n_kv_heads not in (None, c.n_heads):
        raise UsageError("n_kv_heads: BERT has full key/value heads")
    act = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[c.mlp]
    return {
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_positions,
        "type_vocab_size": c.type_vocab_size,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff or 4 * c.d_model,
        "hidden_act": act,
        "layer_norm_eps": c.norm_eps,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.dropout,
        "num_labels": c.n_labels,
        "tie_word_embeddings": True,
    }


#: Heads that a checkpoint may lack (a BertForMaskedLM has no pooler/classifier, and so on);
#: they keep their fresh initialisation.
OPTIONAL = ("pooler.", "classifier.", "mlm_dense.", "mlm_norm.", "mlm_head.bias")


#: Tensors a BERT checkpoint may hold that carry nothing to load: the MLM decoder tied to the word
#: embeddings, the position-id buffer, and BertForPreTraining's next-sentence head (not modelled).
HF_IGNORED = (
    "cls.predictions.decoder.weight",
    "cls.predictions.decoder.bias",
    "embeddings.position_ids",
    "cls.seq_relationship.weight",
    "cls.seq_relationship.bias",
)


def _pairs(c: BertConfig) -> list[tuple[str, list[str]]]:
    """(llmkit key, HF keys concatenated along dim 0) for every tensor."""
    e = "bert.embeddings."
    pairs = [
        ("embed.weight", [f"{e}word_embeddings.weight"]),
        ("positions.weight", [f"{e}position_embeddings.weight"]),
        ("token_types.weight", [f"{e}token_type_embeddings.weight"]),
        ("embed_norm.weight", [f"{e}LayerNorm.weight"]),
        ("embed_norm.bias", [f"{e}LayerNorm.bias"]),
    ]
    for i in range(c.n_layers):
        ours, theirs = f"blocks.{i}.", f"bert.encoder.layer.{i}."
        for n in ("weight", "bias"):
            pairs += [
                (
                    f"{ours}attn.qkv.{n}",
                    [f"{theirs}attention.self.{p}.{n}" for p in ("query", "key", "value")],
                ),
                (f"{ours}attn.out.{n}", [f"{theirs}attention.output.dense.{n}"]),
                (f"{ours}norm1.{n}", [f"{theirs}attention.output.LayerNorm.{n}"]),
                (f"{ours}mlp.up.{n}", [f"{theirs}intermediate.dense.{n}"]),
                (f"{ours}mlp.down.{n}", [f"{theirs}output.dense.{n}"]),
                (f"{ours}norm2.{n}", [f"{theirs}output.LayerNorm.{n}"]),
            ]
    for n in ("weight", "bias"):
        pairs += [
            (f"mlm_dense.{n}", [f"cls.predictions.transform.dense.{n}"]),
            (f"mlm_norm.{n}", [f"cls.predictions.transform.LayerNorm.{n}"]),
            (f"pooler.{n}", [f"bert.pooler.dense.{n}"]),
            (f"classifier.{n}", [f"classifier.{n}"]),
        ]
    pairs.append(("mlm_head.bias", ["cls.predictions.bias"]))
    return pairs


def state_dict_from_hf(c: BertConfig, hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """llmkit weights from a Hugging Face BERT state dict; absent heads are left out."""
    if not any(k.startswith("bert.") for k in hf):  # a bare BertModel checkpoint
        hf = {f"bert.{k}": v for k, v in hf.items()}
    if "cls.predictions.bias" not in hf and "cls.predictions.decoder.bias" in hf:
        hf = {**hf, "cls.predictions.bias": hf["cls.predictions.decoder.bias"]}
    out: dict[str, Tensor] = {}
    missing = []
    for ours, keys in _pairs(c):
        absent = [k for k in keys if k not in hf]
        if absent:
            if not ours.startswith(OPTIONAL):
                missing += absent
            continue
        out[ours] = torch.cat([hf[k] for k in keys], dim=0) if len(keys) > 1 else hf[keys[0]]
    if missing:
        raise UsageError(
            f"BERT weights lack {len(missing)} tensors, first: {', '.join(missing[:5])}"
        )
    reject_unexpected("BERT", hf, {k for _, keys in _pairs(c) for k in keys}, HF_IGNORED)
    return out


def state_dict_to_hf(model: Bert) -> dict[str, Tensor]:
    """A Hugging Face BERT state dict (MLM head, pooler and classifier all included)."""
    sd = model.state_dict()
    d = model.config.d_model
    out: dict[str, Tensor] = {}
    for ours, keys in _pairs(model.config):
        parts = sd[ours].split(d, dim=0) if len(keys) > 1 else [sd[ours]]
        out.update({k: p.contiguous() for k, p in zip(keys, parts, strict=True)})
    return out
