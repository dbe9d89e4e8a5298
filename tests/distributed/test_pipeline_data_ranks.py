"""The data stage of `llmkit run` under torchrun (2 gloo ranks, CPU): every rank tokenizes its
share of the input files and rank 0 joins them into the shards and manifest of one process; a
failure on one rank ends every rank with one line, none waits for ever."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rank_env, two_ranks_by_hand

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"
TIMING = ("created", "seconds")  # when and how long: the only fields two runs may differ in

PIPELINE = """
name: data-ranks
output: {out}
tokenizer: {{name: byte}}
data:
  inputs: {inputs}
  unit: paragraph
  validation: 0.2
  shard_tokens: 20000
"""


def _inputs(tmp_path: Path, n: int = 5) -> list[Path]:
    paragraphs = CORPUS.read_text(encoding="utf-8").split("\n\n")
    files = []
    for i in range(n):  # 5 files over 2 ranks: 3 and 2
        files.append(tmp_path / f"part-{i}.txt")
        files[-1].write_text("\n\n".join(paragraphs[i::n]), encoding="utf-8")
    return files


def _pipeline(tmp_path: Path, name: str, inputs: list[Path]) -> tuple[Path, Path]:
    out = tmp_path / name
    path = tmp_path / f"{name}.yaml"
    path.write_text(PIPELINE.format(out=out, inputs=json.dumps([str(p) for p in inputs])))
    return path, out


def _llmkit_run(pipeline: Path, ranks: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "llmkit", "run", str(pipeline)]
    if ranks > 1:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        command, capture_output=True, text=True, env=rank_env(), timeout=240, cwd=pipeline.parent
    )


def _manifest(data: Path) -> dict[str, object]:
    manifest = json.loads((data / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k not in TIMING}


@pytest.mark.slow
def test_llmkit_run_on_two_ranks_prepares_the_shards_of_one_process(tmp_path: Path) -> None:
    pipeline, two = _pipeline(tmp_path, "run", _inputs(tmp_path))
    alone = _llmkit_run(pipeline, 1)
    assert alone.returncode == 0, alone.stderr
    one = two.rename(tmp_path / "alone")  # the same output path for both: manifests name it
    shared = _llmkit_run(pipeline, 2)
    assert shared.returncode == 0, shared.stdout[-2000:] + shared.stderr[-3000:]
    assert len([x for x in shared.stdout.splitlines() if x.startswith("data: prepared")]) == 1
    report = json.loads((two / "data" / "cleaning_report.json").read_text())
    assert report["ranks"] == 2  # both ranks tokenized a share; rank 0 did not prepare alone
    names = sorted(p.name for p in (one / "data").iterdir() if p.suffix in (".bin", ".npy"))
    assert len([n for n in names if n.startswith("train-")]) >= 4  # several shards
    assert names == sorted(p.name for p in (two / "data").iterdir() if p.suffix in (".bin", ".npy"))
    for name in names:
        assert (one / "data" / name).read_bytes() == (two / "data" / name).read_bytes(), name
    assert _manifest(one / "data") == _manifest(two / "data")
    assert not any(p.name.startswith(".data.parts") for p in two.iterdir())
    again = _llmkit_run(pipeline, 2)  # up to date on every rank: nothing rewritten
    assert again.returncode == 0, again.stdout + again.stderr
    assert "data: up to date" in again.stdout, again.stdout


def _two_ranks_by_hand(pipeline: Path, code: str) -> list[tuple[int, str, str]]:
    """Both ranks of `llmkit run PIPELINE`; `code` runs in each before the CLI (to make one rank
    fail)."""
    main = f"{code}\nfrom llmkit.cli import main\nmain(['run', {str(pipeline)!r}])"
    return two_ranks_by_hand(["-c", main], pipeline.parent)


@pytest.mark.slow
def test_a_bad_file_in_one_ranks_share_ends_both_ranks_with_one_line(tmp_path: Path) -> None:
    files = _inputs(tmp_path, 3)
    bad = tmp_path / "part-9.txt.gz"  # the last file: rank 1's share; not gzip
    bad.write_bytes(b"not gzip at all")
    pipeline, out = _pipeline(tmp_path, "run", [*files, bad])
    (code0, _, err0), (code1, out1, err1) = _two_ranks_by_hand(pipeline, "")
    assert (code0, code1) == (2, 2), (err0, err1)
    for err in (err0, err1):
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"{bad}: cannot read" in lines[0], err
    assert err1.startswith("Error: rank 1: "), err1
    assert out1 == ""
    assert not (out / "data" / "manifest.json").exists()


@pytest.mark.slow
def test_a_crash_of_one_rank_in_the_data_stage_ends_the_other_with_one_line(
    tmp_path: Path,
) -> None:
    pipeline, out = _pipeline(tmp_path, "run", _inputs(tmp_path, 2))
    crash = (
        "import os, llmkit.data.prepare_ranks as pr\n"
        "real = pr.prepare\n"
        "def prepare(cfg, **kw):\n"
        "    if os.environ['RANK'] == '1':\n"
        "        raise RuntimeError('disk on fire')\n"
        "    return real(cfg, **kw)\n"
        "pr.prepare = prepare"
    )
    (code0, _, err0), (code1, _, err1) = _two_ranks_by_hand(pipeline, crash)
    assert code1 == 1 and "disk on fire" in err1, err1
    assert code0 == 2, err0
    assert err0.strip().splitlines() == [
        "Error: rank 0: another rank failed in the data stage; its error says why"
    ]
    assert not (out / "data" / "manifest.json").exists()
