"""Built-in loggers, registered through the same hook as third-party plugins (lazily)."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl


@hookimpl
def register_loggers(register: Register) -> None:
    """Register jsonl, csv and tensorboard (nothing imported until a run builds one)."""
    register(
        "jsonl", "llmkit.loggers.jsonl:JsonlLogger", "metrics.jsonl: one JSON line per log step"
    )
    register("csv", "llmkit.loggers.csv:CsvLogger", "metrics.csv: one row per log step")
    register(
        "tensorboard",
        "llmkit.loggers.tensorboard:TensorBoardLogger",
        "TensorBoard event files under RUN/tensorboard (pip install 'llmkit[tensorboard]')",
    )
