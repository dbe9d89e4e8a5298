"""A run killed at any rename, unlink or rmdir of checkpointing or model publishing (and by real
SIGKILLs at random instants) reruns to a model/ bit-identical to an uninterrupted run's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("kill_worker.py")


def test_every_kill_point_then_rerun_gives_the_same_model(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["calls"] >= 20  # saves, the same-step replace, pruning and model publishing
    assert report["failures"] == []
