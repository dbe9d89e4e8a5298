"""llmkit checkpoints: a directory with config.json, model.safetensors and maybe tokenizer.json.

`save_model` writes into a temporary sibling directory and renames it into place, so a checkpoint is
either complete or absent. Tied weights (one tensor under several names) are stored once and tied
again on load by the model's own constructor.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.devices import as_dtype
from llmkit.errors import UsageError
from llmkit.storage.publish import default_permissions, holds_only, publish_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

    from llmkit.tokenizers.base import Tokenizer

FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def _version() -> str:
    import llmkit

    return str(llmkit.__version__)


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
) -> Path:
    """Write `model` (and `tokenizer`) as an llmkit checkpoint directory, atomically; returns it.

    `generation` holds what generation needs beyond the model config (eos/bos ids, chat template);
    without an eos id, the tokenizer's conventional end-of-text token is recorded.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    config = model_config(model)
    state, tied = _unique_state_dict(model)
    config["llmkit_version"] = _version()
    config["format"] = FORMAT
    if tied:
        config["tied_weights"] = tied
    if tokenizer is not None and not (generation and "eos_token_id" in generation):
        from llmkit.tokenizers.base import find_eos

        eos = find_eos(tokenizer)  # so that generation stops at the end of a text by default
        if eos is not None:
            generation = {**(generation or {}), "eos_token_id": eos}
    if generation:
        config["generation"] = dict(generation)
    where = target.absolute()
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    try:
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
            cls = type(tokenizer)
            config["tokenizer"] = {
                "class": f"{cls.__module__}:{cls.__qualname__}",
                "file": TOKENIZER_FILE,
            }
        save_file(
            {k: v.cpu() for k, v in state.items()},
            str(tmp / WEIGHTS_FILE),
            metadata={"format": "pt", "llmkit_format": str(FORMAT)},
        )
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        default_permissions(tmp)
        publish_dir(tmp, target, is_checkpoint, "an llmkit checkpoint")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


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
        and holds_only(directory, (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE))
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


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build an untrained model from an llmkit config dict (architecture from its 'model' field)."""
    from llmkit.models import build_model as _build

    model_config = {
        k: v
        for k, v in config.items()
        if k not in ("llmkit_version", "format", "tied_weights", "tokenizer", "generation")
    }
    return _build(model_config)


@contextlib.contextmanager
def no_weight_init() -> Iterator[None]:
    """Make torch.nn.init's fill functions no-ops while a model whose weights get loaded is built.

    Random initialisation is most of the time it takes to build a model only to overwrite every
    weight (6 of 8 s for SmolLM2-135M); `load_state_into` then checks that every tensor is loaded,
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


def shape_mismatches(
    expected: dict[str, torch.Tensor] | dict[str, tuple[int, ...]],
    got: dict[str, torch.Tensor] | dict[str, tuple[int, ...]],
    limit: int = 5,
) -> list[str]:
    """'name: expected (a, b), got (c, d)' for the first `limit` names whose shapes differ."""
    out = []
    for name, exp in expected.items():
        if name not in got:
            continue
        e = tuple(exp.shape) if hasattr(exp, "shape") else tuple(exp)
        g_val = got[name]
        g = tuple(g_val.shape) if hasattr(g_val, "shape") else tuple(g_val)
        if e != g:
            out.append(f"{name}: expected {e}, got {g}")
            if len(out) >= limit:
                break
    return out


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, allowing only tied aliases to be absent; UsageError otherwise."""
    own = model.state_dict()
    bad = shape_mismatches(own, state)
    if bad:
        raise UsageError(f"{source}: shape mismatch with the config: " + "; ".join(bad))
    unexpected = [k for k in state if k not in own]
    aliases = _unique_state_dict(model)[1]
    missing = [k for k in own if k not in state and aliases.get(k) not in state]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:5]))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:5]))
        raise UsageError(f"{source}: weights do not fit the config: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def load_model(
    directory: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> nn.Module:
    """Load an llmkit checkpoint directory as an `nn.Module` in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    config = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise UsageError(f"{weights}: missing; the checkpoint is incomplete")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{weights}: not a readable safetensors file ({exc})") from None
    with no_weight_init():
        try:
            model = build_model(config)
        except UsageError as exc:
            raise UsageError(f"{path / CONFIG_FILE}: {exc}") from None
    load_state_into(model, state, str(weights))
    torch_dtype = as_dtype(dtype) if dtype is not None else None
    if device is not None or torch_dtype is not None:
        model = model.to(device=device, dtype=torch_dtype)
    return model.eval()


def load_generation_config(directory: str | Path) -> dict[str, Any]:
    """The generation defaults stored with a checkpoint (eos/bos ids, chat template), maybe {}."""
    config = read_config(directory)
    value = config.get("generation") or {}
    if not isinstance(value, dict):
        raise UsageError(f"{Path(directory) / CONFIG_FILE}: field 'generation' must be an object")
    return value


def _allowed_tokenizer_class(target: str) -> bool:
    """Only llmkit's own classes and registered tokenizers may be named in a checkpoint."""
    if target.startswith("llmkit."):
        return True
    import llmkit

    return any(c.target == target for c in llmkit.components("tokenizer"))


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer stored with a checkpoint; UsageError if it carries none."""
    path = Path(directory)
    config = read_config(path)
    info = config.get("tokenizer")
    if not info:
        raise UsageError(f"{path}: the checkpoint carries no tokenizer")
    if not isinstance(info, dict) or not isinstance(info.get("class"), str):
        raise UsageError(f"{path / CONFIG_FILE}: field 'tokenizer' must be {{'class', 'file'}}")
    target: str = info["class"]
    file = path / str(info.get("file", TOKENIZER_FILE))
    if not file.is_file():
        raise UsageError(f"{file}: missing; the checkpoint's tokenizer is incomplete")
    if ":" not in target or not _allowed_tokenizer_class(target):
        raise UsageError(f"{path / CONFIG_FILE}: tokenizer class {target!r} is not allowed")
    module_name, _, attr = target.partition(":")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"{path / CONFIG_FILE}: cannot import tokenizer {target!r}: {exc}"
        ) from None
    return cls.load(file)
