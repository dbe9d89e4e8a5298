"""llmkit checkpoints: a directory with config.json, model.safetensors, maybe tokenizer.json, and
manifest.json (every file's size and SHA-256, written last).

`save_model` writes into a staged sibling directory and renames it into place, so a checkpoint is
either complete or absent; `load_model` checks every file against the manifest before reading. Tied weights (one tensor under several names) are stored once and tied
again on load by the model's own constructor. `load_weights` is the one weight loader: checkpoints,
training checkpoints, Hugging Face and GGUF imports all fill a model through it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.devices import as_dtype
from llmkit.errors import UsageError
from llmkit.storage.manifest import MANIFEST_FILE, verify_files, write_manifest
from llmkit.storage.publish import holds_only, staged_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

    from llmkit.tokenizers.base import Tokenizer

FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
#: JSON files a pipeline writes next to a trained model: its objective spec, a classifier's labels.
COMPANION_FILES = ("objective.json", "labels.json")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llmkit")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _unique_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each shared tensor kept once, plus {dropped name: kept name}."""
    state = model.state_dict()
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    unique: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    for name, tensor in state.items():
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
        )
        if tensor.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = tensor.detach().contiguous()
    return unique, tied


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config dict of an llmkit model (`model.config.to_dict()`), or a UsageError."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if to_dict is None:
        raise UsageError(
            f"cannot save a {type(model).__name__}: llmkit checkpoints need a model with "
            "`.config.to_dict()` (an llmkit model)"
        )
    result = dict(to_dict())
    if "model" not in result:
        raise UsageError(f"{type(model).__name__}.config.to_dict() lacks the 'model' name")
    return result


def save_model(
    model: nn.Module,
    directory: str | Path,
    tokenizer: Tokenizer | None = None,
    generation: dict[str, Any] | None = None,
    companions: dict[str, Any] | None = None,
    step: int | None = None,
) -> Path:
    """Write `model` (and `tokenizer`) as an llmkit checkpoint directory, atomically; returns it.

    `generation` holds what generation needs beyond the model config (eos/bos ids, chat template);
    without an eos id, the tokenizer's conventional end-of-text token is recorded. `companions`
    are JSON files written inside the same staged directory, named from `COMPANION_FILES` (a
    classifier's `labels.json`, the trained objective's `objective.json`). The manifest (with
    `step`, the training step the weights are from) is written last, inside the staged directory.
    """
    target = Path(directory)
    with staged_dir(target, is_checkpoint, "an llmkit checkpoint") as tmp:
        write_model_files(model, tmp, tokenizer, generation, companions)
        write_manifest(tmp, step)
    return target


def write_model_files(
    model: nn.Module,
    directory: Path,
    tokenizer: Tokenizer | None = None,
    generation: dict[str, Any] | None = None,
    companions: dict[str, Any] | None = None,
    trainable_only: bool = False,
) -> None:
    """Write config.json, model.safetensors, the tokenizer and companions into a staged directory
    (no manifest: the caller writes it after every other file of the checkpoint).

    A model with an adapter records its spec; with `trainable_only` (a step checkpoint) only the
    weights that train are written, so the checkpoint of a LoRA run is megabytes."""
    from safetensors.torch import save_file

    from llmkit.storage.tokenizer_files import tokenizer_name

    config = model_config(model)
    state, tied = _unique_state_dict(model)
    extra = adapter_fields(model, trainable_only)
    if extra.get("weights") == TRAINABLE:
        trained = extra.pop("trained")
        state = {k: v for k, v in state.items() if k in trained}
        tied = {k: v for k, v in tied.items() if v in state}
    config.update(extra)
    config["llmkit_version"] = _version()
    config["format"] = FORMAT
    config["manifest"] = MANIFEST_FILE
    if tied:
        config["tied_weights"] = tied
    quantization = _quantization(model)
    if quantization:
        config["quantization"] = quantization
    plugins = plugin_components(config)
    if plugins:
        config["plugins"] = plugins
    if tokenizer is not None and not (generation and "eos_token_id" in generation):
        from llmkit.tokenizers.base import find_eos

        eos = find_eos(tokenizer)  # so that generation stops at the end of a text by default
        if eos is not None:
            generation = {**(generation or {}), "eos_token_id": eos}
    if generation:
        config["generation"] = dict(generation)
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_FILE)
        config["tokenizer"] = {"name": tokenizer_name(tokenizer), "file": TOKENIZER_FILE}
    save_file(
        {k: v.cpu() for k, v in state.items()},
        str(directory / WEIGHTS_FILE),
        metadata={"format": "pt"},  # one key: dict order cannot change the file's bytes
    )
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name, value in (companions or {}).items():
        if name not in COMPANION_FILES:
            raise UsageError(f"save_model: companion file {name!r} is not one of {COMPANION_FILES}")
        (directory / name).write_text(json.dumps(value, indent=2) + "\n")


