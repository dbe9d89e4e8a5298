"""`llmkit tokenizer train|encode|info`, the registered tokenizer components and the baselines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("cli") / "corpus.txt"
    path.write_text("\n".join(topics[k] for k in sorted(topics)[:25]), encoding="utf-8")
    return path


def test_train_encode_info(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok.json"
    code, stdout, _ = run(
        "tokenizer", "train", str(corpus), "-o", str(out), "--vocab-size", "700",
        "--special-token", "<|endoftext|>", "-q",
    )  # fmt: skip
    assert code == 0, stdout
    assert "700 ids" in stdout
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 700 and tok.special_tokens == {"<|endoftext|>": 0}

    text = "The assert statement, it's 2024!"
    code, stdout, _ = run("tokenizer", "encode", str(out), text)
    assert code == 0
    assert [int(x) for x in stdout.split()] == tok.encode(text)

    code, stdout, _ = run("tokenizer", "encode", str(out), "x<|endoftext|>", "--allow-special")
    assert [int(x) for x in stdout.split()][-1] == 0

    code, stdout, _ = run("tokenizer", "encode", str(out), "Hello world", "--show")
    assert code == 0 and "Ġ" in stdout and "Hello" not in stdout.split()[1:]

    code, stdout, _ = run("tokenizer", "info", str(out), "--file", str(corpus))
    assert code == 0
    assert "vocab size: 700" in stdout and "pattern: gpt2" in stdout
    assert "bytes/token" in stdout


def test_cli_errors_are_one_line(corpus: Path, tmp_path: Path) -> None:
    code, _, stderr = run(
        "tokenizer", "train", str(corpus), "-o", str(tmp_path / "t.json"), "--vocab-size", "100"
    )
    assert code == 2
    assert stderr.startswith("Error: vocab_size 100") and stderr.count("\n") == 1
    code, _, stderr = run("tokenizer", "encode", str(tmp_path / "missing.json"), "x")
    assert code == 2 and "no such tokenizer file" in stderr
    code, _, stderr = run(
        "tokenizer", "train", str(corpus), "-o", str(tmp_path / "t.json"), "--pattern", "[a-"
    )
    assert code == 2 and "regex" in stderr


def test_components_are_registered(corpus: Path, tmp_path: Path) -> None:
    names = {c.name for c in llmkit.components("tokenizer")}
    assert {"bpe", "wordpiece", "byte", "char"} <= names
    byte = llmkit.create("tokenizer", "byte", special_tokens=["<eos>"])
    assert isinstance(byte, ByteTokenizer) and byte.vocab_size == 257
    tok = BPETokenizer.train([corpus], vocab_size=400)
    tok.save(tmp_path / "t.json")
    again = llmkit.create("tokenizer", "bpe", path=str(tmp_path / "t.json"))
    assert again.encode("hello") == tok.encode("hello")
    with pytest.raises(UsageError, match="exactly one"):
        llmkit.create("tokenizer", "bpe")
    for t in (tok, byte, CharTokenizer.train(iter(["abc"]), vocab_size=10)):
        assert isinstance(t, Tokenizer)


def test_import_does_not_load_torch_or_extension() -> None:
    code = (
        "import sys, llmkit.tokenizers, llmkit.tokenizers.cli, llmkit.tokenizers.plugin;"
        "print('torch' in sys.modules, 'llmkit._rust' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_byte_baseline_round_trip(text: str) -> None:
    tok = ByteTokenizer(["<eos>"])
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and tok.decode(ids) == text
    assert tok.encode("a<eos>", allowed_special="all") == [97, 256]


def test_char_baseline(tmp_path: Path) -> None:
    tok = CharTokenizer.train(iter(["hello world", "hello"]), vocab_size=6, special_tokens=["<s>"])
    assert tok.special_tokens == {"<s>": 0, "<unk>": 1}
    ids = tok.encode("hello!")
    assert ids[-1] == 1 and tok.decode(ids[:5]) == "hello"
    assert tok.decode(tok.encode("w")) == "<unk>"
    assert tok.decode(tok.encode("lol")) == "lol"
    tok.save(tmp_path / "c.json")
    assert CharTokenizer.load(tmp_path / "c.json").encode("hello!") == ids
    byte = ByteTokenizer(["<eos>"])
    byte.save(tmp_path / "b.json")
    assert ByteTokenizer.load(tmp_path / "b.json").special_tokens == {"<eos>": 256}
    with pytest.raises(UsageError, match="not 'char'"):
        CharTokenizer.load(tmp_path / "b.json")
