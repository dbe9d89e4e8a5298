"""The `fsdp` strategy: FSDP2 (`fully_shard`) per transformer block, and sharded checkpoints.

Under `train.distributed.strategy: fsdp` every rank holds 1/N of the parameters, gradients and
optimizer state. Step checkpoints are written with torch.distributed.checkpoint (DCP): each rank
writes its own shard into the step directory that `storage.train_state.save_checkpoint` stages on
rank 0 (so the directory appears complete or not at all), and a checkpoint resumes on any number
of ranks, one process included (DCP reshards on load). The final `model/` is one safetensors file,
gathered on rank 0. DDP stays the default (`llmkit.train.distributed.wrap`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from llmkit.errors import UsageError
from llmkit.storage import sharded
from llmkit.storage.sharded import SHARDED_DIR
from llmkit.train.distributed import Dist

Strategy = Literal["ddp", "fsdp"]


@dataclass(frozen=True)
class DistributedSettings:
    """How several ranks share the work: the keys of a pipeline's `train.distributed` section."""

    strategy: Strategy = "ddp"
    mixed_precision: Literal["none", "bf16"] = "none"  # bf16: bf16 parameters, fp32 reduction
    cpu_offload: bool = False  # sharded parameters, gradients and optimizer state live on the CPU


def is_sharded(model: nn.Module) -> bool:
    """Whether `fully_shard` has been applied to `model` (its parameters are DTensor shards)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks: every element of every `nn.ModuleList` (a model's layer stacks)."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(child for child in module if any(True for _ in child.parameters()))
    return blocks


def _trainable_apart(model: nn.Module) -> set[nn.Parameter]:
    """The trainable weights of a model that mixes frozen and trainable ones (an adapter on a
    frozen base), which FSDP leaves out; none when every weight trains."""
    params = list(model.parameters())
    if {p.requires_grad for p in params} != {True, False}:
        return set()
    return {p for p in params if p.requires_grad}


def _average_gradients(params: set[nn.Parameter], world_size: int) -> None:
    """Average the gradients of `params`, replicated on every rank, over the ranks after each
    backward (DDP's mean, the one FSDP's reduce-scatter takes). After a second micro-batch a
    gradient holds the first's mean, equal on every rank, so the sum over ranks / N keeps it."""
    import torch.distributed

    def average(param: torch.Tensor) -> None:
        assert param.grad is not None
        torch.distributed.all_reduce(param.grad)
        param.grad.div_(world_size)

    for param in params:
        param.register_post_accumulate_grad_hook(average)


