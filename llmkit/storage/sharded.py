"""The index of a sharded step checkpoint: the DCP files under `sharded/`, each with size and SHA-256.

A checkpoint written under `train.distributed.strategy: fsdp` keeps the model and optimizer as
torch.distributed.checkpoint files (`sharded/.metadata` and one `__R_0.distcp` per rank) instead
of model.safetensors; `sharded.json` lists them, and the checkpoint's manifest lists
`sharded.json`, so one chain of hashes covers every byte and a damaged shard is named on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.storage.manifest import DamagedError, sha256_file

INDEX_FILE = "sharded.json"
SHARDED_DIR = "sharded"


def write_index(directory: Path) -> dict[str, Any]:
    """Record every file of `directory/sharded` in `directory/sharded.json` (after DCP's save)."""
    from llmkit.atomic import write_json

    shards = directory / SHARDED_DIR
    files = {
        entry.name: {"size": entry.stat().st_size, "sha256": sha256_file(entry)}
        for entry in sorted(shards.iterdir())
        if entry.is_file()
    }
    index = {"format": 1, "dir": SHARDED_DIR, "files": files}
    write_json(directory / INDEX_FILE, index)
    return index


def verify_index(directory: Path, hint: str = "it is skipped") -> None:
    """Check every DCP file that `sharded.json` lists; a DamagedError naming the first bad one."""
    path = directory / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        files = dict(index["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedError(f"{path}: not a readable shard index ({exc}); {hint}") from None
    if ".metadata" not in files:
        raise DamagedError(f"{path}: lists no .metadata, so the shards are incomplete; {hint}")
    for name, info in files.items():
        file = directory / SHARDED_DIR / str(name)
        if "/" in str(name) or not file.is_file():
            raise DamagedError(f"{file}: missing; the sharded checkpoint is incomplete; {hint}")
        if file.stat().st_size != info.get("size") or sha256_file(file) != info.get("sha256"):
            raise DamagedError(f"{file}: damaged (differs from {INDEX_FILE}); {hint}")


def is_sharded(directory: Path) -> bool:
    """Whether a step checkpoint keeps its weights as DCP shards."""
    return (directory / INDEX_FILE).is_file()
