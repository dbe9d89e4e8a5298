"""Hugging Face interop: transformers' own random tiny models <-> llmkit, same logits both ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from llmkit.errors import UsageError
from llmkit.storage.hf import from_hf, load_hf, read_hf_dir, save_hf, to_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

V = 97
TOL = 1e-4


def gpt2() -> Any:
    cfg = transformers.GPT2Config(
        vocab_size=V, n_positions=40, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(cfg)


def llama(kv: int = 2, tied: bool = False, bias: bool = False) -> Any:
    cfg = transformers.LlamaConfig(
        attention_bias=bias,
        mlp_bias=bias,
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg)


def bert_config(**kwargs: Any) -> Any:
    return transformers.BertConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        pad_token_id=0,
        **kwargs,
    )


def logits(out: Any) -> torch.Tensor:
    return out.logits


CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("gpt2", gpt2, "GPT2LMHeadModel"),
    ("llama-gqa", llama, "LlamaForCausalLM"),
    ("llama-mqa-tied", lambda: llama(kv=1, tied=True), "LlamaForCausalLM"),
    ("llama-bias", lambda: llama(bias=True), "LlamaForCausalLM"),
    ("bert-mlm", lambda: transformers.BertForMaskedLM(bert_config()), "BertForMaskedLM"),
]


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(1, V, (2, 13))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding in row 1
    return ids, mask


def perturb(model: Any) -> Any:
    """Random non-trivial values everywhere (HF inits norms to 1 and biases to 0)."""
    torch.manual_seed(42)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("label,make,arch", CASES, ids=[c[0] for c in CASES])
def test_hf_checkpoint_loads_with_same_logits_and_exports_back(
    tmp_path: Path,
    batch: tuple[torch.Tensor, torch.Tensor],
    label: str,
    make: Callable[[], Any],
    arch: str,
) -> None:
    ids, mask = batch
    theirs = perturb(make())
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_hf(tmp_path / "hf")
    with torch.no_grad():
        want = theirs(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() <= TOL

    save_hf(ours, tmp_path / "back")
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["architectures"] == [arch]
    again = getattr(transformers, arch).from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask).logits
    assert (back[real] - want[real]).abs().max() <= TOL


def test_bert_classification_head_round_trip(
    tmp_path: Path, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ids, mask = batch
    types = torch.zeros_like(ids)
    types[:, 6:] = 1  # a second segment
    theirs = perturb(transformers.BertForSequenceClassification(bert_config(num_labels=3)))
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_hf(tmp_path / "hf")
    assert ours.config.n_labels == 3
    with torch.no_grad():
        want = theirs(ids, attention_mask=mask, token_type_ids=types).logits
        got = ours.classify(ids, attention_mask=mask, token_type_ids=types)
        assert (got - want).abs().max() <= TOL
        want = theirs(ids, attention_mask=mask).logits
    save_hf(ours, tmp_path / "back")
    again = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask).logits - want).abs().max() <= TOL


def test_llama_config_is_read_faithfully(tmp_path: Path) -> None:
    llama(kv=1).save_pretrained(tmp_path)
    model = load_hf(tmp_path)
    c = model.config
    assert (c.n_kv_heads, c.rope_theta, c.norm_eps, c.tie_embeddings) == (1, 500.0, 1e-5, False)
    assert (c.position, c.norm, c.mlp, c.bias) == ("rope", "rmsnorm", "swiglu", False)


def test_shape_mismatch_lists_the_tensors(tmp_path: Path) -> None:
    gpt2().save_pretrained(tmp_path)
    config, weights = read_hf_dir(tmp_path)
    config["n_embd"] = 64
    with pytest.raises(
        UsageError, match=r"shape mismatch.*embed.weight: checkpoint \(97, 32\) vs model \(97, 64\)"
    ):
        from_hf(config, weights)


def test_missing_tensors_and_unknown_architectures_are_errors(tmp_path: Path) -> None:
    gpt2().save_pretrained(tmp_path)
    config, weights = read_hf_dir(tmp_path)
    del weights["transformer.h.1.attn.c_attn.weight"]
    with pytest.raises(
        UsageError, match=r"lack 1 tensors, first: transformer\.h\.1\.attn\.c_attn\.weight"
    ):
        from_hf(config, weights)
    with pytest.raises(UsageError, match="model_type 't5' is not supported"):
        from_hf({"model_type": "t5"}, weights)
    with pytest.raises(UsageError, match=r"no config\.json"):
        read_hf_dir(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("make", "layers_field", "extra"),
    [
        (gpt2, "n_layer", "transformer.h.1."),
        (lambda: llama(), "num_hidden_layers", "model.layers.1."),
        (lambda: transformers.BertForMaskedLM(bert_config()), "num_hidden_layers", "layer.1."),
    ],
)
def test_weights_the_config_has_no_place_for_are_an_error(
    make: Callable[[], Any], layers_field: str, extra: str, tmp_path: Path
) -> None:
    make().save_pretrained(tmp_path)
    config, weights = read_hf_dir(tmp_path)
    config[layers_field] = 1  # the file holds two layers; silently dropping one would be wrong
    with pytest.raises(UsageError, match=rf"config has no place for, first: \S*{extra}"):
        from_hf(config, weights, source="x/config.json")


@pytest.mark.parametrize(
    "model",
    ["GPT2Model", "BertModel", "BertForPreTraining", "BertForSequenceClassification"],
)
def test_other_hf_heads_load_without_complaint(model: str, tmp_path: Path) -> None:
    config = (
        bert_config()
        if model.startswith("Bert")
        else transformers.GPT2Config(vocab_size=V, n_positions=40, n_embd=32, n_layer=2, n_head=4)
    )
    getattr(transformers, model)(config).save_pretrained(tmp_path)
    assert isinstance(load_hf(tmp_path), torch.nn.Module)


def test_bad_config_and_weight_files_are_named(tmp_path: Path) -> None:
    gpt2().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "n_head": "four"}))
    with pytest.raises(UsageError, match=rf"^{path}: n_heads: expected an integer, got 'four'"):
        load_hf(tmp_path)
    path.write_text(json.dumps({**good, "n_head": 5}))
    with pytest.raises(UsageError, match=rf"^{path}: d_model=32 is not divisible by n_heads=5"):
        load_hf(tmp_path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "vocab_size"}))
    with pytest.raises(UsageError, match=rf"^{path}: field 'vocab_size' is missing"):
        load_hf(tmp_path)
    path.write_text("{oops")
    with pytest.raises(UsageError, match=rf"^{path}: not valid JSON"):
        load_hf(tmp_path)
    path.write_text(json.dumps(good))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UsageError, match=rf"^{weights}: not a readable safetensors file"):
        load_hf(tmp_path)


def test_an_llmkit_checkpoint_is_not_imported_as_hf(tmp_path: Path) -> None:
    from llmkit.models.gpt import GPT, GPTConfig
    from llmkit.storage.checkpoint import save_model

    save_model(GPT(GPTConfig(vocab_size=V, n_layers=1, n_heads=4, d_model=32)), tmp_path)
    with pytest.raises(UsageError, match="already an llmkit checkpoint; it needs no import"):
        load_hf(tmp_path)


def test_save_hf_replaces_only_its_own_exports(tmp_path: Path) -> None:
    model = load_hf_model(tmp_path)
    save_hf(model, tmp_path / "out")
    save_hf(model, tmp_path / "out")  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    (tmp_path / "out" / "generation_config.json").write_text("{}")
    with pytest.raises(UsageError, match="is not a Hugging Face export of llmkit's"):
        save_hf(model, tmp_path / "out")
    assert (tmp_path / "out" / "generation_config.json").exists()


def load_hf_model(tmp_path: Path) -> torch.nn.Module:
    gpt2().save_pretrained(tmp_path / "src")
    return load_hf(tmp_path / "src")


def test_non_hf_choices_refuse_to_export() -> None:
    import llmkit

    model = llmkit.create(
        "model", "gpt", vocab_size=V, n_layers=1, d_model=32, n_heads=4, position="alibi"
    )
    with pytest.raises(UsageError, match="position='alibi' has no GPT-2 equivalent"):
        to_hf(model)
    windowed = llmkit.create(
        "model",
        "llama",
        vocab_size=V,
        n_layers=1,
        d_model=32,
        n_heads=4,
        n_kv_heads=2,
        attention="sliding_window",
    )
    with pytest.raises(UsageError, match="attention='sliding_window' has no Hugging Face"):
        to_hf(windowed)


def test_bare_gpt2_model_checkpoint_with_legacy_buffers(
    tmp_path: Path, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ids, _ = batch
    lm = perturb(gpt2())
    bare = lm.transformer  # GPT2Model: keys without 'transformer.', no lm_head
    config, _ = to_hf(load_hf_from(lm, tmp_path))
    weights = {k: v.clone() for k, v in bare.state_dict().items()}
    weights["h.0.attn.bias"] = torch.ones(1, 1, 40, 40)  # the causal-mask buffer old files carry
    ours = from_hf({**config, "architectures": ["GPT2Model"]}, weights)
    with torch.no_grad():
        hidden = bare(ids).last_hidden_state
        want = hidden @ bare.wte.weight.T
        assert (ours(ids) - want).abs().max() <= TOL


def load_hf_from(model: Any, path: Path) -> Any:
    model.save_pretrained(path)
    return load_hf(path)


@pytest.mark.parametrize("label,make", [("gpt2", gpt2), ("llama-gqa", llama)])
def test_left_padded_batch_with_position_ids_matches_transformers(
    tmp_path: Path, label: str, make: Callable[[], Any]
) -> None:
    theirs = perturb(make())
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_hf(tmp_path / "hf")
    torch.manual_seed(1)
    ids = torch.randint(1, V, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, :9] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        want = theirs(ids, attention_mask=mask, position_ids=position_ids).logits
        got = ours(ids, attention_mask=mask, position_ids=position_ids)
        last = ours(ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=1)
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() <= TOL
    assert last.shape == (3, 1, V)
    torch.testing.assert_close(last[:, 0], got[:, -1], atol=1e-5, rtol=0)