def shard(model: nn.Module, dist: Dist, settings: DistributedSettings) -> nn.Module:
    """Apply FSDP2 to `model` in place: each block, then the root (embeddings, final norm, head).

    A no-op for the `ddp` strategy and on a single rank (where `fsdp` still checkpoints through
    DCP). Build the optimizer after this: sharding replaces the parameters.
    """
    if settings.strategy != "fsdp" or dist.world_size == 1:
        return model
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    options: dict[str, Any] = {}
    if settings.mixed_precision == "bf16":
        options["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    if settings.cpu_offload:  # pinned host memory needs CUDA
        options["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    # Frozen and trainable weights apart: FSDP shards the frozen base; the trainable adapter
    # (small) stays whole on every rank and its gradients are averaged as DDP's are.
    apart = _trainable_apart(model)
    if apart:
        options["ignored_params"] = apart
    blocks = _blocks(model)
    for block in blocks:
        # The last block's parameters are needed at once by backward: no reshard after forward.
        fully_shard(block, reshard_after_forward=block is not blocks[-1], **options)
    fully_shard(model, **options)
    if not any(p.is_meta for p in apart):  # `build` hooks the materialised ones after to_empty
        _average_gradients(apart, dist.world_size)
    return model


def _share_path(dist: Dist, path: Path | None) -> Path:
    """Rank 0's `path` on every rank (the staged directory the ranks write their shards into)."""
    if dist.world_size == 1:
        assert path is not None
        return path
    import torch.distributed

    box: list[Any] = [str(path) if path is not None else None]
    torch.distributed.broadcast_object_list(box, src=0)
    if box[0] is None:
        raise UsageError(
            f"rank {dist.rank}: rank 0 could not stage the checkpoint; its error says why"
        )
    return Path(box[0])


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def save(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    step: int,
    data_state: dict[str, Any] | None,
    dist: Dist,
    extra: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
) -> Path:
    """Write a sharded step checkpoint at `directory`; every rank calls this at the same step.

    Rank 0 stages the directory through `save_checkpoint` (trainer state, RNG, config, tokenizer)
    and shares its path; every rank writes its shard of the model and optimizer there with DCP,
    whose last act, on rank 0, is the `.metadata` that joins the shards. Only then does rank 0
    publish the directory in one rename, so a save killed at any instant never looks complete.
    """
    import torch.distributed.checkpoint as dcp

    from llmkit.storage import train_state

    state = _state(model, optimizer)
    if not dist.is_main:
        dcp.save(state, checkpoint_id=_share_path(dist, None) / SHARDED_DIR)
        return directory

    shared = False

    def write_weights(tmp: Path) -> dict[str, Any]:
        nonlocal shared
        from llmkit.storage.checkpoint import (
            CONFIG_FILE,
            TOKENIZER_FILE,
            adapter_fields,
            model_config,
        )

        # The adapter's spec too (the shards hold every weight, the frozen base included).
        config = {**model_config(model), **adapter_fields(model, trainable_only=False)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        shared = True
        dcp.save(state, checkpoint_id=_share_path(dist, tmp) / SHARDED_DIR)
        sharded.write_index(tmp)  # DCP's save returns once every rank's shard is on disk
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        return {"state": {}, "param_groups": groups}  # the tensors are in the shards

    try:
        return train_state.save_checkpoint(
            directory,
            model,
            optimizer,
            scheduler,
            step,
            data_state,
            extra=extra,
            tokenizer=tokenizer,
            write_weights=write_weights,
        )
    except BaseException:
        if not shared and dist.world_size > 1:  # the other ranks wait for the path: release them
            with contextlib.suppress(Exception):
                _share_path(dist, None)
        raise


def load(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
) -> dict[str, Any]:
    """Restore a sharded checkpoint into `model` and `optimizer` on any number of ranks (DCP
    reshards the saved shards to this run's); the schedule and rank 0's RNG too. Every rank calls
    this; returns the trainer state."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_state_dict

    from llmkit.storage.train_state import STATE_FILE, TENSORS_FILE

    state_path = directory / STATE_FILE
    try:
        saved = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{state_path}: not a readable training state ({exc})") from None
    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=directory / SHARDED_DIR)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    tensors = load_file(str(directory / TENSORS_FILE))
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return dict(saved)


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0's CPU (empty on the other ranks); every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights: dict[str, torch.Tensor] = dict(get_model_state_dict(model, options=options))  # type: ignore[arg-type]
    return weights


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[nn.Module]:
    """A plain (unsharded) copy of a sharded `model` on rank 0's CPU, for `save_model`; `model`
    itself elsewhere and when it is not sharded. Every rank enters it (the gather is collective)."""
    if not is_sharded(model):
        yield model
        return
    from llmkit.storage.checkpoint import load_weights, model_config

    weights = full_weights(model)
    if not weights:  # not rank 0
        yield model
        return
    plain = _structure(model_config(model), _adapter_spec(model), torch.device("cpu"))
    load_weights(plain, weights, "the gathered FSDP weights")
    del weights
    yield plain.train(model.training)


def _structure(
    config: dict[str, Any], adapter: dict[str, Any] | None, device: torch.device
) -> nn.Module:
    """A model of `config` (a checkpoint's config.json) with `adapter` on it, built on `device`
    without drawing initial values (they are loaded next)."""
    from llmkit.models import build_model
    from llmkit.storage.checkpoint import model_fields, no_weight_init

    with no_weight_init(), device:
        model = build_model(model_fields(config))
        if adapter is not None:  # the same adapter, so that every weight has a place
            from llmkit.adapters import apply_adapter

            model = apply_adapter(model, adapter)
    result: nn.Module = model
    return result


def build(make: Callable[[], nn.Module], dist: Dist, settings: DistributedSettings) -> nn.Module:
    """The model to train, on this rank's device: `make()`, or under `fsdp` on several ranks its
    FSDP2 shards, so that each rank allocates only its 1/N of the weights.

    Rank 0 alone runs `make()` (a fresh initialisation or a loaded `init_from`, so the values are
    those of a run without FSDP); every rank builds the same structure on the meta device, applies
    `shard`, allocates its shards with `to_empty` and receives their values from rank 0
    (`set_model_state_dict` with `broadcast_from_rank0`), buffers and RNG state too. No other rank
    ever holds the whole model, and rank 0 holds it only until it is sent.
    """
    if settings.strategy != "fsdp" or dist.world_size == 1:
        return make().to(dist.device)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from llmkit.storage.checkpoint import model_config
    from llmkit.train import distributed

    made: list[nn.Module] = []

    def describe() -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
        made.append(make())
        return model_config(made[0]), _adapter_spec(made[0]), made[0].training

    config, adapter, training = distributed.on_main(dist, describe, "building the model")
    model = shard(_structure(config, adapter, torch.device("meta")), dist, settings)
    model.to_empty(device=torch.device("cpu") if settings.cpu_offload else dist.device)
    apart = _trainable_apart(model)
    for param in apart:  # left out by FSDP, so on the compute device even under cpu_offload
        param.data = param.data.to(dist.device)
    _average_gradients(apart, dist.world_size)  # new tensors, new hooks
    full = made[0].state_dict() if made else {}
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full, options=options)
    del full
    extras = (
        {name: b.detach().cpu() for name, b in made[0].named_buffers()} if made else {},
        torch.get_rng_state(),
    )
    made.clear()
    buffers, rng = distributed.from_main(dist, extras)
    with torch.no_grad():  # non-persistent buffers (rotary tables) are not in the state dict
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)
    torch.set_rng_state(rng)  # as if this rank had drawn rank 0's initial values itself
    return model.train(training)


def _adapter_spec(model: nn.Module) -> dict[str, Any] | None:
    """The adapter `train.adapter` put on `model`, if any (None without the adapters room)."""
    try:
        from llmkit.adapters import adapter_spec
    except ImportError:
        return None
    spec: dict[str, Any] | None = adapter_spec(model)
    return spec
