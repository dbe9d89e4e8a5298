"""Resumable training checkpoints: the model checkpoint plus optimizer, schedule, RNG and data state.

A checkpoint directory `step-NNNNNNN` holds the model as `llmkit.save_model` writes it
(config.json, model.safetensors, tokenizer) and beside it `trainer_state.json` (step, schedule,
data position, optimizer hyper-parameters), `optimizer.safetensors` (optimizer tensors and RNG
states) and, written last, `manifest.json` (the step and every file's size and SHA-256), the only
proof that it is complete. It is staged in a hidden directory and renamed into place; an earlier
checkpoint of the same step is first renamed aside (`.step-NNNNNNN.old.PID`), so a kill between
the two renames leaves the old one whole, and `find_resumable` takes it from there. `latest` is a
hint for people; a resume uses the newest checkpoint that verifies and names each one it skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmkit.atomic import write_text
from llmkit.errors import UsageError
from llmkit.storage.manifest import DamagedError, verify_files, write_manifest
from llmkit.storage.publish import staged_dir
from llmkit.storage.sharded import INDEX_FILE, verify_index

STATE_FILE = "trainer_state.json"
TENSORS_FILE = "optimizer.safetensors"
LATEST_FILE = "latest"
STEP_DIR = re.compile(r"step-(\d+)")
ASIDE_DIR = re.compile(r"\.(step-\d+)\.old\.\d+")


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


def step_dir_name(step: int) -> str:
    """The directory name of the checkpoint of `step`."""
    return f"step-{step:07d}"


def recover_asides(checkpoints: Path) -> None:
    """Rename back each `.step-N.old.PID` a kill left between a replace's two renames, when no
    `step-N` took its place (the old copy is then the only one of that step)."""
    for entry in sorted(checkpoints.glob(".step-*.old.*")):
        match = ASIDE_DIR.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            target = checkpoints / match.group(1)
            if not target.exists():
                os.rename(entry, target)


def remove_unfinished(checkpoints: Path) -> None:
    """Delete the hidden `.step-*` directories a killed save left behind (each a checkpoint's size).

    Only the process that writes checkpoints calls this, just before it writes the next one.
    """
    for entry in checkpoints.glob(".*step-*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def tidy(checkpoints: Path) -> None:
    """Put an aside copy back in place, then delete what killed saves and prunes left behind."""
    if checkpoints.is_dir():
        recover_asides(checkpoints)
        remove_unfinished(checkpoints)


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    step: int,
    data_state: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
    write_weights: Callable[[Path], dict[str, Any]] | None = None,
) -> Path:
    """Write a resumable checkpoint at `directory` atomically and point `latest` beside it at it.

    Every file goes into a staged directory, the manifest last, which then replaces `directory`.
    `write_weights(staged)`, when given, writes the model and optimizer there instead (the DCP
    shards of `llmkit.train.fsdp`, with `sharded.json`) and returns the optimizer's JSON part.
    """
    from safetensors.torch import save_file

    from llmkit.storage.checkpoint import write_model_files

    directory.parent.mkdir(parents=True, exist_ok=True)
    tidy(directory.parent)
    with staged_dir(directory, _is_step_dir, "a training checkpoint") as tmp:
        if write_weights is None:
            write_model_files(model, tmp, tokenizer=tokenizer, trainable_only=True)
            tensors, optimizer_rest = _split_optimizer(optimizer.state_dict())
        else:
            tensors, optimizer_rest = {}, write_weights(tmp)
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
        write_manifest(tmp, step)
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


def latest_hint(checkpoints: Path, log: Callable[[str], None] | None = None) -> Path | None:
    """The step directory `checkpoints/latest` names, if it names one beside it.

    Anything else (`../../x`, an absolute path, a name that is not `step-N`) is ignored, with a
    warning to `log`.
    """
    pointer = checkpoints / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = "<unreadable>"
    if not STEP_DIR.fullmatch(name):
        if log is not None:
            log(
                f"warning: {pointer}: {name[:80]!r} is not a step directory beside it "
                "(step-NNNNNNN); ignored"
            )
        return None
    candidate = checkpoints / name
    return candidate if candidate.is_dir() and not candidate.is_symlink() else None


def checkpoint_step(directory: Path) -> int | None:
    """The step a `step-N` directory (or its aside copy `.step-N.old.PID`) is named for."""
    aside = ASIDE_DIR.fullmatch(directory.name)
    match = STEP_DIR.fullmatch(aside.group(1) if aside else directory.name)
    return int(match.group(1)) if match else None


def _candidates(checkpoints: Path) -> list[Path]:
    """Step directories and aside copies, newest step first (a step directory before its aside)."""
    found = []
    for entry in checkpoints.iterdir() if checkpoints.is_dir() else ():
        step = checkpoint_step(entry)
        if step is not None and entry.is_dir() and not entry.is_symlink():
            found.append((-step, entry.name.startswith("."), entry.name, entry))
    return [entry for *_, entry in sorted(found)]


def verify_checkpoint(directory: Path, max_steps: int | None = None) -> dict[str, Any]:
    """Check a training checkpoint completely: its manifest and every file's hash, and that the
    step agrees between the directory name, the manifest and trainer_state.json (and lies in
    [0, max_steps] when given); returns the state. A DamagedError names what is wrong."""
    manifest = verify_files(directory, hint="it is skipped")
    named = checkpoint_step(directory)
    sharded = INDEX_FILE in manifest["files"]  # an FSDP run's: DCP shards, not model.safetensors
    weights = INDEX_FILE if sharded else "model.safetensors"
    for name in (STATE_FILE, TENSORS_FILE, "config.json", weights):
        if name not in manifest["files"]:
            raise DamagedError(f"{directory / name}: missing; the checkpoint is incomplete")
    if sharded:
        verify_index(directory)
    state_path = directory / STATE_FILE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedError(f"{state_path}: not valid JSON ({exc})") from None
    step = state.get("step") if isinstance(state, dict) else None
    if type(step) is not int or step < 0:
        raise DamagedError(f"{state_path}: step {step!r} is not a step count")
    if step != manifest.get("step") or (named is not None and step != named):
        raise DamagedError(
            f"{state_path}: step {step} disagrees with {directory.name} "
            f"(manifest.json records {manifest.get('step')!r})"
        )
    if max_steps is not None and step > max_steps:
        raise DamagedError(f"{state_path}: step {step} is past max_steps={max_steps}")
    optimizer = state.get("optimizer")
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        raise DamagedError(f"{state_path}: field 'optimizer' is not an optimizer's state")
    for key, kind in (("history", list), ("settings", dict), ("data", dict), ("result", dict)):
        if state.get(key) is not None and not isinstance(state[key], kind):
            raise DamagedError(f"{state_path}: field {key!r} must be a {kind.__name__}")
    return dict(state)


def find_resumable(
    checkpoints: Path, log: Callable[[str], None] = print, max_steps: int | None = None
) -> Path | None:
    """The newest checkpoint under `checkpoints` that verifies completely (an aside copy counts);
    each newer one that does not is named in one log line and skipped."""
    latest_hint(checkpoints, log)  # only to warn about a pointer that leads out of the run
    for candidate in _candidates(checkpoints):
        try:
            verify_checkpoint(candidate, max_steps)
        except UsageError as exc:
            log(f"resume: skipping {candidate.name}: {exc}")
            continue
        return candidate
    return None


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint (`find_resumable` without logging)."""
    return find_resumable(checkpoints, log=lambda line: None)


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
    saved_adapter = _plain(saved.get("adapter"))
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
    from llmkit.adapters.base import adapter_spec

    adapter = _plain(adapter_spec(model))
    if saved_adapter != adapter:
        changes.append(f"adapter {saved_adapter!r} -> {adapter!r}")
    return changes


def load_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    verify: bool = True,
) -> dict[str, Any]:
    """Restore model weights, optimizer, schedule and RNG from `directory`; returns its state.

    With `verify`, the whole checkpoint is checked first (`verify_checkpoint`); a caller that has
    just verified it (`find_resumable`) passes False.
    """
    from safetensors.torch import load_file

    from llmkit.storage.checkpoint import WEIGHTS_FILE, load_weights, read_weights, untrained_names

    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise UsageError(f"{directory}: not a training checkpoint (no {STATE_FILE})")
    if verify:
        verify_checkpoint(directory)
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{state_path}: not valid JSON ({exc})") from None
    weights = directory / WEIGHTS_FILE
    kept = untrained_names(directory, model)  # an adapter run's frozen base stays as built
    load_weights(model, read_weights(weights), str(weights), kept)
    tensors = load_file(str(directory / TENSORS_FILE))
    optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return dict(state)


def prune_checkpoints(checkpoints: Path, keep: int, current: Path | None = None) -> None:
    """Delete all but the newest `keep` step directories (never `current`, the one just saved).

    Each is first renamed to a hidden `.step-N.deleting` name, so a kill while deleting leaves no
    half-deleted step directory in sight.
    """
    steps = sorted(
        p for p in checkpoints.glob("step-*") if p.is_dir() and STEP_DIR.fullmatch(p.name)
    )
    for old in steps[: max(0, len(steps) - keep)]:
        if current is not None and old.absolute() == current.absolute():
            continue
        doomed = old.with_name(f".{old.name}.deleting")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
