"""Hugging Face interop: build llmkit models from HF configs + state dicts, and back.

The per-architecture key maps live with each model (gpt.py, bert.py, llama.py); this module picks
the architecture from `config.json` ("model_type"/"architectures"), loads the tensors with checks
(shape mismatches and missing tensors are a UsageError listing the first offenders), and reads or
writes a directory in the `save_pretrained` layout (config.json + model.safetensors, or shards).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from llmkit.errors import UsageError
from llmkit.storage.publish import default_permissions, holds_only, publish_dir

if TYPE_CHECKING:
    from llmkit.tokenizers.base import Tokenizer

#: Attention variants that compute exactly what HF's eager/sdpa attention computes.
FULL_ATTENTION = ("mha", "sdpa", "gqa", "mqa")


def _module_for(config_json: dict[str, Any], source: str = "config.json") -> ModuleType:
    from llmkit.models import bert, gpt, llama

    model_type = str(config_json.get("model_type", "")).lower()
    archs = " ".join(config_json.get("architectures") or []).lower()
    table = {"gpt2": gpt, "bert": bert, "llama": llama}
    if model_type in table:
        return table[model_type]
    for key, module in table.items():
        if key in archs:
            return module
    if "model" in config_json and "format" in config_json:
        raise UsageError(f"{source}: this is already an llmkit checkpoint; it needs no import")
    raise UsageError(
        f"{source}: model_type '{model_type}' is not supported; supported: gpt2, bert, llama"
    )


def _model_for(obj: Any) -> ModuleType:
    from llmkit.models import bert, gpt, llama

    if isinstance(obj, llama.Llama):
        return llama
    if isinstance(obj, gpt.GPT):
        return llama if obj.config.position == "rope" else gpt
    if isinstance(obj, bert.Bert):
        return bert
    raise UsageError(f"{type(obj).__name__} has no Hugging Face layout (gpt, bert, llama do)")


def load_weights(
    model: nn.Module, weights: dict[str, Tensor], optional: tuple[str, ...] = ()
) -> None:
    """Copy `weights` into `model`, filling tied aliases; mismatches are a UsageError listing them."""
    own = model.state_dict()
    twins: dict[str, str] = {}
    by_id: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in by_id:
            twins[name] = by_id[id(param)]
        else:
            by_id[id(param)] = name
    weights = dict(weights)
    for alias, original in twins.items():
        if alias not in weights and original in weights:
            weights[alias] = weights[original]
        elif original not in weights and alias in weights:
            weights[original] = weights[alias]
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in weights.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        raise UsageError(f"{len(bad)} shape mismatch(es), first: {'; '.join(bad[:3])}")
    missing = [k for k in own if k not in weights and not k.startswith(optional)]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        raise UsageError(
            f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)


def from_hf(
    config_json: dict[str, Any], state_dict: dict[str, Tensor], source: str = "config.json"
) -> nn.Module:
    """An llmkit model (GPT, Bert or Llama) holding the weights of a Hugging Face checkpoint.

    `source` names the checkpoint in errors (its config.json, or the GGUF file it came from).
    """
    if not isinstance(config_json, dict):
        raise UsageError(f"{source}: expected a JSON object")
    module = _module_for(config_json, source)
    try:
        config = module.config_from_hf(config_json)
    except KeyError as exc:
        raise UsageError(f"{source}: field {exc} is missing") from None
    except (TypeError, AttributeError) as exc:
        raise UsageError(f"{source}: a field has the wrong type ({exc})") from None
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    model_cls = {"gpt": "GPT", "bert": "Bert", "llama": "Llama"}[config.model_name]
    model: nn.Module = getattr(module, model_cls)(config)
    try:
        weights = module.state_dict_from_hf(config, state_dict)
        load_weights(model, weights, getattr(module, "OPTIONAL", ()))
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return model.eval()


def reject_unexpected(
    arch: str, hf: dict[str, Tensor], used: set[str], ignored: tuple[str, ...] = ()
) -> None:
    """A UsageError listing checkpoint tensors the config has no place for (never drop weights)."""
    extra = [k for k in hf if k not in used and not k.endswith(ignored)]
    if extra:
        raise UsageError(
            f"{arch} weights hold {len(extra)} tensor(s) the config has no place for, first: "
            f"{', '.join(extra[:3])}; does config.json describe these weights (layers, sizes)?"
        )


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json dict, state dict) in the Hugging Face layout of the model's architecture."""
    module = _model_for(model)
    attention = getattr(model.config, "attention", "sdpa")
    if attention not in FULL_ATTENTION:
        raise UsageError(
            f"attention='{attention}' has no Hugging Face equivalent (the exported model would "
            f"compute something else); export needs one of {', '.join(FULL_ATTENTION)}"
        )
    return module.config_to_hf(model.config), module.state_dict_to_hf(model)


def read_hf_dir(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """config.json and the safetensors weights (one file or an index of shards) of an HF model dir."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    weights: dict[str, Tensor] = {}
    for file in files:
        try:
            weights.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UsageError(f"{file}: not a readable safetensors file ({exc})") from None
    return config, weights


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

    Everything is written to a temporary directory beside `path` and renamed into place; an
    existing `path` is replaced only if empty or an earlier export.
    """
    from safetensors.torch import save_file

    config, weights = to_hf(model)
    target = Path(path)
    where = target.absolute()
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    try:
        save_file(
            {k: v.detach().contiguous() for k, v in weights.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        to_hf_tokenizer = getattr(tokenizer, "to_hf", None)
        if to_hf_tokenizer is not None:
            to_hf_tokenizer(tmp / "tokenizer.json")
        default_permissions(tmp)
        publish_dir(tmp, target, is_export, "a Hugging Face export of llmkit's")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_hf(
    src_dir: str | Path,
) -> tuple[nn.Module, Tokenizer | None, dict[str, Any], str | None]:
    """(model, tokenizer or None, generation settings, why the tokenizer was skipped or None)."""
    from llmkit.storage.tokenizer_files import read_hf_tokenizer

    src = Path(src_dir)
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (expected a Hugging Face model directory)")
    config, weights = read_hf_dir(src)
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
