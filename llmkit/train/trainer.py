"""The training loop: gradient accumulation, clipping, mixed precision, evaluation, checkpoints.

It is deliberately one readable loop over components built from the registry (model, optimizer,
scheduler, loss, batches); resuming restores the weights, optimizer, schedule, RNG and data position
so that a resumed run continues with exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from llmkit.atomic import write_json
from llmkit.errors import UsageError, WorkError
from llmkit.loggers.base import Logger
from llmkit.loggers.jsonl import JsonlLogger
from llmkit.models.traits import traits_of
from llmkit.progress import progress
from llmkit.storage import sharded
from llmkit.storage import train_state as ckpt
from llmkit.train import fsdp
from llmkit.train.distributed import Dist, sum_across_ranks, wrap
from llmkit.train.objectives import ObjectiveLoss

if TYPE_CHECKING:
    from llmkit.objectives.base import Objective

Batches = Iterator[dict[str, torch.Tensor]]
PER_RANK = "per_rank"  # a checkpoint's data position under torchrun: {"per_rank": [rank 0's, ...]}


@dataclass
class TrainSettings:
    """How long and how to train; every field is a key of a pipeline's `train` section."""

    max_steps: int = 100
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 20
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    strategy: Literal["ddp", "fsdp"] = "ddp"  # train.distributed.strategy: fsdp checkpoints via DCP


@dataclass
class TrainResult:
    """What a finished run reports (also written to the run's `train_result.json`)."""

    steps: int
    train_loss: float  # the last logged window's mean loss per target, over every rank
    eval_loss: float | None
    tokens_per_second: float
    seconds: float
    checkpoint: str
    history: list[dict[str, float]] = field(default_factory=list)


