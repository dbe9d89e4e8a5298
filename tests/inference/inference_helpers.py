"""Helpers for the inference tests: a tiny Llama written as a GGUF file, with its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TEXT = (
    "The capital of France is Paris. The capital of Italy is Rome. In 2024 there were 365 days "
    "and 12 months; prices rose 3.5% to $1,234.  Tabs\tand   spaces, newlines\n\nand émojis 🙂 "
    "don't break it. We'll see what they've done, isn't it?"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass
class TinyGGUF:
    """A GGUF file and what it was made from: the HF reference model and a `tokenizers` reference."""

    path: Path
    reference: Any  # transformers.LlamaForCausalLM holding the dequantised weights
    hf_tokenizer: Any  # tokenizers.Tokenizer with the same vocabulary, merges and pre-tokenizer
    config: dict[str, Any]


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's q/k permutation (HF rotate-half rows -> llama.cpp interleaved rows)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def train_tokenizer() -> Any:
    """A small byte-level BPE trained with `tokenizers`, pre-tokenized like SmolLM2 (digits alone)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT] * 4, trainer)
    return tok


def write_tiny_gguf(path: Path, quantize: bool, tie: bool = True, seed: int = 0) -> TinyGGUF:
    """Write a random 2-layer GQA Llama (+ tokenizer) as GGUF; returns it with its references."""
    import gguf
    from gguf.quants import dequantize
    from gguf.quants import quantize as gquant
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = train_tokenizer()
    vocab = hf_tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    state = hf_tok.model.__getstate__()
    import json

    merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(state)["merges"]]
    torch.manual_seed(seed)
    config = dict(
        vocab_size=len(tokens),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
    )
    source = LlamaForCausalLM(LlamaConfig(**config)).eval()
    with torch.no_grad():  # make norms non-trivial so a wrong mapping shows
        for name, p in source.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf_state = {k: v.detach().numpy().astype(np.float32) for k, v in source.state_dict().items()}

    qtypes = [gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(96)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(16)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    )

    reference_state: dict[str, torch.Tensor] = {}
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i, (name, w) in enumerate(hf_state.items()):
        if name == "lm_head.weight" and tie:
            continue
        if name.startswith("model.layers."):
            _, _, layer, *rest = name.split(".")
            part = ".".join(rest[:-1])
            gname = f"blk.{layer}.{names[part]}.weight"
        else:
            gname = {
                "model.embed_tokens.weight": "token_embd.weight",
                "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight",
            }[name]
        stored = w
        if "attn_q" in gname:
            stored = permute(w, 4)
        elif "attn_k" in gname:
            stored = permute(w, 2)
        if quantize and w.ndim == 2:
            qtype = qtypes[i % 2]
            q = gquant(stored, qtype)
            writer.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=qtype)
            # quantisation works on blocks within a row, so it commutes with the row permutation
            reference_state[name] = torch.from_numpy(np.array(dequantize(gquant(w, qtype), qtype)))
        else:
            writer.add_tensor(gname, stored)
            reference_state[name] = torch.from_numpy(w.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    reference = LlamaForCausalLM(LlamaConfig(**config)).eval()
    reference.load_state_dict(reference_state, strict=not tie)
    if tie:
        reference.tie_weights()
    return TinyGGUF(path, reference, hf_tok, config)


def tiny_transformer(vocab: int = 13, seed: int = 0) -> torch.nn.Module:
    """A two-layer encoder-decoder Transformer small enough for beam-search tests."""
    from llmkit.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(seed)
    cfg = TransformerConfig(
        vocab_size=vocab,
        max_positions=64,
        n_encoder_layers=2,
        n_decoder_layers=2,
        n_heads=2,
        d_model=16,
        d_ff=32,
        dropout=0.0,
    )
    return Transformer(cfg).eval()
