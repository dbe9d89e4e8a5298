"""One loader for every tokenizer file llmkit reads, and the train CLI for each type."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.storage.tokenizer_files import load_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Foxes are quick; dogs are lazy.\n" * 20


def test_hf_wordpiece_json_loads_as_wordpiece(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "world": 4, "##s": 5, ",": 6}
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer()
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert type(tok).__name__ == "WordPieceTokenizer"
    for text in ("hello worlds", "Hello, World", "unknownword hello"):
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "byte", "char"])
def test_train_cli_round_trips_through_the_loader(tmp_path: Path, kind: str) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / f"{kind}.json"
    result = CliRunner().invoke(
        cli,
        [
            "tokenizer",
            "train",
            str(corpus),
            "-o",
            str(out),
            "--type",
            kind,
            "--vocab-size",
            "300",
            "--special-token",
            "<|endoftext|>",
            "--min-frequency",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    tok = load_tokenizer(out)
    assert "<|endoftext|>" in tok.special_tokens
    ids = tok.encode("the lazy dog")
    assert ids and all(0 <= i < tok.vocab_size for i in ids)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "absent.json")