def verify_checkpoint(
    directory: Path, config: dict[str, Any], names: tuple[str, ...] | None = None
) -> None:
    """Check the checkpoint's files (`names`, default all) against its manifest; a DamagedError
    naming the first bad file. A checkpoint from before manifests (config.json names none and
    there is no manifest.json) has nothing to check against."""
    if config.get("manifest") is None and not (directory / MANIFEST_FILE).exists():
        return
    verify_files(directory, names)


def is_complete(directory: Path, step: int | None = None) -> bool:
    """True if `directory` is a checkpoint whose manifest verifies (and records `step`, if given)."""
    try:
        manifest = verify_files(directory)
    except UsageError:
        return False
    return step is None or manifest.get("step") == step


def is_checkpoint(directory: Path) -> bool:
    """True if `directory` holds an llmkit checkpoint and nothing else (so replacing it is safe)."""
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(config, dict)
        and "model" in config
        and "format" in config
        and holds_only(
            directory, (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, MANIFEST_FILE, *COMPANION_FILES)
        )
    )


def read_config(directory: str | Path) -> dict[str, Any]:
    """The config.json of a checkpoint, or a UsageError naming what is wrong."""
    path = Path(directory)
    if not path.exists():
        raise UsageError(f"{path}: checkpoint directory not found")
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a checkpoint directory (expected config.json + {WEIGHTS_FILE})"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise UsageError(f"{config_path}: missing; {path} is not an llmkit checkpoint")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path}: expected a JSON object")
    if "model" not in config:
        if "model_type" in config or "architectures" in config:
            raise UsageError(
                f"{config_path}: this is a Hugging Face checkpoint; convert it first with "
                f"`llmkit import hf {path} -o CKPT_DIR`"
            )
        raise UsageError(f"{config_path}: field 'model' (the architecture name) is missing")
    fmt = config.get("format", FORMAT)
    if fmt != FORMAT:
        raise UsageError(
            f"{config_path}: field 'format' is {fmt!r}; this llmkit reads format {FORMAT}"
        )
    return config


#: What config.json holds beside the model config (so building the model leaves them out).
META_FIELDS = (
    "llmkit_version",
    "format",
    "tied_weights",
    "tokenizer",
    "generation",
    "plugins",
    "manifest",
    "quantization",
)
#: What an adapter adds to config.json: its spec, and TRAINABLE when only trained weights are stored.
ADAPTER_FIELDS = ("adapter", "weights")
TRAINABLE = "trainable"


def adapter_fields(model: nn.Module, trainable_only: bool) -> dict[str, Any]:
    """config.json's adapter fields for `model` (none without an adapter); with `trainable_only`
    also `weights: trainable` and the names to keep (`trained`, popped by the writer)."""
    from llmkit.adapters.base import adapter_spec, trainable_names

    spec = adapter_spec(model)
    if spec is None:
        return {}
    if not trainable_only:
        return {"adapter": spec}
    return {"adapter": spec, "weights": TRAINABLE, "trained": set(trainable_names(model))}


def untrained_names(directory: Path, model: nn.Module) -> tuple[str, ...]:
    """The weights a step checkpoint at `directory` leaves out (the frozen base of an adapter run),
    which loading it into `model` keeps as they are; () for a checkpoint of every weight."""
    from llmkit.adapters.base import frozen_names

    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    if not isinstance(config, dict) or config.get("weights") != TRAINABLE:
        return ()
    return frozen_names(model)


#: The config fields that name a component, and its kind.
COMPONENT_FIELDS = {
    "model": "model",
    "attention": "attention",
    "cross_attention": "attention",
    "norm": "norm",
    "mlp": "mlp",
    "position": "position",
}


def plugin_components(config: dict[str, Any]) -> dict[str, str]:
    """`"kind name" -> distribution` for each component the config names that a third-party
    plugin provides, so that loading without the plugin can say which one to install."""
    from llmkit.plugins import get_host

    host = get_host()
    out: dict[str, str] = {}
    for field, kind in COMPONENT_FIELDS.items():
        name = config.get(field)
        if not isinstance(name, str) or (kind, name) not in host.registry:
            continue
        info = host.plugins.get(host.registry.get(kind, name).plugin)
        if info is not None and not info.builtin:
            out[f"{kind} {name}"] = info.distribution or info.name
    return out


def check_plugins(config: dict[str, Any], where: Path) -> None:
    """A UsageError naming the plugin a checkpoint's component comes from, when it is missing."""
    from llmkit.plugins import get_host

    needed = config.get("plugins") or {}
    registry = get_host().registry
    for key, distribution in needed.items() if isinstance(needed, dict) else ():
        kind, _, name = str(key).partition(" ")
        if (kind, name) not in registry:
            raise UsageError(
                f"{where}: the model's {kind} '{name}' comes from the plugin '{distribution}', "
                f"which is not loaded; install it (pip install {distribution}) or allow it in "
                "LLMKIT_PLUGINS"
            )


def model_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The model config within a checkpoint's config.json (what `llmkit.models.build_model` takes)."""
    return {k: v for k, v in config.items() if k not in (*META_FIELDS, *ADAPTER_FIELDS)}


