"""The hooks llmkit calls; factories are named lazily so that `llmkit --help` stays fast."""

from __future__ import annotations

from typing import Any

import llmkit
from llmkit.hookspecs import Register


@llmkit.hookimpl
def register_metrics(register: Register) -> None:
    register(
        "jaccard", "llmkit_example.metric:Jaccard", summary="Mean token-set Jaccard similarity"
    )


@llmkit.hookimpl
def register_optimizers(register: Register) -> None:
    register("signum", "llmkit_example.optimizer:Signum", summary="Sign SGD with momentum")


@llmkit.hookimpl
def register_attentions(register: Register) -> None:
    register(
        "quiet",
        "llmkit_example.attention:QuietAttention",
        summary="Softmax-plus-one attention: a head may attend to nothing",
    )


@llmkit.hookimpl
def register_norms(register: Register) -> None:
    register("scalenorm", "llmkit_example.norm:ScaleNorm", summary="ScaleNorm: g * x / ||x||")


@llmkit.hookimpl
def register_objectives(register: Register) -> None:
    register(
        "prefix_lm",
        "llmkit_example.objective:PrefixLM",
        summary="Prefix LM: score only the continuation after a random split of each window",
    )


@llmkit.hookimpl
def register_commands(cli: Any) -> None:
    from llmkit_example.command import example_jaccard

    cli.add_command(example_jaccard)
