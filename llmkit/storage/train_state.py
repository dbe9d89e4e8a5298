"""Resumable training checkpoints: the model checkpoint plus optimizer, schedule, RNG and data state.

A checkpoint directory holds the model as `llmkit.save_model` writes it (config.json,
model.safetensors, tokenizer) and beside it `trainer_state.json` (step, schedule, data position,
optimizer hyper-parameters) and `optimizer.safetensors` (optimizer tensors and RNG states). It is
staged in a hidden directory and renamed into place, so a directory that exists is complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmkit.atomic import write_text
from llmkit.errors import UsageError
from llmkit.storage.publish import staged_dir

STATE_FILE = "trainer_state.json"
TENSORS_FILE = "optimizer.safetensors"
LATEST_FILE = "latest"


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors by flat key, the JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        plain[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[str(index)][name] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def remove_unfinished(checkpoints: Path) -> None:
    """Delete the hidden `.step-*` directories a killed save left behind (each a checkpoint's size).

    Only the process that writes checkpoints calls this, just before it writes the next one.
    """
    for entry in checkpoints.glob(".*step-*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    step: int,
    data_state: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
) -> Path:
    """Write a resumable checkpoint at `directory` atomically and point `latest` beside it at it."""
    from safetensors.torch import save_file

    from llmkit.storage.checkpoint import save_model

    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_unfinished(directory.parent)
    with staged_dir(directory, _is_step_dir, "a training checkpoint") as tmp:
        save_model(model, tmp, tokenizer=tokenizer)
        tensors, optimizer_rest = _split_optimizer(optimizer.state_dict())
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, rng in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = rng
        save_file(tensors, str(tmp / TENSORS_FILE))
        state = {
            "step": step,
            "optimizer": optimizer_rest,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "data": data_state,
            **(extra or {}),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, default=_jsonable) + "\n")
    write_text(directory.parent / LATEST_FILE, directory.name + "\n")
    return directory


def _is_step_dir(directory: Path) -> bool:
    """Step directories are the trainer's own: an earlier save of the same step is replaced."""
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in {STATE_FILE}")


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The directory named by `checkpoints/latest`, if there is a complete one."""
    pointer = checkpoints / LATEST_FILE
    if not pointer.is_file():
        return None
    candidate = checkpoints / pointer.read_text().strip()
    return candidate if (candidate / STATE_FILE).is_file() else None


RESUMABLE_FIELDS = frozenset({"dropout", "gradient_checkpointing"})
"""Model-config fields a resumed run may change: they change how weights train, not what they mean."""

SAME_ATTENTION = frozenset({"mha", "sdpa"})
"""Attention variants that compute the same function from the same weights (only the kernel differs)."""


def _plain(value: Any) -> Any:
    """`value` as JSON would give it back (tuples become lists), so saved and live configs compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_changes(directory: Path, model: nn.Module) -> list[str]:
    """`field old -> new` for each model-config field that differs between `directory` and `model`.

    Fields in RESUMABLE_FIELDS and a switch between SAME_ATTENTION variants are not changes; a
    checkpoint without a readable config.json gives no changes (loading it reports the problem).
    """
    from llmkit.storage.checkpoint import model_config

    current = _plain(model_config(model))
    try:
        saved = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(saved, dict):
        return []
    if saved.get("model") != current.get("model"):
        return [f"model {saved.get('model')!r} -> {current.get('model')!r}"]
    from_dict = getattr(type(getattr(model, "config", None)), "from_dict", None)
    if from_dict is not None:  # fill fields an older checkpoint lacks with their defaults
        with contextlib.suppress(UsageError, TypeError, ValueError):
            saved = _plain(from_dict({k: v for k, v in saved.items() if k in current}).to_dict())
    changes = []
    for key, new in current.items():
        old = saved.get(key, "<unset>")
        if old == new or key in RESUMABLE_FIELDS:
            continue
        if key == "attention" and {str(old), str(new)} <= SAME_ATTENTION:
            continue
        changes.append(f"{key} {old!r} -> {new!r}")
    return changes


def load_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
) -> dict[str, Any]:
    """Restore model weights, optimizer, schedule and RNG from `directory`; returns its state."""
    from safetensors.torch import load_file

    from llmkit.storage.checkpoint import WEIGHTS_FILE, load_weights, read_weights

    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise UsageError(f"{directory}: not a training checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{state_path}: not valid JSON ({exc})") from None
    weights = directory / WEIGHTS_FILE
    load_weights(model, read_weights(weights), str(weights))
    tensors = load_file(str(directory / TENSORS_FILE))
    optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return dict(state)


def prune_checkpoints(checkpoints: Path, keep: int) -> None:
    """Delete all but the newest `keep` step directories (never the one `latest` names)."""
    latest = latest_checkpoint(checkpoints)
    steps = sorted(p for p in checkpoints.glob("step-*") if p.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if latest is None or old.resolve() != latest.resolve():
            shutil.rmtree(old, ignore_errors=True)
