"""`prepare` across the processes of a torchrun job: each rank tokenizes its share of the files.

The input files are split into contiguous runs, one per rank, and each rank runs `prepare` on its
run into a part directory beside the output. Rank 0 then joins the parts in rank order through the
same shard writer and writes one manifest, so the shards are byte-identical to what a single process
writes (documents in file order, the same split, the same shard boundaries) and the manifest's
fingerprint is the single process's. Cross-document cleaners (dedup) need every document in one
place, so with them rank 0 prepares alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmkit.atomic import write_text
from llmkit.data.prepare import (
    REPORT,
    PrepareConfig,
    PrepareResult,
    _remove_previous,
    _skip_output,
    fingerprint,
    make_cleaners,
    make_reader,
    prepare,
    up_to_date,
)
from llmkit.data.shards import MANIFEST, ShardWriter, read_manifest
from llmkit.data.workers import default_workers
from llmkit.errors import UsageError

EMPTY = "no documents left after cleaning"


def several_ranks() -> bool:
    """Whether this process was started by torchrun among several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _group() -> tuple[int, int, bool]:
    """(rank, world size, joined here): joins a gloo group from torchrun's environment if needed."""
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _share(files: list[Any], rank: int, world_size: int) -> list[Any]:
    """Rank `rank`'s contiguous run of `files` (the first ranks take one more when it is uneven)."""
    per, extra = divmod(len(files), world_size)
    start = rank * per + min(rank, extra)
    return files[start : start + per + (1 if rank < extra else 0)]


def _cross_document(cfg: PrepareConfig) -> bool:
    """Whether a cleaner looks across documents (dedup), so a share cannot be cleaned alone."""
    from llmkit.data.dedup import ExactDedup, MinHashDedup

    return any(isinstance(c, (ExactDedup, MinHashDedup)) for c in make_cleaners(cfg.clean))


def prepare_across_ranks(
    cfg: PrepareConfig,
    force: bool = False,
    warn: Callable[[str], None] | None = None,
) -> PrepareResult:
    """`prepare` with the files shared over torchrun's ranks; every rank calls it and gets rank 0's
    result. Outside torchrun it is `prepare`."""
    if not several_ranks():
        return prepare(cfg, force=force, warn=warn)
    import torch.distributed as dist

    rank, world_size, joined = _group()
    try:
        return _prepare(cfg, rank, world_size, force, warn)
    finally:
        if joined:
            dist.destroy_process_group()


def _gather(value: Any, world_size: int) -> list[Any]:
    import torch.distributed as dist

    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value)
    return values


def _prepare(
    cfg: PrepareConfig,
    rank: int,
    world_size: int,
    force: bool,
    warn: Callable[[str], None] | None,
) -> PrepareResult:
    cfg.check()
    if not cfg.output:
        raise UsageError("no output directory given (-o/--output or `output:` in the config)")
    out_dir = Path(cfg.output)
    reader = make_reader(cfg)
    files = list(getattr(reader, "files", None) or [])
    if files:
        _skip_output(reader, out_dir)
        files = list(reader.files)
    if not files or getattr(reader, "pairs", None) or _cross_document(cfg):
        alone = _run(lambda: prepare(cfg, force=force, warn=warn) if rank == 0 else None)
        return _result(_gather(alone, world_size)[0], out_dir)
    parts_dir = out_dir.parent / f".{out_dir.name}.parts"
    mine = _share(files, rank, world_size)
    part = parts_dir / f"rank-{rank:05d}"

    def tokenize() -> str | None:
        if not mine:
            return None
        part_cfg = dataclasses.replace(
            cfg, inputs=[str(f) for f in mine], output=str(part), workers=_rank_workers(cfg)
        )
        try:
            prepare(part_cfg, force=force, warn=lambda line: None)
        except UsageError as exc:
            if EMPTY in str(exc):  # this share cleaned away; the others may hold documents
                return None
            raise
        return str(part)

    parts = _gather(_run(tokenize), world_size)
    for ok, value in parts:
        if not ok:
            raise UsageError(f"rank {rank}: {value}" if rank else str(value))
    outcome: tuple[bool, Any] = (True, None)
    if rank == 0:
        outcome = _run(lambda: _join([Path(v) for _, v in parts if v], cfg, out_dir, force, warn))
    result = _gather(outcome, world_size)[0]
    if rank == 0:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return _result(result, out_dir)


