"""Helpers shared by the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def validation_shards(path: Path, tokens: np.ndarray, vocab_size: int) -> Path:
    """A prepared data directory holding `tokens` as the validation split (one document; the
    writer appends EOS 0)."""
    from llmkit.data.shards import FORMAT_VERSION, MANIFEST, ShardWriter

    path.mkdir()
    writer = ShardWriter(path, "validation", "uint16", eos_id=0, shard_tokens=1 << 20)
    writer.add(tokens)
    shards = writer.close()
    split = {
        "tokens": sum(s.tokens for s in shards),
        "documents": 1,
        "shards": [s.to_json() for s in shards],
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "fingerprint": "test",
        "dtype": "uint16",
        "vocab_size": vocab_size,
        "eos_id": 0,
        "splits": {"validation": split},
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path
