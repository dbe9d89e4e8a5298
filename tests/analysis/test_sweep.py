"""`llmkit sweep`: a tiny 2x1 grid runs, writes sweep.csv/md/png, skips finished runs on a rerun;
bad grids fail up front with one line and exit 2, before anything runs."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from llmkit.cli import cli
from llmkit.sweep.grid import combinations, parse_grid, split_values

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    text = (REPO / "examples" / "data" / "python-reference.txt").read_text(encoding="utf-8")
    (tmp_path / "corpus.txt").write_text(text[:30000], encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: tiny\noutput: runs/tiny\n"
        "tokenizer: {name: byte}\n"
        "data: {inputs: [corpus.txt], format: text, unit: paragraph, validation: 0.2}\n"
        "train:\n"
        "  model: {name: gpt, d_model: 16, n_layers: 1, n_heads: 2, max_positions: 16}\n"
        "  optimizer: {name: adamw, lr: 1.0e-3}\n"
        "  context: 16\n  batch_size: 2\n  max_steps: 4\n  log_every: 2\n  eval_every: 4\n"
        "  eval_batches: 2\n  checkpoint_every: 2\n"
        "eval: {metrics: [perplexity], batches: 2}\n",
        encoding="utf-8",
    )
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _sweep(*args: str) -> object:
    return CliRunner().invoke(cli, ["sweep", *args])


def test_grid_runs_reports_and_skips_on_rerun(
    pipeline: Path, tmp_path: Path, assert_drawn: Callable[[Path, int, int], None]
) -> None:
    out = tmp_path / "sweep"
    args = [
        str(pipeline),
        "-o",
        str(out),
        "--grid",
        "train.model.attention=sdpa,mha",
        "--grid",
        "train.optimizer.lr=0.002",
    ]
    result = _sweep(*args)
    assert result.exit_code == 0, result.output
    names = ["attention-sdpa_lr-0.002", "attention-mha_lr-0.002"]
    for name in names:
        assert (out / name / "summary.json").is_file() and (out / name / "model").is_dir()
    rows = _csv(out / "sweep.csv")
    assert [r["run"] for r in rows] == names
    assert [r["train.model.attention"] for r in rows] == ["sdpa", "mha"]
    for row in rows:
        assert float(row["train_loss"]) > 0 and float(row["eval_perplexity"]) > 1
        assert (
            int(row["params"]) > 0 and float(row["tokens_per_s"]) > 0 and float(row["wall_s"]) > 0
        )
        assert row["status"] == "done"
    # sdpa and mha are the same maths: the same seed gives the same losses.
    assert float(rows[0]["train_loss"]) == pytest.approx(float(rows[1]["train_loss"]), rel=1e-4)
    md = (out / "sweep.md").read_text(encoding="utf-8")
    assert md.count("\n") == 4 and "| attention-mha_lr-0.002 | mha | 0.002 |" in md
    assert_drawn(out / "sweep.png", 600, 400)

    again = _sweep(*args)
    assert again.exit_code == 0, again.output
    assert again.output.count("finished earlier, skipped") == 2
    rows_again = _csv(out / "sweep.csv")
    assert [r["train_loss"] for r in rows_again] == [r["train_loss"] for r in rows]
    assert all(r["status"] == "skipped" for r in rows_again)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("train.model.attentoin=sdpa,mha", "did you mean 'attention'"),
        ("train.max_stepz=1,2", "did you mean 'max_steps'"),
        ("train.max_steps=2,abc", "train.max_steps"),
        ("train.model.attention=sdpa,nope", "nope"),
        ("train.max_steps", "expected KEY=V1,V2"),
        ("output=a,b", "the sweep sets 'output' itself"),
        ("train.max_steps=2,2", "given twice"),
    ],
)
def test_bad_grid_is_one_line_exit_2_and_runs_nothing(
    pipeline: Path, tmp_path: Path, grid: str, message: str
) -> None:
    out = tmp_path / "sweep"
    result = _sweep(str(pipeline), "-o", str(out), "--grid", grid)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_mapping_values_vary_linked_keys() -> None:
    axes = parse_grid(["train.model={attention: sdpa},{attention: gqa, n_kv_heads: 2}", "seed=0,1"])
    combos = combinations(axes)
    assert [c.name for c in combos] == [
        "attention-sdpa_seed-0",
        "attention-sdpa_seed-1",
        "attention-gqa_n_kv_heads-2_seed-0",
        "attention-gqa_n_kv_heads-2_seed-1",
    ]
    assert combos[2].overrides == [
        'train.model.attention="gqa"',
        "train.model.n_kv_heads=2",
        "seed=0",
    ]


@given(
    st.lists(
        st.one_of(
            st.integers(), st.text("abc_-.", min_size=1), st.lists(st.integers(), max_size=3)
        ),
        min_size=1,
        max_size=5,
    )
)
def test_split_values_round_trips_yaml_flow_values(values: list[object]) -> None:
    import json

    texts = [json.dumps(v) for v in values]
    assert split_values(",".join(texts)) == texts


def test_help_imports_neither_torch_nor_matplotlib() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from llmkit.cli import cli\n"
        "for args in (['--help'], ['sweep', '--help'], ['summary', '--help'], ['attention', '--help']):\n"
        "    try:\n"
        "        cli.main(args, prog_name='llmkit', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
    assert "--grid KEY=V1,V2,..." in result.stdout


def test_a_killed_run_resumes_from_its_checkpoint(pipeline: Path, tmp_path: Path) -> None:
    import json
    import shutil

    out = tmp_path / "sweep"
    args = [str(pipeline), "-o", str(out), "--grid", "train.model.attention=sdpa,mha"]
    assert _sweep(*args).exit_code == 0
    first = _csv(out / "sweep.csv")
    # As if killed after the step-2 checkpoint: no summary, no model, no step-4 checkpoint.
    run = out / "attention-mha"
    for name in ("summary.json", "eval.json", "train_result.json"):
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "checkpoints" / "step-0000004")
    (run / "checkpoints" / "latest").write_text("step-0000002")
    record = json.loads((run / "sweep-run.json").read_text())
    (run / "sweep-run.json").write_text(json.dumps({**record, "finished": False}))
    result = _sweep(*args)
    assert result.exit_code == 0, result.output
    assert "[1/2] attention-sdpa: finished earlier, skipped" in result.output
    assert "[2/2] attention-mha: resumed from" in result.output and "at step 2" in result.output
    again = _csv(out / "sweep.csv")
    assert [r["status"] for r in again] == ["skipped", "done"]
    assert float(again[1]["train_loss"]) == pytest.approx(float(first[1]["train_loss"]), rel=1e-5)
    assert float(again[1]["wall_s"]) > float(record["wall_seconds"])
