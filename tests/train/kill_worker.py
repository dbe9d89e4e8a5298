"""Kill a tiny pipeline run at every rename, unlink and rmdir of its checkpointing, rerun, compare.

Run as `python kill_worker.py WORKDIR [SIGKILLS]`: it imports torch once, then forks one child per
run, so that each run costs no interpreter start. A child killed at the Nth call of os.replace,
os.rename, os.unlink, os.remove, os.rmdir or shutil.rmtree (counted from the start of the train
stage, so every call of checkpoint saving, pruning and model publishing is a point) ends with
os._exit before that call happens; the rerun must end with a model/ bit-identical to the
uninterrupted run's. SIGKILLS more runs are killed with a real SIGKILL at a random instant. Prints
one JSON object: the number of points, the runs and every failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch._dynamo

import llmkit.models.gpt
import llmkit.objectives.causal_lm
import llmkit.train.trainer  # noqa: F401
from llmkit.pipeline import config as pipeline_config
from llmkit.pipeline import runner

KILLED = 77
REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"
PIPELINE = """
name: kill
output: {out}
seed: 0
tokenizer: {{name: byte}}
data:
  inputs: [{corpus}]
  unit: paragraph
  validation: 0.1
train:
  model: {{name: gpt, d_model: 16, n_layers: 1, n_heads: 2, max_positions: 16}}
  optimizer: {{name: adamw, lr: 3.0e-3}}
  scheduler: {{name: cosine, warmup_steps: 1}}
  context: 16
  batch_size: 2
  max_steps: 4
  log_every: 2
  checkpoint_every: 2
  keep_checkpoints: 1
  eval_batches: 1
"""
PATCHED = [(os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (os, "rmdir")]


def install_counter(kill_at: int | None, report: Path | None) -> None:
    """Count the calls of the patched functions; os._exit(KILLED) just before call `kill_at`."""
    count = [0]

    def wrap(fn: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == kill_at:
                os._exit(KILLED)
            return fn(*args, **kwargs)

        return counted

    for module, name in PATCHED:
        setattr(module, name, wrap(getattr(module, name)))
    shutil.rmtree = wrap(shutil.rmtree)  # type: ignore[assignment]
    if report is not None:
        import atexit

        atexit.register(lambda: report.write_text(str(count[0])))


def child(
    out: Path, stages: list[str], kill_at: int | None = None, report: Path | None = None
) -> int:
    """Fork a run of `stages` into `out`; returns its pid (its output goes to out.log)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        log = open(f"{out}.log", "a", encoding="utf-8")  # noqa: SIM115  (kept open until os._exit)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        torch.set_num_threads(1)
        pipeline = Path(f"{out}.yaml")
        pipeline.write_text(PIPELINE.format(out=out, corpus=CORPUS))
        cfg = pipeline_config.load(pipeline)
        if kill_at is not None or report is not None:
            install_counter(kill_at, report)
        runner.run(cfg, REPO, stages, log=lambda line: print(line, flush=True))
        code = 0
    except BaseException as exc:  # the parent reads the log
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
    finally:
        sys.stdout.flush()
        if report is not None:
            import atexit

            atexit._run_exitfuncs()
        os._exit(code)


def wait(pid: int) -> int:
    """The exit code of child `pid` (-N for a signal)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fresh(work: Path, name: str, ref: Path) -> Path:
    """An output directory with the reference run's tokenizer and data (so only training runs)."""
    out = work / name
    out.mkdir()
    shutil.copy(ref / "tokenizer.json", out / "tokenizer.json")
    (out / "data").symlink_to(ref / "data", target_is_directory=True)
    return out


def model_of(out: Path) -> str | None:
    """The manifest of out/model (every file's hash) if it verifies, else None."""
    from llmkit.storage.checkpoint import is_complete

    model = out / "model"
    return (model / "manifest.json").read_text() if is_complete(model) else None


def main() -> None:
    work = Path(sys.argv[1])
    sigkills = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    prep = work / "prep"
    assert wait(child(prep, ["tokenizer", "data"])) == 0, (work / "prep.log").read_text()
    ref = fresh(work, "ref", prep)
    counted = work / "calls"
    start = time.perf_counter()
    assert wait(child(ref, ["train"], report=counted)) == 0, (work / "ref.log").read_text()
    seconds = time.perf_counter() - start
    calls = int(counted.read_text())
    expected = model_of(ref)
    assert expected is not None
    failures = []

    def rerun_and_check(out: Path, what: str) -> None:
        code = wait(child(out, ["train"]))
        got = model_of(out)
        if code != 0 or got != expected:
            log = Path(f"{out}.log").read_text()[-600:]
            failures.append(
                f"{what}: rerun exit {code}, model {'differs' if got else 'missing'}: {log}"
            )

    for n in range(1, calls + 1):
        out = fresh(work, f"kill-{n}", prep)
        code = wait(child(out, ["train"], kill_at=n))
        if code != KILLED:
            failures.append(f"kill at call {n}: exit {code}, not killed")
            continue
        rerun_and_check(out, f"kill at call {n}")
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")))
    instants = []
    for i in range(sigkills):
        out = fresh(work, f"sigkill-{i}", prep)
        pid = child(out, ["train"])
        instants.append(round(rng.uniform(0.0, seconds), 3))
        time.sleep(instants[-1])
        os.kill(pid, signal.SIGKILL)
        wait(pid)
        rerun_and_check(out, f"SIGKILL after {instants[-1]} s")
    print(
        json.dumps(
            {"calls": calls, "run_seconds": seconds, "sigkill_at": instants, "failures": failures}
        )
    )


if __name__ == "__main__":
    main()
