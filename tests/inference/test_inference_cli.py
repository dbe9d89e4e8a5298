"""`llmkit import hf|gguf`, `llmkit export hf` and `llmkit generate`, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from inference_helpers import TEXT, TinyGGUF

from llmkit.cli import cli
from llmkit.inference.generation import encode_prompt, generate_text
from llmkit.storage.checkpoint import load_model
from llmkit.storage.tokenizer_files import load_tokenizer

IDS = torch.tensor([[5, 17, 33, 2, 40, 41, 9, 11], [1, 2, 3, 4, 5, 6, 7, 8]])


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def gguf_ckpt(tiny_gguf: TinyGGUF, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    result = invoke("import", "gguf", tiny_gguf.path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return out


def test_gguf_import_matches_transformers(gguf_ckpt: Path, tiny_gguf: TinyGGUF) -> None:
    model = load_model(gguf_ckpt)
    with torch.no_grad():
        diff = (model(IDS) - tiny_gguf.reference(IDS).logits).abs().max()
    assert diff <= 1e-4


def test_gguf_untied_f32_import(tiny_gguf_f32: TinyGGUF, tmp_path: Path) -> None:
    assert invoke("import", "gguf", tiny_gguf_f32.path, "-o", tmp_path / "c").exit_code == 0
    model = load_model(tmp_path / "c")
    assert model.head.weight is not model.embed.weight
    with torch.no_grad():
        diff = (model(IDS) - tiny_gguf_f32.reference(IDS).logits).abs().max()
    assert diff <= 1e-4


def test_gguf_tokenizer_gives_the_reference_ids(gguf_ckpt: Path, tiny_gguf: TinyGGUF) -> None:
    tok = load_tokenizer(gguf_ckpt)
    samples = [
        TEXT,
        "In 1999  there were 42 cats",
        "x  1",
        "tabs\t\t2",
        "don't   stop\n\n 7",
        "<|im_start|>user\nhi<|im_end|>",
    ]
    for text in samples:
        assert encode_prompt(tok, text) == tiny_gguf.hf_tokenizer.encode(text).ids, text
        assert tok.decode(encode_prompt(tok, text)) == text


def test_generate_streams_what_the_api_generates(gguf_ckpt: Path) -> None:
    model, tok = load_model(gguf_ckpt), load_tokenizer(gguf_ckpt)
    expected = generate_text(model, tok, "The capital of", max_new_tokens=12)
    result = invoke("generate", gguf_ckpt, "-p", "The capital of", "-n", 12)
    assert result.exit_code == 0, result.output
    assert result.output == expected + "\n"
    sampled = [
        invoke("generate", gguf_ckpt, "-p", "The", "-n", 10, "-t", 1.0, "--top-p", 0.9, "--seed", 3)
        for _ in range(2)
    ]
    assert sampled[0].output == sampled[1].output
    chat = invoke("generate", gguf_ckpt, "--chat", "-p", "Hi", "-n", 5, "--stop", "a")
    assert chat.exit_code == 0 and "a" not in chat.output
    piped = CliRunner().invoke(cli, ["generate", str(gguf_ckpt), "-n", "3"], input="The capital")
    assert piped.exit_code == 0


def test_generate_straight_from_a_gguf_file(gguf_ckpt: Path, tiny_gguf: TinyGGUF) -> None:
    from_ckpt = invoke("generate", gguf_ckpt, "--chat", "-p", "The capital of", "-n", 8)
    from_file = invoke("generate", tiny_gguf.path, "--chat", "-p", "The capital of", "-n", 8)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output == from_ckpt.output


def test_hf_import_and_export_round_trip(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4))
    hf.eval().save_pretrained(tmp_path / "hf")
    from inference_helpers import train_tokenizer

    hf_tok = train_tokenizer()
    from tokenizers import pre_tokenizers

    hf_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf_tok.save(str(tmp_path / "hf" / "tokenizer.json"))

    result = invoke("import", "hf", tmp_path / "hf", "-o", tmp_path / "ckpt")
    assert result.exit_code == 0, result.output
    ours = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert (ours(IDS) - hf(IDS).logits).abs().max() <= 1e-4
    tok = load_tokenizer(tmp_path / "ckpt")
    assert tok.encode("the capital of France") == hf_tok.encode("the capital of France").ids

    result = invoke("export", "hf", tmp_path / "ckpt", "-o", tmp_path / "back")
    assert result.exit_code == 0, result.output
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert (again(IDS).logits - hf(IDS).logits).abs().max() <= 1e-4
    assert (tmp_path / "back" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "gguf", "missing.gguf", "-o", "x"], "missing.gguf: GGUF file not found"),
        (["import", "hf", "nowhere", "-o", "x"], "nowhere: not a directory"),
        (["export", "hf", "nowhere", "-o", "x"], "nowhere: checkpoint directory not found"),
        (["generate", "nowhere", "-p", "hi"], "nowhere: checkpoint directory not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {message}")


def test_export_never_destroys_its_source_or_a_users_folder(tmp_path: Path) -> None:
    from llmkit.models.gpt import GPT, GPTConfig
    from llmkit.storage.checkpoint import save_model

    ckpt = tmp_path / "c"
    save_model(GPT(GPTConfig(vocab_size=10, n_layers=1, n_heads=1, d_model=8)), ckpt)
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    result = CliRunner().invoke(cli, ["export", "hf", str(ckpt), "-o", str(ckpt)])
    assert result.exit_code == 2 and "is the checkpoint being exported" in result.output
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"a": 1}')
    result = CliRunner().invoke(cli, ["export", "hf", str(ckpt), "-o", str(mine)])
    assert result.exit_code == 2 and "refusing to replace it" in result.output
    assert (mine / "config.json").read_text() == '{"a": 1}'
    result = CliRunner().invoke(cli, ["import", "hf", str(mine), "-o", str(mine)])
    assert result.exit_code == 2 and (mine / "config.json").read_text() == '{"a": 1}'


def test_generate_rejects_an_unusable_device(gguf_ckpt: Path) -> None:
    devices = ["foo"] if torch.cuda.is_available() else ["foo", "cuda"]
    for device in devices:
        result = CliRunner().invoke(
            cli, ["generate", str(gguf_ckpt), "-p", "hi", "--device", device]
        )
        assert result.exit_code == 2, result.output
        [line] = result.output.strip().splitlines()
        assert f"device '{device}'" in line


def test_generate_needs_a_tokenizer(tmp_path: Path) -> None:
    from llmkit.models.gpt import GPT, GPTConfig
    from llmkit.storage.checkpoint import save_model

    save_model(GPT(GPTConfig(vocab_size=10, n_layers=1, n_heads=1, d_model=8)), tmp_path / "c")
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "c"), "-p", "hi"])
    assert result.exit_code == 2 and "carries no tokenizer" in result.output


def test_cli_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, llmkit.inference.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gguf_checkpoint_exports_to_transformers_llama(
    gguf_ckpt: Path, tiny_gguf: TinyGGUF, tmp_path: Path
) -> None:
    from transformers import LlamaForCausalLM

    result = invoke("export", "hf", gguf_ckpt, "-o", tmp_path / "hf")
    assert result.exit_code == 0, result.output
    again = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert (again(IDS).logits - tiny_gguf.reference(IDS).logits).abs().max() <= 1e-4
    from tokenizers import Tokenizer

    exported = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    text = "In 1999  there were 42 cats"
    assert exported.encode(text).ids == tiny_gguf.hf_tokenizer.encode(text).ids


def test_hf_llama_import_with_smollm_style_tokenizer(tmp_path: Path) -> None:
    import json

    from inference_helpers import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmkit.storage.checkpoint import load_generation_config

    hf_tok = train_tokenizer()  # Sequence[Digits(individual_digits), ByteLevel], as SmolLM2's
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=hf_tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=2,
    )
    hf = LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    hf_tok.save(str(tmp_path / "hf" / "tokenizer.json"))
    template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))

    result = invoke("import", "hf", tmp_path / "hf", "-o", tmp_path / "ckpt")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    with torch.no_grad():
        assert (load_model(tmp_path / "ckpt")(IDS) - hf(IDS).logits).abs().max() <= 1e-4
    tok = load_tokenizer(tmp_path / "ckpt")
    for text in ("In 1999  there were 42 cats", "x  1", "don't   stop\n\n 7"):
        assert tok.encode(text) == hf_tok.encode(text).ids
    gen = load_generation_config(tmp_path / "ckpt")
    assert gen["eos_token_id"] == 2 and gen["chat_template"] == template


def _bpe() -> Any:
    from llmkit.tokenizers.bpe import BPETokenizer

    text = "the cat sat on the mat; the dog sat on the log. " * 20
    return BPETokenizer.train_from_iterator([text], vocab_size=280, special_tokens=["<s>", "</s>"])


def test_generate_uses_beam_search_for_seq2seq_and_on_request(tmp_path: Path) -> None:
    from llmkit.inference.generation import beam_search, encode_prompt
    from llmkit.models import build_model
    from llmkit.storage.checkpoint import save_model

    tok = _bpe()
    bos, eos = tok.special_tokens["<s>"], tok.special_tokens["</s>"]
    torch.manual_seed(0)
    seq2seq = build_model(
        {
            "model": "transformer",
            "vocab_size": tok.vocab_size,
            "n_encoder_layers": 1,
            "n_decoder_layers": 1,
            "n_heads": 2,
            "d_model": 16,
            "dropout": 0.0,
        }
    ).eval()
    save_model(seq2seq, tmp_path / "s2s", tokenizer=tok, generation={"bos_token_id": bos})
    result = invoke("generate", tmp_path / "s2s", "-p", "the cat sat", "-n", 6, "--beams", 3)
    assert result.exit_code == 0, result.output
    ids = encode_prompt(tok, "the cat sat")
    [[best]] = beam_search(seq2seq, [ids], beam_size=3, max_new_tokens=6, bos_token_id=bos)
    assert result.output == tok.decode(best.tokens) + "\n"

    gpt = build_model(
        {"model": "gpt", "vocab_size": tok.vocab_size, "n_layers": 1, "n_heads": 2, "d_model": 16}
    ).eval()
    save_model(gpt, tmp_path / "gpt", tokenizer=tok, generation={"eos_token_id": eos})
    result = invoke("generate", tmp_path / "gpt", "-p", "the dog", "-n", 5, "--beams", 2)
    assert result.exit_code == 0, result.output
    [[best]] = beam_search(
        gpt, [encode_prompt(tok, "the dog")], beam_size=2, max_new_tokens=5, eos_token_id=eos
    )
    assert result.output == tok.decode(best.tokens) + "\n"

    bert = build_model(
        {"model": "bert", "vocab_size": tok.vocab_size, "n_layers": 1, "n_heads": 2, "d_model": 16}
    )
    save_model(bert, tmp_path / "bert", tokenizer=tok)
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "bert"), "-p", "x"])
    assert result.exit_code == 2 and "does not generate" in result.output


def test_generate_many_prompts_in_batches(gguf_ckpt: Path, tmp_path: Path) -> None:
    import json

    prompts = ["The capital of", "In 1999 there were", "x", "don't stop"]
    singles = [invoke("generate", gguf_ckpt, "-p", p, "-n", 10).output[:-1] for p in prompts]
    (tmp_path / "p.txt").write_text("\n".join(prompts[:2]) + "\n\n" + "\n".join(prompts[2:]))
    result = invoke(
        "generate", gguf_ckpt, "--prompts", tmp_path / "p.txt", "-n", 10, "--batch-size", 3
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows == [{"prompt": p, "output": s} for p, s in zip(prompts, singles, strict=True)]

    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts))
    )
    out = tmp_path / "out.jsonl"
    result = invoke("generate", gguf_ckpt, "--prompts", jsonl, "-n", 10, "-o", out)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["output"] for line in out.read_text().splitlines()] == singles


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ('{"prompt": "a"}\n{"text": 1}\n', [], 'p.jsonl:2: expected an object with a "prompt"'),
        ('{"prompt": \n', [], "p.jsonl:1: not valid JSON"),
        ("\n\n", [], "no prompts"),
        ('{"prompt": "a"}\n', ["--beams", "2"], "--prompts replaces -p/--prompt"),
    ],
)
def test_generate_prompts_file_errors(
    gguf_ckpt: Path, tmp_path: Path, content: str, extra: list[str], message: str
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["generate", str(gguf_ckpt), "--prompts", str(path), *extra])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    lone = CliRunner().invoke(
        cli, ["generate", str(gguf_ckpt), "-p", "a", "-o", str(tmp_path / "o")]
    )
    assert lone.exit_code == 2 and "-o/--output goes with --prompts" in lone.output
