"""PEFT's LoRA layout: an llmkit adapter as adapter_config.json + adapter_model.safetensors.

The module names are those of the Hugging Face model `save_hf` writes for the base. Where each
adapted llmkit weight's rows land there is found by running the model's own `state_dict_to_hf` on
probe weights (every element holds its index), so a fused qkv split into q_proj/k_proj/v_proj,
GPT-2's transposed Conv1D or a row permutation is followed without a table of names here. Targets
that share one Hugging Face module (q, k and v of GPT-2's `c_attn`) become one update of rank
n * r (A stacked, B block-diagonal) whose alpha is scaled alike, so PEFT's alpha / r is llmkit's.

    from llmkit.storage.peft import export_peft
    export_peft("runs/lora/model", "runs/lora/peft", base_dir="runs/lora/base")
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError
from llmkit.storage.publish import holds_only, staged_dir

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.adapters.base import LowRankUpdate

#: What `save_peft` writes: a directory holding only these is one of its earlier exports.
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Probe elements per call of `state_dict_to_hf` (int64: 128 MiB at most).
PROBE_BUDGET = 1 << 24


@dataclass(frozen=True)
class Placement:
    """Where an llmkit weight's rows land: the HF module, the llmkit row each of its output rows
    holds, and whether HF stores the weight (in, out) as GPT-2's Conv1D does."""

    module: str
    rows: Tensor
    transposed: bool


class _Probe:
    """The model as `state_dict_to_hf` reads it (`config`, `state_dict()`), with probe weights."""

    def __init__(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        self._model, self._state = model, state
        self.config = model.config

    def state_dict(self) -> dict[str, Tensor]:
        return self._state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def placements(
    model: nn.Module, conversions: Any, paths: list[str]
) -> tuple[dict[str, list[Placement]], list[str]]:
    """(llmkit linear layer path -> the HF modules its weight's rows are written to, the names of
    every HF module holding a weight)."""
    import torch

    state = model.state_dict()
    out: dict[str, list[Placement]] = {path: [] for path in paths}
    modules: set[str] = set()
    for batch in _batches(state, paths):
        probe = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in state.items()}
        starts: list[int] = []
        at = 0
        for path in batch:
            weight = state[f"{path}.weight"]
            probe[f"{path}.weight"] = torch.arange(at, at + weight.numel()).view(weight.shape)
            starts.append(at)
            at += weight.numel()
        try:
            hf = conversions.state_dict_to_hf(_Probe(model, probe))
        except (RuntimeError, NotImplementedError) as exc:
            raise UsageError(
                f"{type(model).__name__}: its Hugging Face conversion cannot be traced for a PEFT "
                f"export ({exc}); export the merged model with `llmkit export hf --merge`"
            ) from None
        modules.update(k.removesuffix(".weight") for k in hf if k.endswith(".weight"))
        for key, tensor in hf.items():
            if tensor.is_meta or tensor.dtype != torch.int64:
                continue
            i = bisect.bisect_right(starts, int(tensor.reshape(-1)[0])) - 1
            path = batch[i]
            in_features = state[f"{path}.weight"].shape[1]
            out[path].append(_placement(key, tensor - starts[i], in_features))
    return out, sorted(modules)


