"""Helpers shared by tests in several folders (importable as `helpers`: tests/ is on sys.path)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"


def tiny_pipeline(
    out: Path | str,
    name: str,
    model: str,
    train: str,
    eval_section: str = "",
    validation: float = 0.1,
) -> str:
    """A pipeline's YAML on the shipped corpus (paragraphs, byte tokenizer): a gpt of `model`'s
    sizes trained by adamw at 3e-3 with the `train` keys (a flow mapping's inside), then
    `eval_section` as given."""
    return (
        f"name: {name}\noutput: {out}\ntokenizer: {{name: byte}}\n"
        f"data: {{inputs: [{CORPUS}], unit: paragraph, validation: {validation}}}\n"
        f"train: {{model: {{name: gpt, {model}}}, optimizer: {{name: adamw, lr: 3.0e-3}}, {train}}}\n"
        f"{eval_section}"
    )


def lora_pipeline(out: Path, base: Path, adapter: str, train: str, corpus: Path = CORPUS) -> str:
    """A LoRA run's pipeline YAML: the checkpoint `base` fine-tuned on `corpus` (paragraphs, byte
    tokenizer, a tenth held out) in batches of 4 of 32 tokens, through a lora adapter with the
    `adapter` keys, with the `train` keys (each a flow mapping's inside)."""
    return (
        f"name: lora\noutput: {out}\ntokenizer: {{name: byte}}\n"
        f"data: {{inputs: [{corpus}], unit: paragraph, validation: 0.1}}\n"
        f"train: {{init_from: {base}, adapter: {{name: lora, {adapter}}}, context: 32, "
        f"batch_size: 4, {train}}}\n"
    )


def run_in_pty(args: list[str]) -> str:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; all it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 x 120
    env = dict(os.environ)
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def step_without_host_reads(opt: Any, params: list[Any], monkeypatch: Any, steps: int = 2) -> None:
    """Step `opt` on all-ones gradients while any read of a tensor back to the host
    (`item`, `tolist`, `float()`, `bool()`, `int()`) raises."""
    import torch

    def host_read(*args: object) -> None:
        raise AssertionError(f"{type(opt).__name__}.step read a tensor back to the host")

    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    try:
        for _ in range(steps):
            for p in params:
                p.grad = torch.ones_like(p)
            opt.step()
    finally:
        monkeypatch.undo()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env() -> dict[str, str]:
    """This environment with one thread per process and unbuffered output, for child ranks."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def two_ranks_by_hand(
    args: list[str], cwd: Path, timeout: float = 120
) -> list[tuple[int, str, str]]:
    """Run `python ARGS` as ranks 0 and 1 of a 2-process group, started as torchrun would but
    each on its own, so neither is killed when the other exits; (exit code, stdout, stderr) each."""
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={
                **rank_env(),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
            },
        )
        for rank in (0, 1)
    ]
    try:
        results = [(p, *p.communicate(timeout=timeout)) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, out, err in results]


#: The only fields of a prepared dataset's JSON files that differ from run to run.
VARYING = ("created", "seconds")


def snapshot(out: Path) -> dict[str, Any]:
    """Every file of a prepared dataset `out`: its bytes, or for a JSON file (manifest, report)
    its fields without the timing ones, so that two runs' outputs compare equal."""
    import json

    files: dict[str, Any] = {}
    for p in sorted(out.iterdir()):
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            files[p.name] = {k: v for k, v in data.items() if k not in VARYING}
        else:
            files[p.name] = p.read_bytes()
    return files
