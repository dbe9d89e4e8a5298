"""Readers: plain text (units, compression, globs), JSONL, CSV/TSV, parallel text, bad input."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.data.readers import CsvReader, JsonlReader, ParallelReader, TextReader, expand_paths
from llmkit.errors import UsageError


def test_text_reader_reads_directories_recursively_with_compression(
    corpus_dir: Path, docs: list[str]
) -> None:
    reader = llmkit.create("dataset", "text", [str(corpus_dir)])
    texts = sorted(r.text.strip() for r in reader)
    assert texts == sorted(docs)
    assert reader.stats.files == 5 and reader.stats.records == 5


@pytest.mark.parametrize(
    "opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz"), (bz2.open, ".bz2")]
)
def test_compressed_files_open_transparently(tmp_path: Path, opener: object, suffix: str) -> None:
    path = tmp_path / f"a.txt{suffix}"
    with opener(path, "wt", encoding="utf-8") as fh:  # type: ignore[operator]
        fh.write("Grüße aus Köln.\n\nZweiter Absatz.\n")
    paras = [r.text for r in TextReader([str(path)], unit="paragraph")]
    assert paras == ["Grüße aus Köln.", "Zweiter Absatz."]


def test_units_file_paragraph_line(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("line one\nline two\n\n\nline three\n   \nline four\n")
    assert len(list(TextReader([str(path)], unit="file"))) == 1
    paras = list(TextReader([str(path)], unit="paragraph"))
    assert [p.text for p in paras] == ["line one\nline two", "line three", "line four"]
    assert paras[1].source.endswith("a.txt:5")
    lines = [r.text for r in TextReader([str(path)], unit="line")]
    assert lines == ["line one", "line two", "line three", "line four"]


def test_globs_include_exclude(corpus_dir: Path) -> None:
    files = expand_paths([str(corpus_dir / "**" / "*.txt")])
    assert {f.name for f in files} == {"doc0.txt", "doc1.txt", "doc2.txt", "doc4.txt"}
    files = expand_paths([str(corpus_dir)], include=["*.gz"])
    assert [f.name for f in files] == ["doc3.txt.gz"]
    files = expand_paths([str(corpus_dir)], exclude=["*/sub/*"])
    assert "doc4.txt" not in {f.name for f in files}


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        TextReader([str(tmp_path / "nope.txt")])
    with pytest.raises(UsageError, match="matches no files"):
        TextReader([str(tmp_path / "*.md")])


def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xe9 au lait\nok line\n\xff\xfe broken \xef\xbf\xbd kept\n")
    reader = TextReader([str(path)], unit="line")
    texts = [r.text for r in reader]
    assert texts[0] == "caf\ufffd au lait"
    assert texts[2].count("\ufffd") == 3  # two invalid bytes plus one genuine U+FFFD
    assert reader.stats.invalid_utf8 == 3
    assert reader.stats.invalid_utf8_records == 2


def test_jsonl_fields_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"review": "Great film", "stars": 5, "summary": "good"}\n'
        "\n"
        '{"review": null, "stars": 1}\n'
        "{not json}\n"
    )
    reader = JsonlReader([str(path)], field="review", label_field="stars", target_field="summary")
    with pytest.raises(UsageError, match=r"a\.jsonl:4: not a JSON object"):
        list(reader)
    reader = JsonlReader([str(path)], field="review", label_field="stars", on_error="skip")
    recs = list(reader)
    assert [(r.text, r.label) for r in recs] == [("Great film", "5"), (None, "1")]
    assert reader.stats.skipped_lines == 1 and reader.stats.skipped_examples[0].endswith(":4")


def test_jsonl_missing_field_lists_fields(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"body": "x", "id": 1}\n{"body": "y", "id": 2}\n')
    with pytest.raises(UsageError, match=r"no field 'text'.*fields: body, id"):
        list(JsonlReader([str(path)]))


def test_csv_named_columns_quoting_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        'category,text,movie_name\nfresh,"A warm, funny film.\nSecond line.",Up\nrotten,Dull.,X\n'
    )
    recs = list(CsvReader([str(path)], label_column="category"))
    assert [(r.text, r.label) for r in recs] == [
        ("A warm, funny film.\nSecond line.", "fresh"),
        ("Dull.", "rotten"),
    ]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("de\ten\nHallo Welt\tHello world\n")
    recs = list(CsvReader([str(tsv)], text_column="de", target_column="en"))
    assert (recs[0].text, recs[0].target) == ("Hallo Welt", "Hello world")


def test_csv_missing_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("category,review\nfresh,Nice\n")
    with pytest.raises(UsageError, match="no column 'text'; columns: category, review"):
        list(CsvReader([str(path)]))


def test_parallel_files_aligned_and_misaligned(tmp_path: Path) -> None:
    src, tgt = tmp_path / "train.de", tmp_path / "train.en"
    src.write_text("Guten Morgen.\nWie geht es dir?\n")
    tgt.write_text("Good morning.\nHow are you?\n")
    recs = list(ParallelReader(source=[str(src)], target=[str(tgt)]))
    assert [(r.text, r.target) for r in recs] == [
        ("Guten Morgen.", "Good morning."),
        ("Wie geht es dir?", "How are you?"),
    ]
    tgt.write_text("Good morning.\n")
    with pytest.raises(UsageError, match=r"has 2 lines but .* has 1"):
        list(ParallelReader(source=[str(src)], target=[str(tgt)]))


def test_parallel_one_file_with_separator(tmp_path: Path) -> None:
    path = tmp_path / "de-en"
    path.write_text("Haus {n} :: house\n# comment without separator\nBaum :: tree\n")
    reader = ParallelReader(paths=[str(path)], separator=" :: ")
    assert [(r.text, r.target) for r in reader] == [("Haus {n}", "house"), ("Baum", "tree")]
    assert reader.stats.skipped_lines == 1


def test_hf_reader_without_datasets_is_a_clear_error() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        reader = llmkit.create("dataset", "hf", "some/dataset")
        with pytest.raises(UsageError, match="pip install 'llmkit\\[hf\\]'"):
            list(reader)
    else:
        pytest.skip("datasets is installed")


def test_hf_reader_on_a_dataset_like_object() -> None:
    class Rows(list):  # type: ignore[type-arg]
        column_names: ClassVar[list[str]] = ["sentence", "label"]

    rows = Rows([{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}])
    recs = list(llmkit.create("dataset", "hf", dataset=rows, field="sentence", label_field="label"))
    assert [(r.text, r.label) for r in recs] == [("good", "1"), ("bad", "0")]
    with pytest.raises(UsageError, match="no column 'text'"):
        list(llmkit.create("dataset", "hf", dataset=rows))


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_text, _text), min_size=1, max_size=8))
def test_jsonl_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:
    path = tmp_path_factory.mktemp("j") / "a.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8"
    )
    recs = list(JsonlReader([str(path)], label_field="label"))
    assert [(r.text, r.label) for r in recs] == rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_text, _text), min_size=1, max_size=8))
def test_csv_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:
    path = tmp_path_factory.mktemp("c") / "a.csv"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8"))
    recs = list(CsvReader([str(path)], label_column="label"))
    assert [(r.text, r.label) for r in recs] == rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab \n"), max_size=12), max_size=6))
def test_paragraph_reader_matches_a_split_on_blank_lines(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[str]
) -> None:
    text = "\n".join(chunks)
    path = tmp_path_factory.mktemp("p") / "a.txt"
    path.write_text(text)
    got = [r.text for r in TextReader([str(path)], unit="paragraph")]
    paras: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            paras[-1].append(line)
        elif paras[-1]:
            paras.append([])
    expected = ["\n".join(p) for p in paras if p]
    assert got == expected


def test_parallel_dictionary_lines_with_comments_and_subentries(tmp_path: Path) -> None:
    path = tmp_path / "de-en"
    path.write_text(
        "# Version :: devel 2023-01-30\n"
        "Haus {n} | Häuser {pl} :: house | houses\n"
        "Baum {m} | Bäume {pl} :: tree\n"
        "Wie geht's? :: How are you?\n",
        encoding="utf-8",
    )
    reader = ParallelReader(paths=[str(path)], separator=" :: ", comment="#", subentries=" | ")
    recs = list(reader)
    assert [(r.text, r.target) for r in recs] == [
        ("Haus {n}", "house"),
        ("Häuser {pl}", "houses"),
        ("Wie geht's?", "How are you?"),
    ]
    assert recs[1].source.endswith("de-en:2.2")
    assert reader.stats.skipped_lines == 1  # the Baum entry: 2 German sub-entries, 1 English
