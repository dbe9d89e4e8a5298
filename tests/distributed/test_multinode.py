"""Two "nodes" on one machine: two torchrun launchers (--nnodes 2 --nproc-per-node 1) meet at a
c10d rendezvous on 127.0.0.1 and run a short fsdp pipeline; its model/ is one safetensors file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, rank_env

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"

PIPELINE = f"""
name: two-nodes
output: {{out}}
tokenizer: {{{{train_files: [{CORPUS}], vocab_size: 300}}}}
data: {{{{inputs: [{CORPUS}], unit: paragraph, validation: 0.1}}}}
train:
  model: {{{{name: gpt, d_model: 32, n_layers: 2, n_heads: 2, max_positions: 32}}}}
  optimizer: {{{{name: adamw, lr: 3.0e-3}}}}
  distributed: {{{{strategy: fsdp}}}}
  device: cpu
  context: 32
  batch_size: 4
  max_steps: 3
  log_every: 1
  checkpoint_every: 2
eval: {{{{batches: 2}}}}
"""


@pytest.mark.slow
def test_two_nodes_meet_at_a_c10d_rendezvous_and_run_a_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE.format(out=out))
    endpoint = f"127.0.0.1:{free_port()}"
    env = rank_env()
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(node),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "llmkit-test",
                "-m",
                "llmkit",
                "run",
                str(pipeline),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for node in (0, 1)
    ]
    try:
        results = [p.communicate(timeout=300) for p in nodes]
    finally:
        for p in nodes:
            p.kill()
    for p, (stdout, stderr) in zip(nodes, results, strict=True):
        assert p.returncode == 0, stdout[-2000:] + stderr[-4000:]
    stdout = "".join(r[0] for r in results)
    assert sum(line.startswith("train: 3 steps") for line in stdout.splitlines()) == 1, stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["steps"] == 3 and "perplexity" in summary["eval"]
    assert (out / "model" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoints" / "step-0000003" / "trainer_state.json").read_text())
    assert [s["identity"]["world_size"] for s in state["data"]["per_rank"]] == [2, 2]
    shards = sorted(p.name for p in (out / "checkpoints" / "step-0000003" / "sharded").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
