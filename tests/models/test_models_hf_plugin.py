"""The Hugging Face dispatcher asks the registered models: a third-party model that declares
`hf_model_types` and its conversions imports and exports like the built-ins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import llmkit
from llmkit.errors import UsageError
from llmkit.models.config import ModelConfig, model_factory
from llmkit.models.gpt import GPT, GPTConfig
from llmkit.models.traits import ModelTraits
from llmkit.storage.hf import from_hf, load_hf, save_hf, to_hf

HF_TYPE = "tiny_bigram_hf"


@dataclasses.dataclass
class BigramConfig(ModelConfig):
    """A bigram LM: an embedding and an untied output projection."""

    model_name: ClassVar[str] = "tiny_bigram"
    vocab_size: int = 11
    d_model: int = 8
    n_heads: int = 1


class Bigram(nn.Module):
    """logits(token) = head(embed(token)); declares its HF type and where its conversions are."""

    traits: ClassVar[ModelTraits] = ModelTraits(
        "decoder", hf_model_types=(HF_TYPE,), hf_layout=f"{__name__}:BigramLayout"
    )

    def __init__(self, config: BigramConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.head(self.embed(input_ids))


class BigramLayout:
    """The four conversions, held by an object rather than the model's module."""

    @staticmethod
    def config_from_hf(hf: dict[str, Any]) -> BigramConfig:
        return BigramConfig(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"])

    @staticmethod
    def config_to_hf(c: BigramConfig) -> dict[str, Any]:
        return {"model_type": HF_TYPE, "vocab_size": c.vocab_size, "hidden_size": c.d_model}

    @staticmethod
    def state_dict_from_hf(c: BigramConfig, hf: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"embed.weight": hf["wte"], "head.weight": hf["lm_head"]}

    @staticmethod
    def state_dict_to_hf(model: Bigram) -> dict[str, Tensor]:
        sd = model.state_dict()
        return {"wte": sd["embed.weight"], "lm_head": sd["head.weight"]}


@pytest.fixture
def bigram_registered() -> None:
    llmkit.register("model", "tiny_bigram", model_factory(BigramConfig, Bigram), summary="test")


def test_a_plugin_model_imports_and_exports_through_its_traits(
    bigram_registered: None, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    hf = {"wte": torch.randn(11, 8), "lm_head": torch.randn(11, 8)}
    model = from_hf({"model_type": HF_TYPE, "vocab_size": 11, "hidden_size": 8}, hf)
    assert isinstance(model, Bigram)
    assert torch.equal(model.embed.weight, hf["wte"]) and torch.equal(
        model.head.weight, hf["lm_head"]
    )
    save_hf(model, tmp_path / "export")
    assert json.loads((tmp_path / "export" / "config.json").read_text())["model_type"] == HF_TYPE
    again = load_hf(tmp_path / "export")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(again(ids), model(ids))


def test_unknown_types_list_what_the_registered_models_declare(bigram_registered: None) -> None:
    with pytest.raises(
        UsageError, match=rf"model_type 't5' is not supported; supported: .*{HF_TYPE}"
    ):
        from_hf({"model_type": "t5"}, {})
    with pytest.raises(UsageError, match=r"shape mismatch.*head\.weight: checkpoint \(11, 4\)"):
        from_hf(
            {"model_type": HF_TYPE, "vocab_size": 11, "hidden_size": 8},
            {"wte": torch.zeros(11, 8), "lm_head": torch.zeros(11, 4)},
        )


def test_the_model_says_what_it_exports_as() -> None:
    small = {"vocab_size": 32, "max_positions": 16, "n_layers": 1, "n_heads": 2, "d_model": 8}
    assert to_hf(GPT(GPTConfig(**small)))[0]["model_type"] == "gpt2"
    rope = GPTConfig(**small, position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    config, weights = to_hf(GPT(rope))
    assert config["model_type"] == "llama" and "model.layers.0.self_attn.q_proj.weight" in weights


def test_a_model_without_hf_types_has_no_layout() -> None:
    model = llmkit.create(
        "model",
        "transformer",
        vocab_size=32,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_heads=2,
        d_model=8,
    )
    with pytest.raises(UsageError, match="Transformer has no Hugging Face layout"):
        to_hf(model)
