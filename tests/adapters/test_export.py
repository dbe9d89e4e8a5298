"""LoRA exports: `export peft` loads in peft on `export hf --base-only`'s base, `export hf --merge`
loads in transformers, both with llmkit's logits; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import CORPUS, lora_pipeline
from hypothesis import given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.adapters import (
    LowRankUpdate,
    adapter_spec,
    apply_adapter,
    merge_adapter,
    remove_adapter,
)
from llmkit.cli import cli
from llmkit.storage.peft import _stack, export_peft, placements, save_peft


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result.stdout


def refused(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in result.output, result.output
    return error


def trained(tmp: Path, base: Path, targets: str) -> Path:
    """The model/ of a 3-step LoRA run from `base` (its B matrices no longer zero)."""
    corpus = tmp / "corpus.txt"  # the reference's first paragraphs: enough for 3 steps
    corpus.write_text(CORPUS.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    pipeline = tmp / "pipeline.yaml"
    adapter = f"r: 4, alpha: 8, targets: {targets}"
    steps = "optimizer: {name: adamw, lr: 2.0e-2}, max_steps: 3, log_every: 3"
    pipeline.write_text(lora_pipeline(tmp / "run", base, adapter, steps, corpus=corpus))
    invoke("run", str(pipeline))
    return tmp / "run" / "model"


@pytest.fixture(scope="module")
def llama_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory.mktemp("llama"), tiny_llama, "[q, k, v, o, gate, up, down]")


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run on a GPT-2-style GPT: q and v share HF's fused c_attn, o and down its c_proj."""
    tmp = tmp_path_factory.mktemp("gpt")
    torch.manual_seed(0)
    tokenizer = llmkit.create("tokenizer", "byte", special_tokens=["<|endoftext|>"])
    model = llmkit.create(
        "model", "gpt", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4
    )
    llmkit.save_model(model, tmp / "base", tokenizer=tokenizer)
    return trained(tmp, tmp / "base", "[q, v, o, fc1]")


def llmkit_logits(ckpt: Path, ids: torch.Tensor) -> torch.Tensor:
    model = llmkit.load_model(ckpt)
    with torch.no_grad():
        return model(ids)


def peft_logits(base: Path, adapter: Path, ids: torch.Tensor) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    with torch.no_grad():
        return model.eval()(ids).logits


def hf_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(directory).eval()(ids).logits


def check_exports(ckpt: Path, tmp: Path, vocab: int) -> dict[str, object]:
    """Export peft (+ base) and the merged model through the CLI; all three give llmkit's logits."""
    ids = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(1))
    expected = llmkit_logits(ckpt, ids)
    invoke("export", "peft", str(ckpt), "-o", str(tmp / "peft"), "--base", str(tmp / "base"))
    invoke("export", "hf", str(ckpt), "--merge", "-o", str(tmp / "merged"))
    config = json.loads((tmp / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((tmp / "base").absolute())
    assert (peft_logits(tmp / "base", tmp / "peft", ids) - expected).abs().max() <= 1e-4
    assert (hf_logits(tmp / "merged", ids) - expected).abs().max() <= 1e-4
    # The adapter matters: the base alone computes something else.
    assert (hf_logits(tmp / "base", ids) - expected).abs().max() > 1e-3
    return config


def test_llama_lora_exports_to_peft_and_merged(llama_run: Path, tmp_path: Path) -> None:
    config = check_exports(llama_run, tmp_path, 256)
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["fan_in_fan_out"]) == (4, 8.0, False)
    assert config["target_modules"] == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert config["rank_pattern"] == {} and config["use_dora"] is False
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    assert len(tensors) == 2 * 7 * 2
    a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"]
    assert a.shape == (4, 32) and b.shape == (16, 4)  # k: 2 kv heads of 8


def test_gpt2_lora_exports_with_fused_qkv_and_conv1d(gpt_run: Path, tmp_path: Path) -> None:
    config = check_exports(gpt_run, tmp_path, 256)
    # q and v share c_attn: one update of rank 2r (k's rows of B stay zero), alpha doubled.
    assert config["fan_in_fan_out"] is True
    # c_proj is attn.c_proj (o, adapted) and mlp.c_proj (down, not): named in full.
    assert config["target_modules"] == [
        "c_attn",
        "c_fc",
        "transformer.h.0.attn.c_proj",
        "transformer.h.1.attn.c_proj",
    ]
    assert config["rank_pattern"] == {"c_attn": 8} and config["alpha_pattern"] == {"c_attn": 16.0}
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    b = tensors["base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"]
    assert b.shape == (96, 8) and b[32:64].abs().sum() == 0 and b[:32, :4].abs().sum() > 0


def test_python_api_round_trip(llama_run: Path, tmp_path: Path) -> None:
    model = llmkit.load_model(llama_run)
    spec = adapter_spec(model)
    config = save_peft(model, tmp_path / "peft")
    assert config["base_model_name_or_path"] is None and adapter_spec(model) == spec
    base = remove_adapter(llmkit.load_model(llama_run))
    plain = llmkit.load_model(llama_run)
    for key, value in base.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[key], value, rtol=0, atol=0)
    merged = merge_adapter(llmkit.load_model(llama_run))
    assert not any(".lora_" in k for k in merged.state_dict())
    # A second export over the first replaces it (an earlier export of ours).
    assert export_peft(llama_run, tmp_path / "peft")["r"] == 4


