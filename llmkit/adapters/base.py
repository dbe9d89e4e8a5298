"""Adapters: small trainable modules put into a frozen model (kind `adapter`, e.g. `lora`).

An adapter component is built from its parameters (`llmkit.create("adapter", "lora", r=8)`) and
`apply`-ed to a model: it freezes every weight, adds its own trainable ones at the projections it
targets, and records itself on the model (`adapter_of`), so that saving, loading, merging and
export know it is there. Targets are the short names a model declares (`adapter_targets()`:
q, k, v, o, gate, up, down, fc1, fc2 -> module paths and output rows); a model that declares
none is read from its structure (attention `qkv`/`q`/`kv`/`out`, MLP `gate`/`up`/`down`).

    model = llmkit.apply_adapter(model, {"name": "lora", "r": 8, "targets": ["q", "v"]})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.errors import LlmkitError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Site: (module path, first output row, end output row) of one projection an adapter may target.
Site = tuple[str, int, int]
ATTRIBUTE = "llmkit_adapter"  # where an applied adapter is recorded on its model


@dataclass(frozen=True)
class LowRankUpdate:
    """One update `scale * b @ a` of output rows [start, stop) of the linear layer at `path`:
    what an adapter hands to exporters that write low-rank layouts (PEFT's LoRA)."""

    path: str
    target: str
    start: int
    stop: int
    a: torch.Tensor  # (r, in)
    b: torch.Tensor  # (stop - start, r)
    scale: float


class Adapter:
    """Base of adapter components: `apply` puts it into a model, `merge` folds it into the base."""

    name: ClassVar[str] = ""

    def spec(self) -> dict[str, Any]:
        """The adapter as `train.adapter` writes it: {"name": ..., parameters...}."""
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        """Freeze `model`, add this adapter's trainable weights, and record it; returns the model."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the adapter into the base weights and remove it; returns the plain model."""
        raise NotImplementedError

    def remove(self, model: nn.Module) -> nn.Module:
        """Take the adapter out, leaving the base weights as they were; returns the plain model."""
        raise NotImplementedError

    def low_rank_updates(self, model: nn.Module) -> list[LowRankUpdate] | None:
        """The adapter as low-rank weight updates (what PEFT's LoRA holds), or None if it is not."""
        return None


def build_adapter(spec: Mapping[str, Any] | Adapter) -> Adapter:
    """The adapter component a spec `{"name": "lora", ...}` names, its parameters checked."""
    import llmkit

    if isinstance(spec, Adapter):
        return spec
    params = dict(spec)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise UsageError("adapter: field 'name' (e.g. lora) is missing")
    try:
        adapter = llmkit.create("adapter", name, **params)
    except LlmkitError as exc:
        first = (str(exc).strip().splitlines() or ["invalid adapter"])[0]
        raise UsageError(
            first if first.startswith("adapter") else f"adapter {name}: {first}"
        ) from None
    if not isinstance(adapter, Adapter):
        raise UsageError(f"adapter '{name}' did not build an llmkit.adapters.Adapter")
    return adapter


def apply_adapter(model: nn.Module, spec: Mapping[str, Any] | Adapter) -> nn.Module:
    """Put the adapter `spec` names into `model` (base frozen, adapter trainable); returns it."""
    if adapter_of(model) is not None:
        raise UsageError("the model already holds an adapter; merge it first (merge_adapter)")
    return build_adapter(spec).apply(model)


def adapter_of(model: nn.Module) -> Adapter | None:
    """The adapter applied to `model`, or None."""
    adapter = getattr(model, ATTRIBUTE, None)
    return adapter if isinstance(adapter, Adapter) else None


def adapter_spec(model: nn.Module) -> dict[str, Any] | None:
    """The spec of the adapter applied to `model` (what a checkpoint records), or None."""
    adapter = adapter_of(model)
    return adapter.spec() if adapter is not None else None


def merge_adapter(model: nn.Module, source: str = "the model") -> nn.Module:
    """Fold the applied adapter into the base weights; a UsageError naming `source` if none."""
    adapter = adapter_of(model)
    if adapter is None:
        raise UsageError(f"{source}: holds no adapter to merge (it was trained without one)")
    merged = adapter.merge(model)
    if hasattr(merged, ATTRIBUTE):
        delattr(merged, ATTRIBUTE)
    return merged


def remove_adapter(model: nn.Module, source: str = "the model") -> nn.Module:
    """The base model without its adapter (weights untouched): what a PEFT adapter is put on."""
    adapter = adapter_of(model)
    if adapter is None:
        raise UsageError(f"{source}: holds no adapter to remove (it was trained without one)")
    base = adapter.remove(model)
    if hasattr(base, ATTRIBUTE):
        delattr(base, ATTRIBUTE)
    return base


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that train (the adapter's and any task head's)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def frozen_names(model: nn.Module) -> tuple[str, ...]:
    """State-dict names of everything that does not train (a step checkpoint leaves them out)."""
    trainable = set(trainable_names(model))
    return tuple(name for name in model.state_dict() if name not in trainable)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by state-dict name: what a step checkpoint of an adapter run holds."""
    wanted = set(trainable_names(model))
    return {k: v for k, v in model.state_dict().items() if k in wanted}


def declared_targets(model: nn.Module) -> dict[str, list[Site]]:
    """Short target name -> sites, as the model declares them (`adapter_targets()`), else read
    from its structure: attention `qkv` (rows q, k, v), `q`, `kv`, `out`; MLP `gate`, `up`,
    `down` (fc1, fc2)."""
    declared = getattr(model, "adapter_targets", None)
    if callable(declared):
        return dict(declared())
    from torch import nn

    out: dict[str, list[Site]] = {}

    def add(name: str, path: str, start: int, stop: int) -> None:
        out.setdefault(name, []).append((path, start, stop))

    for path, module in model.named_modules():
        linear = {n: m for n, m in module.named_children() if isinstance(m, nn.Linear)}
        width = getattr(module, "n_heads", None) and getattr(module, "d_model", None)
        if "qkv" in linear and isinstance(width, int):
            qkv = linear["qkv"]
            kv = (qkv.out_features - width) // 2
            add("q", f"{path}.qkv", 0, width)
            add("k", f"{path}.qkv", width, width + kv)
            add("v", f"{path}.qkv", width + kv, width + 2 * kv)
        elif "q" in linear and "kv" in linear:
            half = linear["kv"].out_features // 2
            add("q", f"{path}.q", 0, linear["q"].out_features)
            add("k", f"{path}.kv", 0, half)
            add("v", f"{path}.kv", half, 2 * half)
        if "out" in linear and isinstance(width, int):
            add("o", f"{path}.out", 0, linear["out"].out_features)
        if "up" in linear and "down" in linear:
            for name, aliases in (("gate", ()), ("up", ("fc1",)), ("down", ("fc2",))):
                if name in linear:
                    for key in (name, *aliases):
                        add(key, f"{path}.{name}", 0, linear[name].out_features)
    return out


def resolve_targets(model: nn.Module, targets: list[str], adapter: str) -> dict[str, list[Site]]:
    """The sites of each named target; an unknown name lists the model's valid ones."""
    available = declared_targets(model)
    if not targets:
        raise UsageError(f"adapter {adapter}: targets is empty; name some of {_names(available)}")
    unknown = [t for t in targets if t not in available]
    if unknown:
        kind = type(model).__name__
        raise UsageError(
            f"adapter {adapter}: targets: {', '.join(repr(t) for t in unknown)} not among this "
            f"{kind}'s projections; valid: {_names(available)}"
        )
    return {t: available[t] for t in dict.fromkeys(targets)}


def _names(available: Mapping[str, list[Site]]) -> str:
    return ", ".join(available) or "none (the model declares no projections)"


def task_heads(model: nn.Module) -> tuple[str, ...]:
    """Module paths a task added on top of the model (a classification head): they keep training."""
    heads = getattr(model, "task_heads", None)
    return tuple(heads()) if callable(heads) else ()
