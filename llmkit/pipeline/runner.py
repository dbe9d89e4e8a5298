"""Running a pipeline: tokenizer -> data -> train -> eval, each stage from the registry.

The recipe of a run, read top to bottom: `check` the file (`llmkit.pipeline.checks`), then
`run` its stages (`llmkit.pipeline.stages`) in order; under torchrun rank 0 alone trains the
tokenizer and writes results while every rank prepares its share of the data and trains
(`llmkit.pipeline.ranks`). Relative input paths in a pipeline file (data inputs, tokenizer files,
`init_from`) are resolved against the file's directory; `output` is relative to the working
directory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.atomic import write_json
from llmkit.errors import UsageError
from llmkit.pipeline import ranks, stages
from llmkit.pipeline.checks import check
from llmkit.pipeline.config import PipelineConfig
from llmkit.pipeline.ranks import is_main_process
from llmkit.storage.lock import output_lock

if TYPE_CHECKING:
    from llmkit.train.distributed import Dist

__all__ = ["STAGES", "check", "is_main_process", "run"]

STAGES = ("tokenizer", "data", "train", "eval")


def run(
    config: PipelineConfig,
    base: Path,
    wanted: list[str] | None = None,
    log: stages.Log = print,
    verify: bool = True,
) -> dict[str, Any]:
    """Run the pipeline's stages in order (all present ones unless `wanted` names some).

    Under torchrun it joins the process group once for the whole run: rank 0 alone runs the
    tokenizer stage while the other ranks wait, every rank prepares its share of the data and
    trains, and rank 0 alone evaluates, logs and writes `summary.json`; a failure on one rank
    stops the others with a one-line error.
    """
    wanted = wanted or [s for s in STAGES if getattr(config, s) is not None]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage '{unknown[0]}'; stages: {', '.join(STAGES)}")
    missing = [s for s in wanted if getattr(config, s) is None]
    if missing:
        raise UsageError(
            f"stage '{missing[0]}' asked for, but the pipeline has no '{missing[0]}' section"
        )
    # One run per output directory: rank 0 holds OUT/.lock until the run ends.
    with output_lock(Path(config.output)) if is_main_process() else contextlib.nullcontext():
        if not ranks.several_ranks():
            return _run_stages(config, base, wanted, log, None, verify)
        from llmkit.train import distributed

        device = config.train.device if config.train is not None else "auto"
        with distributed.process_group(device) as dist:
            quiet = log if dist.is_main else ranks.quiet
            return _run_stages(config, base, wanted, quiet, dist, verify)


def _run_stages(
    config: PipelineConfig,
    base: Path,
    wanted: list[str],
    log: stages.Log,
    dist: Dist | None,
    verify: bool = True,
) -> dict[str, Any]:
    """`run`'s stages; `dist` is this rank's `Dist` under torchrun, None in a single process."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"name": config.name, "output": str(out)}
    shards = stages.reads_shards(config)  # records objectives read the data section themselves

    def tokenizer_stage() -> Path | None:
        if "tokenizer" in wanted:
            return stages.stage_tokenizer(config, base, out, log)
        return out / "tokenizer.json" if (out / "tokenizer.json").is_file() else None

    # Rank 0 alone writes the tokenizer; the other ranks wait for its path.
    tokenizer_path = ranks.on_main(dist, tokenizer_stage, "the tokenizer stage")
    data_dir = out / "data" if shards and (out / "data").is_dir() else None
    if "data" in wanted and shards:
        if tokenizer_path is None:
            raise UsageError("data: needs a tokenizer; add a tokenizer section")
        # Every rank tokenizes its share of the input files; rank 0 joins them.
        data_dir = stages.stage_data(config, base, out, tokenizer_path, log, dist)
    if "eval" in wanted and "train" in wanted and data_dir is not None:
        stages.require_held_out(data_dir)  # before training, not after it
    if "train" in wanted:
        summary["train"] = stages.stage_train(
            config, base, out, data_dir, tokenizer_path, log, verify
        )

    def finish() -> dict[str, Any]:
        if "eval" in wanted:
            summary["eval"] = stages.stage_eval(config, base, out, data_dir, log)
        write_json(out / "summary.json", summary)
        return summary

    what = "the eval stage" if "eval" in wanted else "writing summary.json"
    return ranks.on_main(dist, finish, what)
