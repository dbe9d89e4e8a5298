"""One corpus rule for every trainer: files, globs, directories and compressed files."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from llmkit.errors import UsageError
from llmkit.tokenizers.bpe import BPETokenizer
from llmkit.tokenizers.corpus import expand_corpus
from llmkit.tokenizers.simple import CharTokenizer
from llmkit.tokenizers.wordpiece import WordPieceTokenizer

TEXT = "".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog; café, naïve, 東京 {i % 7}.\n"
    for i in range(400)
)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """The same text as plain, .gz, .bz2 and .xz files, each in its own folder."""
    lines = TEXT.splitlines(keepends=True)
    half = "".join(lines[:200]), "".join(lines[200:])
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text(half[0], encoding="utf-8")
    (tmp_path / "plain" / "b.txt").write_text(half[1], encoding="utf-8")
    (tmp_path / "one.txt").write_text(TEXT, encoding="utf-8")
    for suffix, opener in ((".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)):
        with opener(tmp_path / f"one.txt{suffix}", "wt", encoding="utf-8") as f:
            f.write(TEXT)
    nested = tmp_path / "tree" / "sub"
    nested.mkdir(parents=True)
    (tmp_path / "tree" / "a.txt").write_text(half[0], encoding="utf-8")
    with gzip.open(nested / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(half[1])
    (tmp_path / "tree" / ".hidden").write_text("never read", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_wordpiece_on_compressed_equals_plain(corpus_dir: Path, suffix: str) -> None:
    plain = WordPieceTokenizer.train(corpus_dir / "one.txt", vocab_size=200)
    packed = WordPieceTokenizer.train(corpus_dir / f"one.txt{suffix}", vocab_size=200)
    assert packed.get_vocab() == plain.get_vocab()  # and no invalid UTF-8 warning (an error here)


def test_bpe_on_compressed_equals_plain(corpus_dir: Path) -> None:
    plain = BPETokenizer.train([corpus_dir / "one.txt"], vocab_size=300)
    for suffix in (".gz", ".bz2", ".xz"):
        packed = BPETokenizer.train([corpus_dir / f"one.txt{suffix}"], vocab_size=300)
        assert packed.to_dict() == plain.to_dict()


def test_directory_glob_and_list_agree(corpus_dir: Path) -> None:
    tree = corpus_dir / "tree"
    assert expand_corpus(tree) == [tree / "a.txt", tree / "sub" / "b.txt.gz"]
    assert expand_corpus(str(tree / "**" / "*.txt*")) == expand_corpus(tree)
    files = [corpus_dir / "plain" / "a.txt", corpus_dir / "plain" / "b.txt"]
    wp = [
        WordPieceTokenizer.train(c, vocab_size=200).get_vocab()
        for c in (tree, [tree], files, corpus_dir / "one.txt", iter([TEXT]))
    ]
    assert all(v == wp[0] for v in wp)
    bpe = [
        BPETokenizer.train(c, vocab_size=300).to_dict()
        for c in (tree, [str(tree)], files, [corpus_dir / "one.txt"])
    ]
    assert all(d == bpe[0] for d in bpe)
    chars = CharTokenizer.train(tree, vocab_size=40)
    assert chars.encode("東京") == CharTokenizer.train(iter([TEXT]), vocab_size=40).encode("東京")


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    for train in (
        lambda c: BPETokenizer.train(c, vocab_size=300),
        lambda c: WordPieceTokenizer.train(c, vocab_size=100),
    ):
        with pytest.raises(UsageError, match=r"missing\.txt' not found \(no such file; .*iter"):
            train([missing])
        with pytest.raises(UsageError, match=r"corpus glob .*\*\.md' matches no file"):
            train([str(tmp_path / "*.md")])
        with pytest.raises(UsageError, match="is a directory; pass a glob"):
            train([tmp_path])
    with pytest.raises(UsageError, match=r"^.*missing\.txt: no such file or directory$"):
        expand_corpus([missing], texts_hint=False)


def test_cli_trains_on_gz_and_directory_with_one_line_errors(corpus_dir: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmkit", "tokenizer", "train", *args],
            capture_output=True,
            text=True,
        )

    out = corpus_dir / "wp.json"
    done = cli(str(corpus_dir / "one.txt.gz"), "--type", "wordpiece", "--vocab-size", "200",
               "-o", str(out))  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    expected = WordPieceTokenizer.train(corpus_dir / "one.txt", vocab_size=200)
    assert WordPieceTokenizer.load(out).get_vocab() == expected.get_vocab()
    done = cli(str(corpus_dir / "tree"), "--vocab-size", "300", "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (
        BPETokenizer.load(out).to_dict()
        == BPETokenizer.train([corpus_dir / "one.txt"], vocab_size=300).to_dict()
    )
    done = cli(str(corpus_dir / "nope.txt"), "--type", "wordpiece", "-o", str(out))
    assert done.returncode == 2
    assert done.stderr == f"Error: {corpus_dir / 'nope.txt'}: no such file or directory\n"