def _tokens_in(batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
    """The batch's real tokens: a tensor, read on the host only at log steps."""
    mask = batch.get("attention_mask")
    return mask.sum() if mask is not None else batch["input_ids"].numel()


class Trainer:
    """Runs `settings.max_steps` optimizer steps of `objective` on `train_batches`.

    Args:
        model: The llmkit model to train (saved with `llmkit.save_model`).
        objective: The objective component (how a batch becomes logits, targets and a count),
            or a registered objective's name.
        optimizer: Built over `model.parameters()`.
        scheduler: A learning-rate schedule stepped once per optimizer step, or None.
        loss: Called as loss(logits, targets).
        train_batches: An iterator of batches with `state_dict`/`load_state_dict` for resuming.
        settings: Steps, accumulation, clipping, precision, logging and checkpoint cadence.
        out_dir: Where `checkpoints/`, `metrics.jsonl` and the final `model/` go.
        dist: This process's place in a torchrun job.
        eval_batches: Makes a fresh iterator of held-out batches for each evaluation.
        tokenizer: Saved with every checkpoint when given.
        log: Receives one line per log step (rank 0 only; off a terminal, see llmkit.progress).
        loggers: Receive every logged scalar (rank 0 only); default: `jsonl` (metrics.jsonl).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective | str,
        optimizer: torch.optim.Optimizer,
        scheduler: Any | None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        train_batches: Batches,
        settings: TrainSettings,
        out_dir: Path,
        dist: Dist,
        eval_batches: Callable[[], Batches] | None = None,
        tokenizer: Any | None = None,
        log: Callable[[str], None] = print,
        loggers: Sequence[Logger] | None = None,
    ) -> None:
        if settings.max_steps < 1 or settings.grad_accum < 1:
            raise UsageError("train: max_steps and grad_accum must be at least 1")
        if settings.precision == "fp16" and dist.device.type != "cuda":
            raise UsageError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.model = model
        if isinstance(objective, str):  # a registered objective's name, with its defaults
            import llmkit

            objective = llmkit.create("objective", objective)
        assert not isinstance(objective, str)
        reason = objective.check_model(traits_of(model))
        if reason is not None:
            raise UsageError(f"train: objective {objective.name} cannot train this model: {reason}")
        self.objective = objective
        self.scored = ObjectiveLoss(model, objective, loss)
        traits = traits_of(model)
        if fsdp.is_sharded(model):  # placed by fully_shard (on the CPU under cpu_offload)
            self.step_fn: nn.Module = self.scored
        else:
            self.scored.to(dist.device)
            self.step_fn = wrap(self.scored, dist, traits.classifier or traits.masked_lm)
        if settings.compile:  # model and loss in one graph: the log-softmax fuses with the head
            self.step_fn = torch.compile(self.step_fn)  # type: ignore[assignment]
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_batches = train_batches
        self.eval_batches = eval_batches
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.dist = dist
        self.tokenizer = tokenizer
        self.log = log if dist.is_main else (lambda line: None)
        if loggers is None:
            loggers = [JsonlLogger(self.out_dir)]
        self.loggers = list(loggers) if dist.is_main else []
        self.grad_norm: torch.Tensor | None = None  # the last norm before clipping, on the device
        self.context = 0  # the sequence length of the last batch trained on
        self.flops_per_token: float | None = None  # training FLOPs per token, for the MFU
        self.step = 0
        self.history: list[dict[str, float]] = []
        #: The TrainResult fields of a finished run, read back from its final checkpoint.
        self.finished: dict[str, Any] | None = None
        use_scaler = settings.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    @property
    def checkpoints(self) -> Path:
        """The directory of resumable step checkpoints."""
        return self.out_dir / "checkpoints"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.settings.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.settings.precision == "bf16" else torch.float16
        return torch.autocast(self.dist.device.type, dtype=dtype)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.dist.device, non_blocking=True) for k, v in batch.items()}

    def resume(self, directory: Path | None = None) -> bool:
        """Restore the newest checkpoint that verifies (or the given one, verified); False when
        there is none to resume. Damaged or incomplete newer ones are named in the log, skipped."""
        verified = directory is None
        directory = directory or ckpt.find_resumable(self.checkpoints, self.log)
        if directory is None:
            return False
        changes = ckpt.config_changes(directory, self.model)
        if changes:
            raise UsageError(
                f"{directory}: was trained with another model config ({'; '.join(changes)}), so "
                "this run cannot resume from it; train into a new output directory, or start over "
                f"in {self.out_dir} with train.resume=false (or by deleting {self.checkpoints})"
            )
        wanted = _hyperparameters(self.optimizer)
        if sharded.is_sharded(directory):  # DCP shards: any number of ranks resumes them
            if not verified:
                ckpt.verify_checkpoint(directory)
            state = fsdp.load(directory, self.model, self.optimizer, self.scheduler)
        elif fsdp.is_sharded(self.model):
            raise UsageError(
                f"{directory}: was written by a ddp run, which a sharded (fsdp) run cannot load; "
                "resume it with train.distributed.strategy=ddp"
            )
        else:
            state = ckpt.load_checkpoint(
                directory, self.model, self.optimizer, self.scheduler, verify=not verified
            )
        self.step = int(state["step"])
        self.finished = state.get("result")
        self._check_resumable(directory, wanted, state.get("settings") or {})
        self.history = list(state.get("history", []))
        data_state = state.get("data")
        if data_state is not None and hasattr(self.train_batches, "load_state_dict"):
            self.train_batches.load_state_dict(self._rank_data_state(data_state, directory))
        self.log(f"resumed from {directory} at step {self.step}")
        return True

    def _check_resumable(
        self, directory: Path, wanted: dict[str, Any], saved_settings: dict[str, Any]
    ) -> None:
        """Refuse a resume that would ignore the file: a checkpoint past `max_steps`, or optimizer
        settings changed since it was written (the checkpoint's optimizer would silently win).
        Changed cadence and length settings (log_every, max_steps, ...) apply, and are said."""
        afresh = f"start afresh with train.resume=false (or another output than {self.out_dir})"
        if self.step > self.settings.max_steps:
            raise UsageError(
                f"{directory}: the run is at step {self.step}, past train.max_steps="
                f"{self.settings.max_steps}; raise max_steps to train on, or {afresh}"
            )
        for key, value in _hyperparameters(self.optimizer).items():
            if key in wanted and wanted[key] != value:
                raise UsageError(
                    f"{directory}: train.optimizer.{key} is {wanted[key]!r} now but "
                    f"{value!r} in the checkpoint at step {self.step}, which a resume keeps; "
                    f"restore it, or {afresh}"
                )
        now = asdict(self.settings)
        changed = [
            f"{key} {saved_settings[key]!r} -> {now[key]!r}"
            for key in now
            if key in saved_settings and saved_settings[key] != now[key]
        ]
        if changed:
            self.log(f"resume: applying changed train settings: {', '.join(changed)}")

    def _data_state(self) -> dict[str, Any] | None:
        """The data position to checkpoint: under torchrun every rank's, gathered (a collective)."""
        state = (
            self.train_batches.state_dict() if hasattr(self.train_batches, "state_dict") else None
        )
        if self.dist.world_size == 1:
            return state
        import torch.distributed

        states: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(states, state)
        return None if all(s is None for s in states) else {PER_RANK: states}

    def _rank_data_state(self, saved: Any, directory: Path) -> Any:
        """This rank's part of a checkpoint's data position (all of it from a single process)."""
        ranks = saved.get(PER_RANK) if isinstance(saved, dict) and len(saved) == 1 else None
        if ranks is None:
            return saved  # a single process's; the iterator refuses it when the ranks differ
        if len(ranks) != self.dist.world_size and all(r == ranks[0] for r in ranks):
            return ranks[0]  # a position that is the same on every rank holds on any number
        if len(ranks) != self.dist.world_size:
            raise UsageError(
                f"{directory}: was saved by {len(ranks)} ranks, so only {len(ranks)} ranks can "
                f"resume from it (this run has {self.dist.world_size}); train into a new output "
                "directory, or start over with train.resume=false"
            )
        return ranks[self.dist.rank]

    def save(self, final: bool = False, result: TrainResult | None = None) -> Path:
        """Write a resumable checkpoint of the current step (rank 0); returns its directory.

        The final one also records the run's `result`, so a rerun of a finished run can publish
        its model and report it without training again."""
        directory = self.checkpoints / ckpt.step_dir_name(self.step)
        data_state = self._data_state()
        extra: dict[str, Any] = {"history": self.history, "settings": asdict(self.settings)}
        if result is not None:
            extra["result"] = {**asdict(result), "checkpoint": str(directory), "history": []}
        if self.settings.strategy == "fsdp":  # every rank writes its shard
            fsdp.save(
                directory,
                self.model,
                self.optimizer,
                self.scheduler,
                self.step,
                data_state,
                self.dist,
                extra=extra,
                tokenizer=self.tokenizer,
            )
        elif self.dist.is_main:
            ckpt.save_checkpoint(
                directory,
                self.model,
                self.optimizer,
                self.scheduler,
                self.step,
                data_state,
                extra=extra,
                tokenizer=self.tokenizer,
            )
        if self.dist.is_main:
            ckpt.prune_checkpoints(
                self.checkpoints, max(1, self.settings.keep_checkpoints), current=directory
            )
        self._barrier()
        return directory

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            import torch.distributed

            torch.distributed.barrier()

    def _record(self, entry: dict[str, float]) -> None:
        self.history.append(entry)
        step = int(entry["step"])
        for logger in self.loggers:
            logger.log(step, {k: v for k, v in entry.items() if k != "step"})

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss over `settings.eval_batches` held-out batches (None without eval data)."""
        if self.eval_batches is None:
            return None
        self.scored.eval()
        total = torch.zeros((), device=self.dist.device)
        targets = torch.zeros((), device=self.dist.device)
        seen = 0
        for i, batch in enumerate(self.eval_batches()):
            if i >= self.settings.eval_batches:
                break
            with self._autocast():
                loss_sum, count = self.scored(self._to_device(batch))
            total += loss_sum.float()
            targets += count
            seen += 1
        self.scored.train()
        if seen == 0:
            raise UsageError(
                "evaluation data gave no batch; add validation data or lower batch_size"
            )
        total, targets = sum_across_ranks(torch.stack([total, targets]), self.dist)
        return float(total / targets.clamp(min=1))

    def _next_batch(self) -> dict[str, torch.Tensor]:
        try:
            return next(self.train_batches)
        except StopIteration:
            raise UsageError(
                f"training data ran out at step {self.step} of {self.settings.max_steps}; "
                "use more data, more epochs, random windows or fewer max_steps"
            ) from None

    def _micro_batches(self) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """The step's `grad_accum` batches on the device and the step's target count over every
        micro-batch and every rank (one all-reduce, no host read)."""
        batches = [self._to_device(self._next_batch()) for _ in range(self.settings.grad_accum)]
        counts = torch.stack([self.objective.count_targets(b) for b in batches]).sum()
        total = sum_across_ranks(counts.to(torch.float32), self.dist)
        return batches, total

    def _step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | int]:
        """One optimizer step; its summed loss and target count (every rank) and tokens read.

        Each micro-batch's summed loss is divided by the step's total target count (times the
        world size, which DDP's gradient averaging divides back out), so every target of the step
        weighs the same however the targets fall across micro-batches and ranks.
        """
        s = self.settings
        self.optimizer.zero_grad(set_to_none=True)
        batches, total = self._micro_batches()
        scale = self.dist.world_size / total.clamp(min=1)
        step_sum = torch.zeros((), device=self.dist.device)
        tokens: torch.Tensor | int = 0
        for micro, batch in enumerate(batches):
            tokens = tokens + _tokens_in(batch)
            self.context = int(batch["input_ids"].shape[-1])
            sync = micro == len(batches) - 1 or not hasattr(self.step_fn, "no_sync")
            with contextlib.nullcontext() if sync else self.step_fn.no_sync():  # type: ignore[operator]
                with self._autocast():
                    loss_sum, _ = self.step_fn(batch)
                self.scaler.scale(loss_sum * scale).backward()
            step_sum += loss_sum.detach().float()
        logs = (self.step + 1) % max(1, s.log_every) == 0 or self.step + 1 == s.max_steps
        if s.grad_clip or logs:  # a log step reports the norm before clipping
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip or math.inf)
            self.grad_norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return step_sum, total, tokens

    def _mfu(self, tokens_per_second: float) -> float | None:
        """Model FLOPs utilisation of one device at the run's `tokens_per_second` (every rank's),
        None when the device's peak is unknown (a CPU) or the model has no llmkit config; the
        FLOPs per token (6N + attention at the trained context) are computed once."""
        from llmkit.analysis import summary

        device = self.dist.device
        if self.flops_per_token is None:  # NaN: no MFU for this run
            self.flops_per_token = math.nan
            if summary.mfu(1.0, 1.0, device) is not None:  # the device's peak is known
                with contextlib.suppress(UsageError):  # not an llmkit model: no config to count
                    self.flops_per_token = float(
                        summary.training_flops_per_token(self.model, self.context)
                    )
        if math.isnan(self.flops_per_token):
            return None
        return summary.mfu(tokens_per_second / self.dist.world_size, self.flops_per_token, device)

    def fit(self) -> TrainResult:
        """Train until `max_steps`, evaluating and checkpointing on the configured cadence.

        The loss and token counts stay on the device between log steps; a log step reads the
        window's loss per target (summed over every rank) and stops on a non-finite one.
        """
        s = self.settings
        self.scored.train()
        start = time.perf_counter()
        window_start, window_tokens = start, 0.0
        device = self.dist.device
        window = torch.zeros(3, device=device)  # summed loss (this rank), tokens (this rank), steps
        window_targets = torch.zeros((), device=device)  # every rank's targets
        train_loss = eval_loss = math.nan
        tokens_total = 0.0
        seen = float(self.history[-1].get("tokens", 0.0)) if self.history else 0.0
        bar = progress(s.max_steps, "train", unit="step", initial=self.step)
        while self.step < s.max_steps:
            step_sum, total, tokens = self._step()
            bar.update(1)
            window[0] += step_sum
            window[1] += tokens
            window[2] += 1
            window_targets += total
            if self.step % max(1, s.log_every) == 0 or self.step == s.max_steps:
                summed = sum_across_ranks(window[:2].clone(), self.dist)
                loss_sum, window_tokens = float(summed[0]), float(summed[1])
                train_loss = loss_sum / max(float(window_targets), 1.0)
                if not math.isfinite(train_loss):
                    raise WorkError(
                        f"loss became {train_loss} by step {self.step}; lower the learning rate, "
                        "enable grad_clip or use fp32"
                    )
                now = time.perf_counter()
                tokens_total += window_tokens
                entry = {
                    "step": self.step,
                    "loss": train_loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "tokens_per_second": window_tokens / max(now - window_start, 1e-9),
                }
                seen += window_tokens
                entry["tokens"] = int(seen)
                norm = float(self.grad_norm) if self.grad_norm is not None else math.nan
                if math.isfinite(norm):
                    entry["grad_norm"] = norm
                utilisation = self._mfu(entry["tokens_per_second"])
                if utilisation is not None:
                    entry["mfu"] = utilisation
                window.zero_()
                window_targets.zero_()
                window_start = now
                if s.eval_every and (self.step % s.eval_every == 0 or self.step == s.max_steps):
                    value = self.evaluate()
                    if value is not None:
                        entry["eval_loss"] = eval_loss = value
                self._record(entry)
                shown = {"tok/s": entry["tokens_per_second"], "mfu": entry.get("mfu")}
                bar.show(
                    loss=train_loss,
                    lr=entry["lr"],
                    **{k: v for k, v in shown.items() if v is not None},
                )
                bar.line(
                    "  ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in entry.items()
                    ),
                    self.log,
                )
                window_start = time.perf_counter()  # evaluation time is not training time
            if s.checkpoint_every and self.step % s.checkpoint_every == 0:
                self.save()
        bar.close()
        elapsed = time.perf_counter() - start
        if not s.eval_every and self.eval_batches is not None:
            eval_loss = self.evaluate() or math.nan
        result = TrainResult(
            steps=self.step,
            train_loss=train_loss,
            eval_loss=None if math.isnan(eval_loss) else eval_loss,
            tokens_per_second=tokens_total / max(elapsed, 1e-9),
            seconds=elapsed,
            checkpoint=str(self.checkpoints / ckpt.step_dir_name(self.step)),
            history=self.history,
        )
        self.save(final=True, result=result)
        return result

    def finished_result(self) -> TrainResult | None:
        """The result of a run that a resume found finished (its final checkpoint's), else None."""
        if self.finished is None or self.step < self.settings.max_steps:
            return None
        fields = {k: v for k, v in self.finished.items() if k in TrainResult.__dataclass_fields__}
        try:
            return TrainResult(**{**fields, "history": self.history})
        except TypeError:
            return None


def _hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first parameter group's settings as configured: everything but the parameters and the
    scheduled learning rate (`initial_lr` is the configured one when a scheduler runs)."""
    group = optimizer.param_groups[0]
    out = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
    out["lr"] = group.get("initial_lr", group["lr"])
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def write_result(result: TrainResult, out_dir: Path) -> None:
    """Write `train_result.json` atomically."""
    write_json(out_dir / "train_result.json", asdict(result))
