"""`fsdp.build` on two gloo ranks: every rank shards a meta-device copy and receives its shards
from rank 0, so the weights, buffers and RNG state equal a model built in one process, fresh or
loaded from `init_from` (with an adapter put on it, whose trainable weights FSDP leaves whole
apart from the sharded frozen base), while each rank allocates only its half."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from build_worker import fresh

WORKER = Path(__file__).with_name("build_worker.py")
pytestmark = pytest.mark.slow


def _build(out: Path, *init_from: Path) -> dict[str, torch.Tensor]:
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(WORKER), str(out), *map(str, init_from)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return load_file(str(out / "weights.safetensors"))


def _reports(out: Path) -> list[dict[str, object]]:
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]


def _expected(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.detach() for k, v in model.state_dict().items()}
    state.update({f"buffer.{k}": v for k, v in model.named_buffers()})
    return {k: v for k, v in state.items() if "head" not in k}


def test_a_fresh_model_gets_the_initial_weights_of_one_process(tmp_path: Path) -> None:
    built = _build(tmp_path / "run")
    torch.manual_seed(0)
    alone = fresh()
    draw = torch.rand(()).item()  # the RNG after the build, as every rank has it
    expected = _expected(alone)
    assert built.keys() == expected.keys() and any(k.startswith("buffer.") for k in built)
    for name, value in expected.items():
        assert torch.equal(built[name], value), name  # bit for bit, not within a tolerance
    total = sum(p.numel() for p in alone.parameters())
    for report in _reports(tmp_path / "run"):
        assert report["sharded"] and not report["meta"] and report["training"]
        assert report["draw"] == draw
        assert int(report["local"]) <= total // 2 + 64  # its half, never the whole model


def test_init_from_is_loaded_on_rank_0_and_sent_to_every_rank(tmp_path: Path) -> None:
    from llmkit.adapters import apply_adapter
    from llmkit.storage.checkpoint import save_model

    torch.manual_seed(1)
    save_model(fresh(), tmp_path / "init")
    built = _build(tmp_path / "run", tmp_path / "init")
    import llmkit

    torch.manual_seed(0)
    loaded = llmkit.load_model(tmp_path / "init").train()
    alone = apply_adapter(loaded, {"name": "lora", "r": 2, "targets": ["q", "v"]})
    expected = _expected(alone)
    assert built.keys() == expected.keys() and any("lora_A" in k for k in built)
    for name, value in expected.items():
        assert torch.equal(built[name], value), name
    assert all(report["apart"] for report in _reports(tmp_path / "run"))
