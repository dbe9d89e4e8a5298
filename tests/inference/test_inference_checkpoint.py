"""llmkit checkpoints: round trips for every architecture, tied weights, tokenizer, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from llmkit.errors import UsageError
from llmkit.storage.checkpoint import load_generation_config, load_model, save_model
from llmkit.storage.tokenizer_files import load_tokenizer


def build(name: str) -> torch.nn.Module:
    from llmkit.models import build_model

    torch.manual_seed(0)
    common: dict[str, Any] = {"vocab_size": 50, "max_positions": 32, "n_heads": 2, "d_model": 16}
    extra: dict[str, dict[str, Any]] = {
        "gpt": {"n_layers": 2},
        "llama": {"n_layers": 2, "n_kv_heads": 1, "d_ff": 24},
        "bert": {"n_layers": 2},
        "transformer": {"n_encoder_layers": 1, "n_decoder_layers": 1, "dropout": 0.0},
    }
    return build_model({"model": name, **common, **extra[name]}).eval()


def run(model: torch.nn.Module, name: str) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 7, 9, 3], [4, 4, 2, 8, 1]])
    with torch.no_grad():
        return model(ids, ids) if name == "transformer" else model(ids)


def small_tokenizer() -> Any:
    from llmkit.tokenizers.bpe import BPETokenizer

    text = "the cat sat on the mat; the dog sat on the log. " * 20
    return BPETokenizer.train_from_iterator(
        [text], vocab_size=280, special_tokens=["<|endoftext|>"]
    )


@pytest.mark.parametrize("name", ["gpt", "llama", "bert", "transformer"])
def test_round_trip_gives_identical_logits(name: str, tmp_path: Path) -> None:
    model = build(name)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert type(loaded) is type(model) and not loaded.training
    assert torch.equal(run(loaded, name), run(model, name))
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model"] == name and config["format"] == 1 and "llmkit_version" in config
    assert not list(tmp_path.glob(".ckpt*"))  # no temp dir left behind


def test_tied_weights_are_stored_once_and_tied_again(tmp_path: Path) -> None:
    model = build("gpt")
    assert model.head.weight is model.embed.weight
    save_model(model, tmp_path / "ckpt")
    stored = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert ("head.weight" in stored) != ("embed.weight" in stored)
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.head.weight is loaded.embed.weight


def test_dtype_and_device(tmp_path: Path) -> None:
    save_model(build("llama"), tmp_path / "ckpt")
    half = load_model(tmp_path / "ckpt", device="cpu", dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with pytest.raises(UsageError, match="dtype"):
        load_model(tmp_path / "ckpt", dtype="float8")


def test_tokenizer_and_generation_settings_travel(tmp_path: Path) -> None:
    tok = small_tokenizer()
    save_model(build("gpt"), tmp_path / "ckpt", tokenizer=tok, generation={"eos_token_id": 0})
    again = load_tokenizer(tmp_path / "ckpt")
    text = "the dog sat on the cat<|endoftext|>"
    assert again.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert load_generation_config(tmp_path / "ckpt") == {"eos_token_id": 0}
    save_model(build("gpt"), tmp_path / "bare")
    with pytest.raises(UsageError, match="carries no tokenizer"):
        load_tokenizer(tmp_path / "bare")


def test_one_load_tokenizer_reads_every_kind_of_spec(tmp_path: Path) -> None:
    tok = small_tokenizer()
    save_model(build("gpt"), tmp_path / "ckpt", tokenizer=tok)
    tok.save(tmp_path / "tok.json")
    text = "the dog sat on the cat"
    assert load_tokenizer(tmp_path / "ckpt").encode(text) == tok.encode(text)
    assert load_tokenizer(str(tmp_path / "tok.json")).encode(text) == tok.encode(text)
    assert type(load_tokenizer("byte")).__name__ == "ByteTokenizer"
    with pytest.raises(UsageError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "absent.json")
    with pytest.raises(UsageError, match="unknown tokenizer 'bytes'"):
        load_tokenizer("bytes")
    (tmp_path / "broken.json").write_text("{oops")
    with pytest.raises(UsageError, match=r"broken\.json: not a tokenizer JSON file"):
        load_tokenizer(tmp_path / "broken.json")


def test_overwrite_replaces_a_checkpoint_but_not_other_dirs(tmp_path: Path) -> None:
    save_model(build("gpt"), tmp_path / "ckpt")
    llama = build("llama")
    save_model(llama, tmp_path / "ckpt")
    assert type(load_model(tmp_path / "ckpt")).__name__ == "Llama"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="not an llmkit checkpoint"):
        save_model(llama, other)
    assert (other / "cat.jpg").exists()


def test_only_an_llmkit_checkpoint_and_nothing_else_is_replaced(tmp_path: Path) -> None:
    gpt = build("gpt")
    hf_like = tmp_path / "hf"  # a config.json alone does not make a folder ours to delete
    hf_like.mkdir()
    (hf_like / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (hf_like / "vocab.txt").write_text("keep")
    with pytest.raises(UsageError, match=r"hf: directory is not empty and is not an llmkit"):
        save_model(gpt, hf_like)
    assert sorted(p.name for p in hf_like.iterdir()) == ["config.json", "vocab.txt"]
    save_model(gpt, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "notes.md").write_text("mine")  # a user's file inside a checkpoint
    with pytest.raises(UsageError, match="not an llmkit checkpoint"):
        save_model(gpt, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "notes.md").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        save_model(gpt, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    save_model(gpt, tmp_path / "empty")
    assert type(load_model(tmp_path / "empty")).__name__ == "GPT"


def test_config_errors_name_the_checkpoint_file(tmp_path: Path) -> None:
    save_model(build("gpt"), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    config = json.loads(path.read_text())
    for change, message in [
        ({"d_model": 15}, "d_model=15 is not divisible by n_heads=2"),
        ({"n_heads": "four"}, "n_heads: expected an integer, got 'four'"),
        ({"attention": "gqq"}, "gqq"),
    ]:
        path.write_text(json.dumps({**config, **change}))
        with pytest.raises(UsageError) as err:
            load_model(tmp_path / "ckpt", verify=False)  # edited on purpose
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_failed_save_leaves_nothing(tmp_path: Path) -> None:
    class Broken:
        def save(self, path: Path) -> None:
            Path(path).write_text("half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(build("gpt"), tmp_path / "ckpt", tokenizer=Broken())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"config\.json: missing"):
        load_model(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_model(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UsageError, match="llmkit import hf"):
        load_model(bad)
    (bad / "config.json").write_text(json.dumps({"model": "gpt5"}))
    with pytest.raises(UsageError, match=r"model\.safetensors: missing"):
        load_model(bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UsageError, match="not a readable safetensors"):
        load_model(bad)


def test_unknown_model_and_shape_mismatch(tmp_path: Path) -> None:
    save_model(build("gpt"), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "model": "gpt5"}))
    with pytest.raises(UsageError, match="gpt5"):
        load_model(tmp_path / "ckpt", verify=False)  # edited on purpose
    path.write_text(json.dumps({**config, "vocab_size": 60, "d_model": 32}))
    with pytest.raises(
        UsageError, match=r"shape mismatch.*checkpoint \(50, 16\) vs model \(60, 32\)"
    ):
        load_model(tmp_path / "ckpt", verify=False)  # edited on purpose
    path.write_text(json.dumps({**config, "n_layers": 3}))
    with pytest.raises(UsageError, match=r"missing blocks\.2\."):
        load_model(tmp_path / "ckpt", verify=False)  # edited on purpose


def test_llmkit_lazy_attributes(tmp_path: Path) -> None:
    import llmkit

    llmkit.save_model(build("gpt"), tmp_path / "ckpt")
    assert isinstance(llmkit.load_model(tmp_path / "ckpt"), torch.nn.Module)
