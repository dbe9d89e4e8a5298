"""`llmkit data prepare` under torchrun: each of 2 ranks tokenizes its share of the input files and
rank 0 joins them; the shards are byte-identical to a single process's, with the same manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "python-reference.txt"


def _prepare(files: list[Path], out: Path, ranks: int) -> subprocess.CompletedProcess[str]:
    args = ["-m", "llmkit", "data", "prepare", *map(str, files), "--tokenizer", "byte", "-o",
            str(out), "--shard-tokens", "20000", "--validation", "0.2", "--unit", "paragraph"]  # fmt: skip
    if ranks > 1:
        args = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(ranks),
            *args,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=240
    )


@pytest.mark.slow
def test_two_ranks_write_the_shards_of_one_process_byte_for_byte(tmp_path: Path) -> None:
    paragraphs = CORPUS.read_text(encoding="utf-8").split("\n\n")
    files = []
    for i in range(5):  # 5 files over 2 ranks: 3 and 2
        files.append(tmp_path / f"part-{i}.txt")
        files[-1].write_text("\n\n".join(paragraphs[i::5]), encoding="utf-8")
    single, multi = tmp_path / "single", tmp_path / "multi"
    alone = _prepare(files, single, 1)
    assert alone.returncode == 0, alone.stderr
    shared = _prepare(files, multi, 2)
    assert shared.returncode == 0, shared.stdout + shared.stderr[-3000:]
    assert shared.stdout.count("wrote ") == 1, shared.stdout  # rank 0 reports
    names = sorted(p.name for p in single.iterdir() if p.suffix in (".bin", ".npy"))
    assert len([n for n in names if n.startswith("train-")]) >= 4  # several shards
    assert names == sorted(p.name for p in multi.iterdir() if p.suffix in (".bin", ".npy"))
    for name in names:
        assert (single / name).read_bytes() == (multi / name).read_bytes(), name
    one, two = (json.loads((d / "manifest.json").read_text()) for d in (single, multi))
    for key in ("fingerprint", "splits", "inputs", "config", "dtype", "eos_id", "chars"):
        assert one[key] == two[key], key
    assert not any(p.name.startswith(".multi.parts") for p in tmp_path.iterdir())
    again = _prepare(files, multi, 2)  # up to date: nothing rewritten
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
