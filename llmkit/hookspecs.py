"""The pluggy hook specs: one `register_<kinds>(register)` hook per component kind, plus CLI commands.

Each hook receives a `Register` callback; a plugin calls it once per component it provides.
Adding a component kind is one line in `KINDS` and one hook below (a test checks they agree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT = "llmkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: What builds a component: a class or function, called with the component's options.
Factory = Callable[..., Any]

#: Component kind -> name of the hook that plugins implement to register components of that kind.
KINDS: dict[str, str] = {
    "tokenizer": "register_tokenizers",
    "attention": "register_attentions",
    "norm": "register_norms",
    "mlp": "register_mlps",
    "position": "register_positions",
    "model": "register_models",
    "objective": "register_objectives",
    "adapter": "register_adapters",
    "optimizer": "register_optimizers",
    "scheduler": "register_schedulers",
    "loss": "register_losses",
    "metric": "register_metrics",
    "cleaner": "register_cleaners",
    "dataset": "register_datasets",
    "logger": "register_loggers",
}


class Register(Protocol):
    """The callback each `register_<kinds>` hook receives: add one component of that kind.

    `factory` is a callable or a lazy ``"package.module:Name"`` string (imported only when the
    component is used); `summary` is the one line `llmkit components` shows (default: the
    factory's first docstring line).
    """

    def __call__(self, name: str, factory: Factory | str, summary: str | None = None) -> None: ...


class Specs:
    """Hook specifications: one hook per component kind in `KINDS`, plus `register_commands`."""

    @hookspec
    def register_tokenizers(self, register: Register) -> None:
        """Register tokenizers: factories that load or build one (see `llmkit.tokenizers`)."""

    @hookspec
    def register_attentions(self, register: Register) -> None:
        """Register attention modules: `cls(d_model, n_heads, ...)` (see `llmkit.nn.attention`)."""

    @hookspec
    def register_norms(self, register: Register) -> None:
        """Register norms: `cls(d_model, eps=, bias=)` -> nn.Module (see `llmkit.nn.norms`)."""

    @hookspec
    def register_mlps(self, register: Register) -> None:
        """Register MLPs: `cls(d_model, hidden, bias=, dropout=)` -> nn.Module (`llmkit.nn.mlp`)."""

    @hookspec
    def register_positions(self, register: Register) -> None:
        """Register position schemes: `Positions` subclasses built with keywords (`llmkit.nn.positions`)."""

    @hookspec
    def register_models(self, register: Register) -> None:
        """Register model architectures: factories `name(**config) -> nn.Module`."""

    @hookspec
    def register_objectives(self, register: Register) -> None:
        """Register objectives: how records batch, how a batch becomes a loss, how it evaluates."""

    @hookspec
    def register_adapters(self, register: Register) -> None:
        """Register adapters: `Adapter`s whose `apply(model)` adds trainable weights to a frozen model."""

    @hookspec
    def register_optimizers(self, register: Register) -> None:
        """Register optimizers: factories `name(params, lr=..., ...) -> torch.optim.Optimizer`."""

    @hookspec
    def register_schedulers(self, register: Register) -> None:
        """Register learning-rate schedules: `name(optimizer, total_steps, ...) -> LRScheduler`."""

    @hookspec
    def register_losses(self, register: Register) -> None:
        """Register losses: modules called as `loss(logits, targets)`."""

    @hookspec
    def register_metrics(self, register: Register) -> None:
        """Register metrics: streaming `update(predictions, targets)`, `compute()`, `reset()`."""

    @hookspec
    def register_cleaners(self, register: Register) -> None:
        """Register cleaners: `Cleaner`s whose `apply(batch)` cleans records (None drops one)."""

    @hookspec
    def register_datasets(self, register: Register) -> None:
        """Register datasets: readers (iterables of records) and batchers over token shards."""

    @hookspec
    def register_loggers(self, register: Register) -> None:
        """Register loggers: `cls(run_dir, **params)` with `log(step, scalars)` (`llmkit.loggers`)."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add Click commands or groups to the `llmkit` CLI group `cli` (call `cli.add_command`)."""
