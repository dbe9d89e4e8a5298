"""FSDP2 on two gloo ranks (CPU): the same weights as one process and as DDP; sharded DCP
checkpoints that survive a kill in a step or in a save and resume on two ranks or on one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llmkit.storage import train_state

WORKER = Path(__file__).with_name("fsdp_worker.py")
STEPS = 4
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train(
    out: Path, strategy: str, ranks: int, kill: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """The worker as one process or under torchrun with `ranks` processes."""
    args = [str(WORKER), str(out), strategy, str(STEPS), *([kill] if kill else [])]
    if ranks > 1:
        args = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(ranks),
            *args,
        ]
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**_env(), **env}, timeout=300
    )


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "weights.safetensors"))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four uninterrupted FSDP steps on two ranks, checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("fsdp") / "run"
    ok(train(out, "fsdp", 2))
    state = out / "checkpoints" / "step-0000004"
    assert (state / "sharded.json").is_file() and not (state / "model.safetensors").exists()
    assert sorted(p.name for p in (state / "sharded").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"
    ]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> dict[str, torch.Tensor]:
    """The uninterrupted run's final weights."""
    return weights(reference_run)


def test_fsdp_on_two_ranks_trains_the_weights_of_one_process_and_of_ddp(
    reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    ok(train(tmp_path / "one", "ddp", 1))
    assert_same(reference, weights(tmp_path / "one"))
    ok(train(tmp_path / "ddp", "ddp", 2))
    assert_same(reference, weights(tmp_path / "ddp"))


def test_fsdp_with_gradient_checkpointing_and_torch_compile_trains_the_same_weights(
    reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    checkpointing = '{"gradient_checkpointing": true}'
    out = tmp_path / "run"
    ok(train(out, "fsdp", 2, FSDP_WORKER_MODEL=checkpointing, FSDP_WORKER_COMPILE="1"))
    assert_same(reference, weights(out))


def test_fsdp_with_bf16_parameters_and_cpu_offload_trains_close_to_fp32(
    reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ok(train(out, "fsdp", 2, FSDP_WORKER_BF16_OFFLOAD="1"))
    trained = weights(out)
    assert all(t.dtype == torch.float32 for t in trained.values())  # bf16 only in compute
    for name, value in trained.items():  # 4 steps of bf16 forward/backward, fp32 reduction
        torch.testing.assert_close(value, reference[name], rtol=0, atol=2e-2, msg=name)
    assert any(not torch.equal(value, reference[name]) for name, value in trained.items())


def test_fsdp_trains_a_lora_adapter_on_a_frozen_base_as_one_process_does(tmp_path: Path) -> None:
    """Frozen base sharded, adapter whole on each rank; a kill resumes on one process."""
    lora = '{"name": "lora", "r": 2, "alpha": 4, "targets": ["q", "v"]}'
    ok(train(tmp_path / "one", "ddp", 1, FSDP_WORKER_ADAPTER=lora))
    ok(train(tmp_path / "two", "fsdp", 2, FSDP_WORKER_ADAPTER=lora))
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert any("lora" in name for name in one)  # the gathered copy carries the adapter
    assert_same(one, two)
    # The frozen base is sharded with the adapter but carries no AdamW state in the shards.
    from torch.distributed.checkpoint import FileSystemReader

    shards = tmp_path / "two" / "checkpoints" / "step-0000004" / "sharded"
    saved = list(FileSystemReader(str(shards)).read_metadata().state_dict_metadata)
    moments = [k for k in saved if k.startswith("optimizer.state.")]
    assert moments and all(".lora_" in k for k in moments), moments
    assert any(k.startswith("model.") and ".lora_" not in k for k in saved)
    # Killed in step 3 on 2 ranks, resumed from step 2 by one process (its config names the adapter).
    killed = tmp_path / "killed"
    assert train(killed, "fsdp", 2, "step:2", FSDP_WORKER_ADAPTER=lora).returncode != 0
    ok(train(killed, "fsdp", 1, FSDP_WORKER_ADAPTER=lora))
    assert_same(one, weights(killed))


def _killed(tmp_path: Path, kill: str) -> Path:
    out = tmp_path / "run"
    proc = train(out, "fsdp", 2, kill)
    assert proc.returncode != 0 and not (out / "weights.safetensors").exists()
    return out


def _resume(out: Path, reference: dict[str, torch.Tensor], ranks: tuple[int, ...]) -> None:
    copies = {n: out if i == 0 else out.with_name(f"run-{n}") for i, n in enumerate(ranks)}
    for where in copies.values():
        if where != out:
            shutil.copytree(out, where)
    for n, where in copies.items():
        ok(train(where, "fsdp", n))  # one process reshards the two ranks' checkpoint
        assert_same(reference, weights(where))


def test_fsdp_killed_in_a_step_resumes_on_two_ranks_and_on_one(
    reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    out = _killed(tmp_path, "step:2")
    assert (
        train_state.latest_checkpoint(out / "checkpoints") == out / "checkpoints" / "step-0000002"
    )
    _resume(out, reference, (2, 1))


def test_fsdp_killed_while_saving_never_looks_complete_and_resumes_on_one(
    reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    out = _killed(tmp_path, "save:4")
    checkpoints = out / "checkpoints"
    # Both ranks' shards and DCP's .metadata were on disk, but in a hidden staged directory.
    staged = [p for p in checkpoints.iterdir() if p.name.startswith(".step-0000004")]
    assert staged and (staged[0] / "sharded" / "__1_0.distcp").is_file()
    assert not (checkpoints / "step-0000004").exists()
    assert train_state.latest_checkpoint(checkpoints) == checkpoints / "step-0000002"
    _resume(out, reference, (1,))


def test_a_damaged_shard_is_named_and_its_checkpoint_skipped(
    reference_run: Path, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(reference_run / "checkpoints", checkpoints)
    shard = checkpoints / "step-0000004" / "sharded" / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    lines: list[str] = []
    assert train_state.find_resumable(checkpoints, lines.append) == checkpoints / "step-0000002"
    assert len(lines) == 1 and "__1_0.distcp: damaged" in lines[0], lines
