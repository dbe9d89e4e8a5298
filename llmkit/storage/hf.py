"""Hugging Face layouts: build llmkit models from HF configs + state dicts, and back.

Which model reads a `config.json` is asked of the registered models: each declares the HF
`model_type`s it maps (`ModelTraits.hf_model_types`) and where its conversions live
(`ModelTraits.hf_layout`: `config_from_hf`, `config_to_hf`, `state_dict_from_hf`,
`state_dict_to_hf`, optionally `OPTIONAL` and `hf_export_type`). So a third-party model that
declares them imports and exports like the built-ins, and no table of names is kept here. The
tensors load through the one weight loader (`llmkit.storage.checkpoint.load_weights`); a directory
is read or written in the `save_pretrained` layout (config.json + model.safetensors, or shards).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import RegistryError, UsageError
from llmkit.models.traits import ModelTraits, traits_of
from llmkit.storage.checkpoint import load_weights, read_weights
from llmkit.storage.publish import holds_only, staged_dir

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.tokenizers.base import Tokenizer

#: Attention variants that compute exactly what HF's eager/sdpa attention computes.
FULL_ATTENTION = ("mha", "sdpa", "gqa", "mqa")


@dataclass(frozen=True)
class HFLayout:
    """A registered model's Hugging Face mapping: its registry name, its HF model_types, and the
    module or object holding its conversions."""

    model: str
    model_types: tuple[str, ...]
    conversions: Any


def conversions_of(traits: ModelTraits, owner: Any) -> Any:
    """The object holding the conversions: `traits.hf_layout`, else the module defining `owner`."""
    target = traits.hf_layout or owner.__module__
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"hf_layout {target!r}: cannot import it ({exc})") from None
    return obj


def registered_layouts() -> list[HFLayout]:
    """The HF mappings of every registered model that declares `hf_model_types`, in registry order.

    A model whose factory cannot be imported is passed over (a broken plugin does not stop the
    others' imports).
    """
    from llmkit.api import components

    layouts = []
    for component in components("model"):
        try:
            factory = component.factory
        except RegistryError:
            continue
        traits = traits_of(factory)
        if traits.hf_model_types:
            layouts.append(
                HFLayout(component.name, traits.hf_model_types, conversions_of(traits, factory))
            )
    return layouts


def layout_for(config_json: dict[str, Any], source: str = "config.json") -> HFLayout:
    """The registered model that maps this config.json: by `model_type`, else by `architectures`."""
    model_type = str(config_json.get("model_type", "")).lower()
    archs = " ".join(config_json.get("architectures") or []).lower()
    layouts = registered_layouts()
    for layout in layouts:
        if model_type in layout.model_types:
            return layout
    for layout in layouts:
        if any(t in archs for t in layout.model_types):
            return layout
    if "model" in config_json and "format" in config_json:
        raise UsageError(f"{source}: this is already an llmkit checkpoint; it needs no import")
    supported = ", ".join(t for layout in layouts for t in layout.model_types)
    raise UsageError(
        f"{source}: model_type '{model_type}' is not supported; supported: {supported}"
    )


def export_layout(model: nn.Module) -> tuple[str, Any]:
    """(HF model_type, conversions) a model exports as, asked of the model's own layout.

    A layout's `hf_export_type(config)` may name another registered model's type (a GPT with RoPE
    exports as a Llama); without one, the model's first declared type is used.
    """
    traits = traits_of(model)
    if not traits.hf_model_types:
        names = ", ".join(layout.model for layout in registered_layouts())
        raise UsageError(
            f"{type(model).__name__} has no Hugging Face layout (models that declare "
            f"hf_model_types do: {names})"
        )
    own = conversions_of(traits, type(model))
    export_type = getattr(own, "hf_export_type", None)
    model_type = export_type(model.config) if callable(export_type) else traits.hf_model_types[0]
    if model_type in traits.hf_model_types:
        return model_type, own
    for layout in registered_layouts():
        if model_type in layout.model_types:
            return model_type, layout.conversions
    raise UsageError(
        f"{type(model).__name__} exports as model_type '{model_type}', which no registered model maps"
    )


def from_hf(
    config_json: dict[str, Any], state_dict: dict[str, Tensor], source: str = "config.json"
) -> nn.Module:
    """The llmkit model (of the registered model that maps it) holding an HF checkpoint's weights.

    `source` names the checkpoint in errors (its config.json, or the GGUF file it came from).
    """
    from llmkit.models import build_model

    if not isinstance(config_json, dict):
        raise UsageError(f"{source}: expected a JSON object")
    conv = layout_for(config_json, source).conversions
    try:
        config = conv.config_from_hf(config_json)
    except KeyError as exc:
        raise UsageError(f"{source}: field {exc} is missing") from None
    except (TypeError, AttributeError) as exc:
        raise UsageError(f"{source}: a field has the wrong type ({exc})") from None
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    try:
        model: nn.Module = build_model(config.to_dict())
        weights = conv.state_dict_from_hf(config, state_dict)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    load_weights(model, weights, source, getattr(conv, "OPTIONAL", ()))
    return model.eval()


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json dict, state dict) in the Hugging Face layout the model exports as."""
    from llmkit.adapters.base import adapter_of

    adapter = adapter_of(model)
    if adapter is not None:  # its weights have no place in the layout: never drop them silently
        raise UsageError(
            f"the model holds a {adapter.name} adapter; fold it in first (merge_adapter), take "
            "it out (remove_adapter), or write it with llmkit.storage.peft.save_peft"
        )
    conv = exportable(model)
    return conv.config_to_hf(model.config), conv.state_dict_to_hf(model)


def exportable(model: nn.Module) -> Any:
    """The conversions the model exports with, once its attention is known to have an HF twin."""
    _, conv = export_layout(model)
    attention = getattr(model.config, "attention", "sdpa")
    if attention not in FULL_ATTENTION:
        raise UsageError(
            f"attention='{attention}' has no Hugging Face equivalent (the exported model would "
            f"compute something else); export needs one of {', '.join(FULL_ATTENTION)}"
        )
    return conv


def read_hf_dir(
    path: str | os.PathLike[str], desc: str | None = None
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """config.json and the safetensors weights (one file or an index of shards) of an HF model dir
    (with `desc`: read tensor by tensor under a progress bar of that name)."""
    root = Path(path)
    if not (root / "config.json").is_file():
        raise UsageError(f"{root}: no config.json (expected a Hugging Face model directory)")
    config = _read_json(root / "config.json")
    index = root / "model.safetensors.index.json"
    if (root / "model.safetensors").is_file():
        files = [root / "model.safetensors"]
    elif index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise UsageError(f"{index}: field 'weight_map' (tensor -> shard file) is missing")
        files = [root / str(f) for f in sorted(set(weight_map.values()))]
    else:
        raise UsageError(f"{root}: no model.safetensors (only safetensors weights are read)")
    if desc is not None:
        return config, _read_counted(files, desc)
    weights: dict[str, Tensor] = {}
    for file in files:
        weights.update(read_weights(file))
    return config, weights


def _read_counted(files: list[Path], desc: str) -> dict[str, Tensor]:
    """The tensors of the safetensors `files`, each counted in a progress bar as it is read."""
    from safetensors import SafetensorError, safe_open

    from llmkit.progress import progress

    weights: dict[str, Tensor] = {}
    with contextlib.ExitStack() as stack:
        handles = []
        for file in files:
            if not file.is_file():
                raise UsageError(f"{file}: missing; the checkpoint is incomplete")
            try:
                handle = stack.enter_context(safe_open(str(file), "pt"))
                handles.append((file, handle, list(handle.keys())))
            except (SafetensorError, OSError, ValueError) as exc:
                raise UsageError(f"{file}: not a readable safetensors file ({exc})") from None
        with progress(sum(len(names) for *_, names in handles), desc, unit="tensor") as bar:
            for file, handle, names in handles:
                for name in names:
                    try:
                        weights[name] = handle.get_tensor(name)
                    except (SafetensorError, OSError, ValueError) as exc:
                        raise UsageError(f"{file}: tensor {name} is unreadable ({exc})") from None
                    bar.update(1)
    return weights


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file}: expected a JSON object")
    return data


def load_hf(path: str | os.PathLike[str]) -> nn.Module:
    """Load a Hugging Face GPT-2/BERT/Llama directory (as written by save_pretrained)."""
    config, weights = read_hf_dir(path)
    return from_hf(config, weights, source=str(Path(path) / "config.json"))


#: What `save_hf` writes: a directory holding only these is one of its earlier exports.
EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def is_export(directory: Path) -> bool:
    """True if `directory` looks like an earlier `save_hf` output (so replacing it loses nothing)."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(config, dict) and "model_type" in config and holds_only(directory, EXPORT_FILES)
    )


def save_hf(model: nn.Module, path: str | os.PathLike[str], tokenizer: Any = None) -> None:
    """Write config.json + model.safetensors (+ tokenizer.json) that `transformers` loads.

    Everything is staged beside `path` and renamed into place; an existing `path` is replaced
    only if empty or an earlier export.
    """
    from safetensors.torch import save_file

    config, weights = to_hf(model)
    with staged_dir(Path(path), is_export, "a Hugging Face export of llmkit's") as tmp:
        save_file(
            {k: v.detach().contiguous() for k, v in weights.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        to_hf_tokenizer = getattr(tokenizer, "to_hf", None)
        if to_hf_tokenizer is not None:
            to_hf_tokenizer(tmp / "tokenizer.json")


def import_hf(
    src_dir: str | Path,
) -> tuple[nn.Module, Tokenizer | None, dict[str, Any], str | None]:
    """(model, tokenizer or None, generation settings, why the tokenizer was skipped or None)."""
    from llmkit.storage.tokenizer_files import read_hf_tokenizer

    src = Path(src_dir)
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (expected a Hugging Face model directory)")
    config, weights = read_hf_dir(src, desc="import")
    # random init stays where BERT heads are absent from the file
    model = from_hf(config, weights, source=str(src / "config.json"))
    generation: dict[str, Any] = {
        k: config[k] for k in ("bos_token_id", "eos_token_id") if config.get(k) is not None
    }
    gen_file = src / "generation_config.json"
    if gen_file.is_file():
        try:
            gen = json.loads(gen_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{gen_file}: not valid JSON ({exc})") from None
        generation |= {
            k: gen[k] for k in ("bos_token_id", "eos_token_id") if gen.get(k) is not None
        }
    tokenizer, skipped = None, None
    tok_file = src / "tokenizer.json"
    if tok_file.is_file():
        try:
            tokenizer = read_hf_tokenizer(tok_file)
        except UsageError as exc:
            skipped = str(exc)
        tok_config = src / "tokenizer_config.json"
        if tok_config.is_file():
            try:
                template = json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template")
            except (UnicodeDecodeError, json.JSONDecodeError):
                template = None
            if isinstance(template, str):
                generation["chat_template"] = template
    return model, tokenizer, generation, skipped
