"""The pluggy hook specifications: one `register_<kinds>(register)` hook per component kind, plus CLI commands.

Adding a component kind is one line in `KINDS`; its hook is generated from it.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "llmkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Component kind -> name of the hook that plugins implement to register components of that kind.
KINDS: dict[str, str] = {
    "tokenizer": "register_tokenizers",
    "attention": "register_attentions",
    "model": "register_models",
    "optimizer": "register_optimizers",
    "scheduler": "register_schedulers",
    "loss": "register_losses",
    "metric": "register_metrics",
    "cleaner": "register_cleaners",
    "dataset": "register_datasets",
}


class Specs:
    """Hook specifications; the per-kind hooks are added below from `KINDS`."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add Click commands or groups to the `llmkit` CLI group `cli` (call `cli.add_command`)."""


def _kind_spec(kind: str, hook_name: str) -> Any:
    def spec(register: Any) -> None:
        pass

    spec.__name__ = hook_name
    spec.__doc__ = (
        f"Register {kind} components: call `register(name, factory, summary=None)` for each;"
        " `factory` is a callable or a lazy 'module:attribute' string."
    )
    return hookspec(spec)


for _kind, _hook in KINDS.items():
    setattr(Specs, _hook, staticmethod(_kind_spec(_kind, _hook)))