def test_bad_export_input_is_one_line_exit_2(
    llama_run: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    error = refused("export", "hf", str(llama_run), "-o", out)
    assert "holds a lora adapter" in error and "--merge" in error and "export peft" in error
    error = refused("export", "hf", str(tiny_llama), "--merge", "-o", out)
    assert str(tiny_llama) in error and "holds no adapter" in error and "--merge" in error
    error = refused("export", "hf", str(tiny_llama), "--base-only", "-o", out)
    assert "holds no adapter" in error and "--base-only" in error
    error = refused("export", "peft", str(tiny_llama), "-o", out)
    assert str(tiny_llama) in error and "holds no adapter" in error and "export hf" in error
    error = refused("export", "hf", str(llama_run), "--merge", "--base-only", "-o", out)
    assert "exclude each other" in error
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    for args in (["hf", "--merge"], ["peft"]):
        cmd = [*args[:1], str(llama_run), *args[1:], "-o", str(taken)]
        error = refused("export", *cmd)
        assert str(taken) in error and "not empty" in error
    error = refused("export", "peft", str(llama_run), "-o", out, "--base", str(taken))
    assert str(taken) in error and "not empty" in error
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_peft_export_refuses_a_classification_head(tmp_path: Path) -> None:
    tokenizer = llmkit.create("tokenizer", "byte", special_tokens=["<|endoftext|>"])
    model = llmkit.create(
        "model",
        "llama",
        vocab_size=257,
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        n_labels=3,
    )
    model = apply_adapter(model, {"name": "lora", "r": 2, "targets": ["q", "v"]})
    llmkit.save_model(model, tmp_path / "ckpt", tokenizer=tokenizer)
    error = refused("export", "peft", str(tmp_path / "ckpt"), "-o", str(tmp_path / "out"))
    assert "task head (score)" in error and str(tmp_path / "ckpt") in error
    assert not (tmp_path / "out").exists()


def test_save_hf_refuses_a_model_with_an_adapter(tiny_llama: Path, tmp_path: Path) -> None:
    from llmkit.storage.hf import save_hf

    model = apply_adapter(llmkit.load_model(tiny_llama), {"name": "lora", "r": 2})
    with pytest.raises(llmkit.UsageError, match="holds a lora adapter; fold it in first"):
        save_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


class _Weights:
    """The two things a layout's state_dict_to_hf reads of a model: config and state_dict()."""

    config = None

    def __init__(self, out_features: int, in_features: int) -> None:
        self.state = {
            "lin.weight": torch.zeros(out_features, in_features),
            "norm.weight": torch.zeros(in_features),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_row_layout_is_traced_and_the_updates_follow_it(data: st.DataObject) -> None:
    """A layout that permutes an adapted weight's rows, splits them into modules and maybe stores
    them transposed: the traced rows are the permuted ones, and each module's stacked A and
    block-diagonal B give the llmkit update of exactly those rows."""
    # in_features >= 2: a one-column weight reads the same stored (in, out) or (out, in)
    out_features, in_features = data.draw(st.integers(2, 12)), data.draw(st.integers(2, 6))
    perm = data.draw(st.permutations(range(out_features)))
    cuts = sorted(data.draw(st.sets(st.integers(1, out_features - 1), max_size=3)))
    transpose = data.draw(st.booleans())

    class Layout:
        @staticmethod
        def state_dict_to_hf(model: _Weights) -> dict[str, torch.Tensor]:
            weights = model.state_dict()
            parts = torch.tensor_split(weights["lin.weight"][list(perm)], cuts)
            out = {
                f"m.{i}.weight": (p.t() if transpose else p).contiguous()
                for i, p in enumerate(parts)
            }
            return out | {"norm.weight": weights["norm.weight"]}

    where, modules = placements(_Weights(out_features, in_features), Layout, ["lin"])  # type: ignore[arg-type]
    assert modules == [*(f"m.{i}" for i in range(len(cuts) + 1)), "norm"]
    chunks = torch.tensor_split(torch.tensor(perm), cuts)
    assert [p.module for p in where["lin"]] == modules[:-1]
    for place, chunk in zip(where["lin"], chunks, strict=True):
        assert place.rows.tolist() == chunk.tolist() and place.transposed == transpose
    split = data.draw(st.integers(1, out_features - 1))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    updates = [
        LowRankUpdate(
            "lin",
            name,
            start,
            stop,
            torch.randn(rank, in_features, generator=gen),
            torch.randn(stop - start, rank, generator=gen),
            scale,
        )
        for name, start, stop, rank, scale in (
            ("q", 0, split, 2, 0.5),
            ("v", split, out_features, 3, 2.0),
        )
    ]
    delta = torch.cat([(u.b @ u.a) * u.scale for u in updates])
    for place in where["lin"]:
        a, b, scale = _stack(updates, place.rows)
        assert a is not None
        torch.testing.assert_close((b @ a) * scale, delta[place.rows], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_smollm2_lora_exports_load_in_peft_and_transformers(smollm2: Path, tmp_path: Path) -> None:
    import copy

    from llmkit.storage.gguf import import_gguf
    from llmkit.storage.hf import save_hf

    model, _, _ = import_gguf(smollm2)
    targets = ["q", "k", "v", "o", "down"]
    torch.manual_seed(0)
    model = apply_adapter(model, {"name": "lora", "r": 4, "alpha": 8, "targets": targets})
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.02)
    ids = torch.randint(0, 49152, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.eval()(ids)
    config = save_peft(model, tmp_path / "peft")
    assert config["target_modules"] == ["down_proj", "k_proj", "o_proj", "q_proj", "v_proj"]
    merged = merge_adapter(copy.deepcopy(model))
    with torch.no_grad():
        merged_logits = merged(ids)
    save_hf(merged, tmp_path / "merged")
    del merged
    save_hf(remove_adapter(model), tmp_path / "base")
    del model
    assert (peft_logits(tmp_path / "base", tmp_path / "peft", ids) - expected).abs().max() <= 1e-4
    assert (hf_logits(tmp_path / "merged", ids) - merged_logits).abs().max() <= 1e-4
    # Folding B A into W rounds W + scale B A to float32 once per weight; through 30 layers that
    # moves logits of size ~30 by up to ~1e-4 (measured 8e-5), the float32 floor of any merge.
    assert (merged_logits - expected).abs().max() <= 2e-4