def _rank_workers(cfg: PrepareConfig) -> int:
    """Each rank's worker processes: the config's, or this machine's cores shared by its ranks."""
    if cfg.workers is not None:
        return int(cfg.workers)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, default_workers() // max(1, local))


def _run(work: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result) or (False, the UsageError's line), to send to the other ranks."""
    try:
        return True, work()
    except UsageError as exc:
        return False, str(exc)


def _result(outcome: tuple[bool, Any], out_dir: Path) -> PrepareResult:
    ok, value = outcome
    if not ok:
        raise UsageError(str(value))
    if isinstance(value, PrepareResult):
        return value
    manifest = read_manifest(out_dir)
    report_path = out_dir / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return PrepareResult(out_dir, bool(value), report, manifest)


def _join(
    parts: list[Path],
    cfg: PrepareConfig,
    out_dir: Path,
    force: bool,
    warn: Callable[[str], None] | None,
) -> bool:
    """Rank 0: the parts' shards rewritten in order as one set, one manifest; True if up to date."""
    import numpy as np

    if not parts:
        raise UsageError(f"{EMPTY} (in every rank's share of the inputs)")
    manifests = [read_manifest(p) for p in parts]
    first = manifests[0]
    inputs = [entry for m in manifests for entry in m["inputs"]]
    settings = first["config"]
    key = fingerprint(inputs, first["tokenizer"]["sha256"], settings)
    if not force and up_to_date(out_dir, key) is not None:
        return True
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    dtype, eos = first["dtype"], int(first["eos_id"])
    splits: dict[str, Any] = {}
    for split in ("train", "validation"):
        writer = ShardWriter(out_dir, split, dtype, eos, int(cfg.shard_tokens))
        try:
            for part, manifest in zip(parts, manifests, strict=True):
                for shard in manifest["splits"][split]["shards"]:
                    tokens = np.fromfile(
                        part / shard["file"], dtype=np.dtype(dtype).newbyteorder("<")
                    )
                    starts = np.load(part / shard["index"]).astype(np.int64)
                    writer.add_framed(tokens, np.diff(np.append(starts, len(tokens))))
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        splits[split] = {
            "tokens": sum(s.tokens for s in written),
            "documents": sum(s.documents for s in written),
            "shards": [s.to_json() for s in written],
        }
    reports = [json.loads((p / REPORT).read_text()) for p in parts if (p / REPORT).is_file()]
    report = _merged(reports) if reports else {}
    report["ranks"] = len(parts)
    write_text(out_dir / REPORT, json.dumps(report, indent=2) + "\n")
    manifest = {
        **{k: first[k] for k in ("format_version", "dtype", "vocab_size", "eos_id", "tokenizer")},
        "fingerprint": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs,
        "config": settings,
        "splits": splits,
        "chars": sum(int(m.get("chars", 0)) for m in manifests),
        "seconds": round(
            max(float(m.get("seconds", 0)) for m in manifests) + time.perf_counter() - started, 3
        ),
        "report": REPORT,
    }
    write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    del warn
    return False


def _merged(reports: list[Any]) -> Any:
    """The parts' cleaning reports as one: counts summed, seconds the longest, the rest the first's."""
    first = reports[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in reports)]
        return {k: (max if k == "seconds" else _merged)([r[k] for r in reports]) for k in keys}
    if isinstance(first, list) and all(
        isinstance(r, list) and len(r) == len(first) for r in reports
    ):
        return [_merged([r[i] for r in reports]) for i in range(len(first))]
    if all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in reports):
        return sum(reports)
    return first
