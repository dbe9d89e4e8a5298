"""What a model declares about itself, so that the layers above ask the model, never a list of names.

Every model class (and the registered factory that builds it) carries `traits`: whether it is a
decoder, an encoder or an encoder-decoder, whether it has a `classify` head, and which Hugging Face
`model_type`s it reads and writes (and where its conversions live, `hf_layout`). A third-party model that declares nothing is read from its
methods: `encode` + `decode` make an encoder-decoder, `classify` a classification head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Architecture = Literal["decoder", "encoder", "encoder-decoder"]


@dataclass(frozen=True)
class ModelTraits:
    """A model's declared shape: architecture, heads and the Hugging Face types it maps."""

    architecture: Architecture = "decoder"
    classifier: bool = False  # has `classify(input_ids, attention_mask=...) -> (B, n_labels)`
    grows_classifier: bool = False  # `add_classifier(n_labels)` gives it a `classify` head
    masked_lm: bool = False  # its forward gives masked-LM logits over every position
    hf_model_types: tuple[str, ...] = ()  # Hugging Face `model_type`s it imports and exports
    # The module ("pkg.mod") or object ("pkg.mod:obj") holding the Hugging Face conversions
    # config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf (optionally OPTIONAL, the
    # key prefixes an HF file may lack, and hf_export_type(config), the model_type a config exports
    # as); None: the module that defines the model.
    hf_layout: str | None = None

    @property
    def is_decoder(self) -> bool:
        """A decoder-only model: it predicts the next token (causal LM, generation)."""
        return self.architecture == "decoder"

    @property
    def is_encoder(self) -> bool:
        """A bidirectional encoder: it sees every token, so it has no next-token perplexity."""
        return self.architecture == "encoder"

    @property
    def is_encoder_decoder(self) -> bool:
        """An encoder over the source and a decoder over the target (`encode` + `decode`)."""
        return self.architecture == "encoder-decoder"


def traits_of(obj: Any) -> ModelTraits:
    """The traits a model, model class or registered factory declares (inferred when it has none)."""
    declared = getattr(obj, "traits", None)
    if isinstance(declared, ModelTraits):
        return declared
    if hasattr(obj, "encode") and hasattr(obj, "decode"):
        return ModelTraits("encoder-decoder", classifier=hasattr(obj, "classify"))
    return ModelTraits("decoder", classifier=hasattr(obj, "classify"))


def registered_traits(name: str) -> ModelTraits:
    """The traits of the registered model `name`, read from its factory without building it."""
    from llmkit.api import get

    return traits_of(get("model", name).factory)