def _batches(state: dict[str, Tensor], paths: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for path in paths:
        n = state[f"{path}.weight"].numel()
        if batches[-1] and size + n > PROBE_BUDGET:
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += n
    return [b for b in batches if b]


def _placement(key: str, local: Tensor, in_features: int) -> Placement:
    """The rows a probed HF tensor holds, read from its element indices (row * in + column)."""
    import torch

    module = key.removesuffix(".weight")
    if local.dim() == 2 and key.endswith(".weight"):
        columns = torch.arange(in_features)
        rows, cols = local // in_features, local % in_features
        whole = local.shape[1] == in_features and (cols == columns).all()
        if whole and (rows == rows[:, :1]).all():
            return Placement(module, rows[:, 0].clone(), False)
        whole = local.shape[0] == in_features and (cols == columns[:, None]).all()
        if whole and (rows == rows[:1, :]).all():
            return Placement(module, rows[0, :].clone(), True)
    raise UsageError(
        f"{key}: the Hugging Face layout rearranges an adapted weight beyond whole rows; "
        "export the merged model with `llmkit export hf --merge` instead"
    )


def peft_state(
    model: nn.Module, source: str = "the model"
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(adapter_config.json dict without base_model_name_or_path, adapter tensors by PEFT name)."""
    from llmkit.adapters.base import adapter_of, task_heads
    from llmkit.storage.hf import exportable

    adapter = adapter_of(model)
    if adapter is None:
        raise UsageError(_no_adapter(source))
    updates = adapter.low_rank_updates(model)
    if not updates:
        raise UsageError(
            f"{source}: adapter '{adapter.name}' is not a low-rank update PEFT's LoRA can hold; "
            "export the merged model with `llmkit export hf --merge`"
        )
    heads = task_heads(model)
    if heads:
        raise UsageError(
            f"{source}: the model has a task head ({', '.join(heads)}) that a PEFT causal-LM "
            "adapter cannot carry"
        )
    conversions = exportable(model)
    by_path: dict[str, list[LowRankUpdate]] = {}
    for update in updates:
        by_path.setdefault(update.path, []).append(update)
    tensors: dict[str, Tensor] = {}
    ranks: dict[str, tuple[int, float]] = {}
    transposed: set[bool] = set()
    where, modules = placements(model, conversions, list(by_path))
    for path, places in where.items():
        for place in places:
            a, b, scale = _stack(by_path[path], place.rows)
            if a is None:
                continue
            name = f"base_model.model.{place.module}"
            tensors[f"{name}.lora_A.weight"] = a.float().contiguous()
            tensors[f"{name}.lora_B.weight"] = b.float().contiguous()
            ranks[place.module] = (a.shape[0], scale * a.shape[0])
            transposed.add(place.transposed)
    if len(transposed) > 1:
        raise UsageError(
            f"{source}: the adapted modules mix Linear and Conv1D layouts, which one PEFT config "
            "cannot describe; export the merged model with `llmkit export hf --merge`"
        )
    r, alpha = Counter(ranks.values()).most_common(1)[0][0]
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": None,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": float(adapter.spec().get("dropout", 0.0)),
        "target_modules": _target_names(sorted(ranks), modules),
        "rank_pattern": _pattern(ranks, 0, r),
        "alpha_pattern": _pattern(ranks, 1, alpha),
        "fan_in_fan_out": transposed == {True},
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "lora_bias": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
    return config, tensors


def _no_adapter(source: str) -> str:
    return (
        f"{source}: holds no adapter (it was trained without one); export it whole with "
        "`llmkit export hf`"
    )


def _stack(updates: list[LowRankUpdate], rows: Tensor) -> tuple[Tensor | None, Tensor, float]:
    """(A, B, alpha / r) of one HF module: the updates reaching its rows, A stacked and B
    block-diagonal, each update's scale folded into its B relative to the first's."""
    import torch

    reaching = [u for u in updates if ((rows >= u.start) & (rows < u.stop)).any()]
    if not reaching:
        return None, rows, 0.0
    scale = reaching[0].scale
    a = torch.cat([u.a.float() for u in reaching])
    b = torch.zeros(len(rows), a.shape[0])
    at = 0
    for u in reaching:
        hit = (rows >= u.start) & (rows < u.stop)
        r = u.a.shape[0]
        b[hit, at : at + r] = u.b.float()[rows[hit] - u.start] * (u.scale / scale)
        at += r
    return a, b, scale


def _target_names(adapted: list[str], modules: list[str]) -> list[str]:
    """PEFT's target_modules: a short name (q_proj) where it picks only adapted modules of the
    base, else the adapted modules' full names."""
    out: list[str] = []
    for short in sorted({m.rsplit(".", 1)[-1] for m in adapted}):
        named = [m for m in modules if m.rsplit(".", 1)[-1] == short]
        chosen = [m for m in adapted if m.rsplit(".", 1)[-1] == short]
        out += [short] if set(named) == set(chosen) else chosen
    return out


def _pattern(ranks: dict[str, tuple[int, float]], field: int, default: float) -> dict[str, float]:
    """rank_pattern / alpha_pattern: the modules whose value is not the default, by short name
    where every module of that name shares it, else by full name."""
    odd = {m: v[field] for m, v in ranks.items() if v[field] != default}
    out: dict[str, float] = {}
    for name in sorted({m.rsplit(".", 1)[-1] for m in odd}):
        same = [m for m in ranks if m.rsplit(".", 1)[-1] == name]
        values = {ranks[m][field] for m in same}
        if len(values) == 1:
            out[re.escape(name)] = values.pop()
        else:
            out.update({re.escape(m): odd[m] for m in same if m in odd})
    return out


def is_peft_export(directory: Path) -> bool:
    """True if `directory` looks like an earlier `save_peft` output (so replacing it loses nothing)."""
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and "peft_type" in config and holds_only(directory, PEFT_FILES)


def save_peft(
    model: nn.Module,
    path: str | os.PathLike[str],
    base_model_name_or_path: str | None = None,
    source: str = "the model",
) -> dict[str, Any]:
    """Write the model's adapter in PEFT's layout (staged beside `path`, renamed into place);
    returns the adapter_config.json written."""
    config, tensors = peft_state(model, source)
    config["base_model_name_or_path"] = base_model_name_or_path
    _write(Path(path), config, tensors)
    return config


def export_peft(
    ckpt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Write a checkpoint's adapter in PEFT's layout at `out_dir`; with `base_dir`, also the base
    model (without the adapter) in the Hugging Face layout there, which the config then names.

    Both outputs are checked before anything is written; returns the adapter_config.json written.
    """
    from llmkit.adapters.base import remove_adapter
    from llmkit.storage.checkpoint import load_model, read_config
    from llmkit.storage.hf import is_export, save_hf

    ckpt, out = Path(ckpt_dir), Path(out_dir)
    base = Path(base_dir) if base_dir is not None else None
    targets = [(out, is_peft_export, "a PEFT export of llmkit's")]
    if base is not None:
        if base.absolute().resolve() == out.absolute().resolve():
            raise UsageError(f"{base}: the base and the adapter need two directories")
        targets.append((base, is_export, "a Hugging Face export of llmkit's"))
    for target, ours, what in targets:
        if target.absolute().resolve() == ckpt.absolute().resolve():
            raise UsageError(f"{target}: is the checkpoint being exported; choose another output")
        _check_free(target, ours, what)
    if read_config(ckpt).get("adapter") is None:  # before the weights load
        raise UsageError(_no_adapter(str(ckpt)))
    model = load_model(ckpt, verify=verify)
    config, tensors = peft_state(model, str(ckpt))
    if base is None:
        return save_peft(model, out, None, str(ckpt))
    tokenizer = _tokenizer(ckpt, verify)
    plain = remove_adapter(model, str(ckpt))
    save_hf(plain, base, tokenizer=tokenizer)
    config["base_model_name_or_path"] = str(base.absolute())
    _write(out, config, tensors)
    return config


def _write(out: Path, config: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    with staged_dir(out, is_peft_export, "a PEFT export of llmkit's") as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _tokenizer(ckpt: Path, verify: bool) -> Any:
    from llmkit.storage.checkpoint import read_config
    from llmkit.storage.tokenizer_files import load_checkpoint_tokenizer

    if not read_config(ckpt).get("tokenizer"):
        return None
    return load_checkpoint_tokenizer(ckpt, verify=verify)


def _check_free(target: Path, ours: Any, what: str) -> None:
    """Refuse now, before any work, an output `publish_dir` would refuse at the end."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"{target}: exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not ours(target):
        raise UsageError(
            f"{target}: directory is not empty and is not {what}; refusing to replace it "
            "(choose a new output directory)"
        )


__all__ = ["export_peft", "is_peft_export", "peft_state", "placements", "save_peft"]
