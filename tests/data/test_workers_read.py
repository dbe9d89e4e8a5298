"""`prepare` with workers that read their own files: small plain files go to the workers as
paths, compressed and large ones are read by the main process; the shards, manifest (input
hashes included) and report are the same as one process writes."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit.data.prepare import PrepareConfig, prepare
from llmkit.data.readers import TextReader
from llmkit.data.reading import Files, ReadPlan

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "python-reference.txt"


def run(corpus: Path, out: Path, workers: int, **kw: Any) -> dict[str, Any]:
    data = {
        "inputs": [str(corpus)],
        "tokenizer": "byte",
        "output": str(out),
        "validation": 0.2,
        "shard_tokens": 5_000,
        "chunk_chars": 2_000,  # files of up to 2,000 bytes go to the workers, larger ones not
        "workers": workers,
        **kw,
    }
    prepare(PrepareConfig.from_mapping(data), force=True)
    return snapshot(out)


def mixed_corpus(root: Path) -> Path:
    """Real paragraphs as a mix of small, large and compressed files, some with bad UTF-8."""
    paragraphs = CORPUS.read_text(encoding="utf-8").split("\n\n")[:400]
    root.mkdir(parents=True)
    for i in range(40):
        text = "\n\n".join(paragraphs[i * 10 : i * 10 + (1 if i % 3 else 12)])
        data = text.encode() + (b"\xff bad \xc3" if i % 7 == 0 else b"")
        if i % 11 == 5:
            (root / f"f{i:02d}.txt.gz").write_bytes(gzip.compress(data))
        else:
            (root / f"f{i:02d}.txt").write_bytes(data)
    return root


def test_the_plan_sends_small_plain_files_and_reads_the_rest_here(tmp_path: Path) -> None:
    corpus = mixed_corpus(tmp_path / "corpus")
    reader = TextReader([str(corpus)])
    sizes = [p.stat().st_size for p in reader.files]
    plan = ReadPlan(reader, sizes, 2_000, hashing=True)
    units = [unit for _, unit in plan]
    sent = [path for unit in units if isinstance(unit, Files) for path in unit.paths]
    here = {str(p) for p, n in zip(reader.files, sizes, strict=True)} - set(sent)
    assert sent and here
    assert all(
        p.endswith(".gz") or n > 2_000
        for p, n in zip(map(str, reader.files), sizes, strict=True)
        if p in here
    )
    assert plan.hashes == {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in here}
    assert len(sent) + len(here) == len(reader.files)


@pytest.mark.parametrize(
    ("unit", "clean"),
    [
        ("file", ["nfc", "control_chars", "missing"]),
        ("paragraph", ["nfc", "control_chars", "missing"]),
        ("line", ["nfc", "control_chars", "missing"]),
        ("paragraph", ["whitespace", "dedup_exact", "dedup_minhash", "lowercase"]),
    ],
)
def test_workers_reading_their_files_write_one_process_output(
    tmp_path: Path, unit: str, clean: list[str]
) -> None:
    corpus = mixed_corpus(tmp_path / "corpus")
    for i in range(3):  # exact copies of small files, for dedup to drop in reading order
        (corpus / f"z{i}.txt").write_bytes((corpus / f"f{i + 1:02d}.txt").read_bytes())
    one = run(corpus, tmp_path / "w1", 1, unit=unit, clean=clean)
    manifest = one["manifest.json"]
    assert [i["sha256"] for i in manifest["inputs"]] == [
        hashlib.sha256(Path(i["path"]).read_bytes()).hexdigest() for i in manifest["inputs"]
    ]
    assert one["cleaning_report.json"]["reader"]["invalid_utf8_records"] > 0
    if "dedup_exact" in clean:
        steps = {step["name"]: step for step in one["cleaning_report.json"]["steps"]}
        assert steps["dedup_exact"]["dropped"] >= 3
    for workers in (2, 3):
        got = run(corpus, tmp_path / f"w{workers}", workers, unit=unit, clean=clean)
        assert got == one, workers


def test_skipped_jsonl_lines_are_reported_in_reading_order(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):  # small files a worker reads, each with bad lines
        lines = [json.dumps({"text": f"document {i}.{k} " * 5}) for k in range(4)]
        lines.insert(1 + i % 3, "not json")
        (corpus / f"p{i:02d}.jsonl").write_text("\n".join(lines) + "\n")
    kw: dict[str, Any] = {"format": "jsonl", "on_error": "skip", "chunk_chars": 600}
    one = run(corpus, tmp_path / "w1", 1, **kw)
    reader = one["cleaning_report.json"]["reader"]
    assert reader["skipped_lines"] == 12
    assert reader["skipped_examples"] == [f"{corpus}/p{i:02d}.jsonl:{2 + i % 3}" for i in range(5)]
    assert run(corpus, tmp_path / "w2", 2, **kw) == one


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(["word ", "Caf\u00e9 ", "\n", "\n\n", "\x00", "x" * 50]),
                max_size=30,
            ).map("".join),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    chunk=st.integers(5, 300),
    workers=st.integers(2, 3),
    unit=st.sampled_from(["file", "line"]),
)
def test_any_mix_of_files_gives_one_process_output(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[tuple[str, bool]],
    chunk: int,
    workers: int,
    unit: str,
) -> None:
    base = tmp_path_factory.mktemp("mix")
    corpus = base / "corpus"
    corpus.mkdir()
    for i, (text, packed) in enumerate(files):
        data = text.encode()
        if packed:
            (corpus / f"{i}.txt.gz").write_bytes(gzip.compress(data))
        else:
            (corpus / f"{i}.txt").write_bytes(data)
    kw: dict[str, Any] = {"unit": unit, "chunk_chars": chunk, "validation": 0.3}
    try:
        one = run(corpus, base / "one", 1, **kw)
    except Exception as exc:  # nothing left to write: the same error from the workers
        with pytest.raises(type(exc), match="no documents left"):
            run(corpus, base / "many", workers, **kw)
        return
    assert run(corpus, base / "many", workers, **kw) == one


def test_a_bad_line_in_a_file_a_worker_reads_is_the_same_one_line_error(tmp_path: Path) -> None:
    from llmkit.errors import UsageError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"p{i}.jsonl").write_text(json.dumps({"text": f"document {i} " * 5}) + "\n")
    with open(corpus / "p2.jsonl", "a") as fh:
        fh.write("not json\n")
    messages = []
    for workers in (1, 2):
        with pytest.raises(UsageError) as caught:
            run(corpus, tmp_path / f"w{workers}", workers, format="jsonl")
        messages.append(str(caught.value))
        assert not list((tmp_path / f"w{workers}").glob("*.bin"))  # nothing half-written kept
    assert messages[0] == messages[1] and f"{corpus}/p2.jsonl:2: not a JSON object" in messages[0]
