"""A checkpoint's manifest: the file written last, listing every file with its size and SHA-256.

A directory whose manifest verifies is complete and undamaged; that is the only proof. Loaders
verify before they read (`verify_files`), resumes skip any step directory that does not verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 1 << 20
NO_VERIFY = "pass --no-verify (verify=False) to load edited files on purpose"


class DamagedError(UsageError):
    """A checkpoint file that is missing, or differs from what its manifest records."""


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, step: int | None = None) -> dict[str, Any]:
    """Record every file of `directory` (size, SHA-256) in its manifest; call it last."""
    from llmkit.atomic import write_json

    files = {}
    for entry in sorted(directory.iterdir()):
        if entry.name == MANIFEST_FILE or not entry.is_file() or entry.name.startswith("."):
            continue
        files[entry.name] = {"size": entry.stat().st_size, "sha256": sha256_file(entry)}
    manifest = {"format": MANIFEST_FORMAT, "step": step, "files": files}
    write_json(directory / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of `directory`, checked for form; a DamagedError naming it otherwise."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise DamagedError(f"{path}: missing; the checkpoint is incomplete or damaged")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedError(f"{path}: not valid JSON ({exc}); the checkpoint is damaged") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    step = manifest.get("step") if isinstance(manifest, dict) else None
    well_formed = (
        isinstance(files, dict)
        and manifest.get("format") == MANIFEST_FORMAT
        and (step is None or (type(step) is int and step >= 0))
        and all(
            isinstance(name, str)
            and "/" not in name
            and name not in ("", ".", "..", MANIFEST_FILE)
            and isinstance(info, dict)
            and type(info.get("size")) is int
            and isinstance(info.get("sha256"), str)
            for name, info in files.items()
        )
    )
    if not well_formed:
        raise DamagedError(f"{path}: not a manifest this llmkit writes; the checkpoint is damaged")
    return dict(manifest)


def verify_files(
    directory: Path, names: Iterable[str] | None = None, hint: str = NO_VERIFY
) -> dict[str, Any]:
    """Check `names` (default: every listed file) against the manifest; returns the manifest.

    A missing, resized or changed file, or a wanted file the manifest does not list, is a
    DamagedError naming that file and ending with `hint` (what the reader can do about it).
    """
    manifest = read_manifest(directory)
    files: dict[str, dict[str, Any]] = manifest["files"]
    for name in files if names is None else names:
        path = directory / name
        info = files.get(name)
        if info is None:
            if path.exists():
                raise DamagedError(
                    f"{path}: not in {MANIFEST_FILE}, so it cannot be trusted; {hint}"
                )
            continue
        if not path.is_file():
            raise DamagedError(f"{path}: missing; the checkpoint is incomplete")
        size = path.stat().st_size
        if size != info["size"]:
            raise DamagedError(
                f"{path}: damaged or edited ({size} bytes, {MANIFEST_FILE} records "
                f"{info['size']}); {hint}"
            )
        if sha256_file(path) != info["sha256"]:
            raise DamagedError(
                f"{path}: damaged or edited (its SHA-256 differs from {MANIFEST_FILE}); {hint}"
            )
    return manifest