@contextlib.contextmanager
def no_weight_init() -> Iterator[None]:
    """Make torch.nn.init's fill functions no-ops while a model whose weights get loaded is built.

    Random initialisation is most of the time it takes to build a model only to overwrite every
    weight (6 of 8 s for SmolLM2-135M); `load_weights` then checks that every tensor is loaded,
    so nothing is left uninitialised.
    """
    from torch.nn import init

    names = [
        "normal_",
        "uniform_",
        "trunc_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "zeros_",
        "ones_",
        "constant_",
        "orthogonal_",
    ]
    saved = {n: getattr(init, n) for n in names if hasattr(init, n)}

    def skip(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for n in saved:
            setattr(init, n, skip)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def tied_names(model: nn.Module) -> dict[str, str]:
    """{alias: original} for every parameter the model holds under more than one name."""
    twins: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            twins[name] = first[id(param)]
        else:
            first[id(param)] = name
    return twins


def load_weights(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    source: str,
    optional: tuple[str, ...] = (),
) -> None:
    """Copy `weights` into `model`; a UsageError naming `source` unless they fit exactly.

    A tied parameter may be given under any of its names. Only names starting with one of
    `optional` may be absent (they keep the values the model was built with); shape mismatches,
    other missing names and names the model lacks are listed (the first few of each).
    """
    own = model.state_dict()
    weights = dict(weights)
    for alias, original in tied_names(model).items():
        if alias not in weights and original in weights:
            weights[alias] = weights[original]
        elif original not in weights and alias in weights:
            weights[original] = weights[alias]
    bad = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise UsageError(
            f"{source}: {len(bad)} shape mismatch(es) with the config, first: {'; '.join(bad[:5])}"
        )
    missing = [k for k in own if k not in weights and not (optional and k.startswith(optional))]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:5]))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:5]))
        raise UsageError(f"{source}: weights do not fit the config: " + "; ".join(parts))
    model.load_state_dict(weights, strict=False)


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or unreadable file is a UsageError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise UsageError(f"{file}: missing; the checkpoint is incomplete")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{file}: not a readable safetensors file ({exc})") from None


def with_adapter(model: nn.Module, config: dict[str, Any], path: Path) -> nn.Module:
    """`model` with the adapter config.json records put in (before its weights load), as is
    without one; a step checkpoint that holds only an adapter's weights is refused."""
    if config.get("weights") == TRAINABLE:
        raise UsageError(
            f"{path}: holds only the adapter's trained weights (a step checkpoint of an adapter "
            "run); load the run's model/ directory, which holds the base and the adapter"
        )
    spec = config.get("adapter")
    if spec is None:
        return model
    from llmkit.adapters.base import apply_adapter

    if not isinstance(spec, dict):
        raise UsageError(f"{path / CONFIG_FILE}: field 'adapter' must be an object")
    try:
        return apply_adapter(model, spec)
    except UsageError as exc:
        raise UsageError(f"{path / CONFIG_FILE}: {exc}") from None


def load_model(
    directory: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    verify: bool = True,
) -> nn.Module:
    """Load an llmkit checkpoint directory as an `nn.Module` in eval mode.

    With `verify` (the default) every file is first checked against the checkpoint's manifest,
    so a damaged file is refused by name instead of loaded; `verify=False` is for weights edited
    on purpose. `dtype` is a float dtype name or `int8`/`int4` (weight-only quantised linears,
    `llmkit.nn.quantized`); a checkpoint saved quantised loads quantised.
    """
    from llmkit.models import build_model

    path = Path(directory)
    config = read_config(path)
    if verify:
        verify_checkpoint(path, config)
    weights = path / WEIGHTS_FILE
    check_plugins(config, path / CONFIG_FILE)
    state = read_weights(weights)
    with no_weight_init():
        try:
            model = build_model(model_fields(config))
        except UsageError as exc:
            raise UsageError(f"{path / CONFIG_FILE}: {exc}") from None
    if config.get("quantization") is not None:
        from llmkit.nn.quantized import quantized_structure

        quantized_structure(model, config["quantization"], str(path / CONFIG_FILE))
    model = with_adapter(model, config, path)
    load_weights(model, state, str(weights))
    if isinstance(dtype, str) and dtype in ("int8", "int4"):
        from llmkit.nn.quantized import convert

        return convert(model, dtype, device).eval()
    torch_dtype = as_dtype(dtype) if dtype is not None else None
    if device is not None or torch_dtype is not None:
        model = model.to(device=device, dtype=torch_dtype)
    return model.eval()


def _quantization(model: nn.Module) -> dict[str, Any] | None:
    """The quantisation a model's weights are held in (llmkit.nn.quantized), or None."""
    value = getattr(model, "quantization", None)
    return dict(value) if isinstance(value, dict) else None


def load_generation_config(directory: str | Path) -> dict[str, Any]:
    """The generation defaults stored with a checkpoint (eos/bos ids, chat template), maybe {}."""
    config = read_config(directory)
    value = config.get("generation") or {}
    if not isinstance(value, dict):
        raise UsageError(f"{Path(directory) / CONFIG_FILE}: field 'generation' must be an object")
    return value
