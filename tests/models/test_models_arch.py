"""The four architectures: configs, registry, caches, masks, and that they can learn."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import llmkit
from llmkit.errors import UsageError
from llmkit.models import build_model
from llmkit.models.bert import BertConfig
from llmkit.models.gpt import GPTConfig
from llmkit.models.llama import LlamaConfig
from llmkit.models.transformer import TransformerConfig

V = 50
TINY: dict[str, Any] = {"vocab_size": V, "d_model": 32, "n_heads": 4, "max_positions": 64}
TOL = 5e-5


def tiny(name: str, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    layers = (
        {"n_encoder_layers": 2, "n_decoder_layers": 2} if name == "transformer" else {"n_layers": 2}
    )
    return llmkit.create("model", name, **{**TINY, **layers, **kwargs}).eval()


def ids(b: int = 2, t: int = 19, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(0, V, (b, t))


DECODER_CHOICES = [
    ("gpt", {}),
    ("gpt", {"attention": "mha", "position": "alibi", "norm": "rmsnorm"}),
    (
        "gpt",
        {"attention": "sliding_window", "attention_options": {"window": 5}, "position": "rope"},
    ),
    ("gpt", {"attention": "linear", "position": "sinusoidal", "mlp": "swiglu"}),
    ("gpt", {"attention": "mqa", "position": "none"}),
    ("llama", {"n_kv_heads": 2, "d_ff": 48}),
    ("llama", {"attention": "gqa", "n_kv_heads": 1, "d_ff": 48, "tie_embeddings": True}),
]


@pytest.mark.parametrize("name,choices", DECODER_CHOICES)
def test_decoder_cache_decoding_equals_full_forward(name: str, choices: dict[str, Any]) -> None:
    model = tiny(name, **choices)
    x = ids()
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(batch_size=2)
        parts = [model(x[:, :7], cache=cache)]
        parts += [model(x[:, t : t + 1], cache=cache) for t in range(7, x.shape[1])]
    assert full.shape == (2, x.shape[1], V)
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=TOL)


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_decoder_right_padding_does_not_change_real_logits(name: str) -> None:
    model = tiny(name)
    x = ids()
    mask = torch.ones_like(x)
    mask[1, 12:] = 0
    with torch.no_grad():
        padded = model(x, attention_mask=mask)
        alone = model(x[1:, :12])
    assert torch.allclose(padded[1, :12], alone[0], atol=TOL)


def test_bert_padding_and_heads() -> None:
    model = tiny("bert", n_labels=3)
    x = ids()
    mask = torch.ones_like(x)
    mask[1, 10:] = 0
    types = torch.zeros_like(x)
    types[:, 5:] = 1
    with torch.no_grad():
        logits = model(x, attention_mask=mask, token_type_ids=types)
        alone = model(x[1:, :10], token_type_ids=types[1:, :10])
        classes = model.classify(x, attention_mask=mask)
        classes_alone = model.classify(x[1:, :10])
        other_types = model(x, attention_mask=mask)
    assert logits.shape == (2, x.shape[1], V)
    assert torch.allclose(logits[1, :10], alone[0], atol=TOL)
    assert classes.shape == (2, 3)
    assert torch.allclose(classes[1], classes_alone[0], atol=TOL)
    assert not torch.allclose(logits, other_types)  # token types matter
    assert model.mlm_head.weight is model.embed.weight


@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("cross", ["sdpa", "mha", "linear"])
def test_transformer_cached_decoding_and_masks(pre_norm: bool, cross: str) -> None:
    model = tiny("transformer", pre_norm=pre_norm, cross_attention=cross)
    src, tgt = ids(t=11, seed=2), ids(t=9, seed=3)
    src_mask = torch.ones_like(src)
    src_mask[1, 6:] = 0
    with torch.no_grad():
        full = model(src, tgt, src_mask=src_mask)
        memory = model.encode(src, src_mask)
        cache = model.new_cache(batch_size=2)
        parts = [model.decode(tgt[:, :3], memory, src_mask, cache=cache)]
        parts += [
            model.decode(tgt[:, t : t + 1], memory, src_mask, cache=cache) for t in range(3, 9)
        ]
        alone = model(src[1:, :6], tgt[1:])
        # Beam search: duplicate row 1 in the cache and keep decoding.
        cache.reorder(torch.tensor([1, 1]))
        step = model.decode(tgt[[1, 1], :1], memory[[1, 1]], src_mask[[1, 1]], cache=cache)
        want = model(src[[1, 1]], torch.cat([tgt[[1, 1]], tgt[[1, 1], :1]], 1), src_mask[[1, 1]])
    assert full.shape == (2, 9, V)
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=TOL)
    assert torch.allclose(full[1], alone[0], atol=TOL)
    assert torch.allclose(step[:, 0], want[:, -1], atol=TOL)


@pytest.mark.slow
def test_gpt_learns_a_repeating_sequence() -> None:
    model = tiny("gpt").train()
    x = torch.arange(25).remainder(7).repeat(2, 1)  # period-7 pattern
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize(
    "name,kwargs,needle",
    [
        ("gpt", {"d_model": 30}, "d_model=30 is not divisible by n_heads=4"),
        ("llama", {"n_kv_heads": 3}, "n_heads=4 is not a multiple of n_kv_heads=3"),
        ("gpt", {"attention": "flash"}, "attention: unknown attention 'flash'"),
        ("gpt", {"attention": "gqa"}, "attention='gqa' needs n_kv_heads"),
        ("gpt", {"attention": "mqa", "n_kv_heads": 2}, "n_kv_heads=2"),
        ("gpt", {"position": "rotary"}, "position: unknown choice 'rotary'"),
        ("gpt", {"norm": "batchnorm"}, "norm: unknown choice"),
        ("gpt", {"attention": "linear", "position": "alibi"}, "alibi"),
        ("gpt", {"n_layers": 0}, "n_layers=0"),
        ("bert", {"dropout": 1.0}, "dropout"),
        ("transformer", {"cross_attention": "sliding_window"}, "cross_attention"),
        ("gpt", {"attention_options": {"window": 4}}, "attention_options: .*window"),
        ("gpt", {"attention_options": {"causal": False}}, "attention_options: causal come from"),
        ("gpt", {"n_heads": "four"}, "n_heads: expected an integer"),
    ],
)
def test_inconsistent_configs_name_the_fields(
    name: str, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(UsageError, match=needle):
        tiny(name, **kwargs)


@pytest.mark.parametrize("config_cls", [GPTConfig, LlamaConfig, BertConfig, TransformerConfig])
def test_config_dict_round_trip_and_build_model(config_cls: type[Any]) -> None:
    layers = (
        {"n_encoder_layers": 1, "n_decoder_layers": 1}
        if config_cls is TransformerConfig
        else {"n_layers": 1}
    )
    config = config_cls(**TINY, **layers)
    data = config.to_dict()
    assert data["model"] == config_cls.model_name
    assert "attention" in data and "position" in data and "norm" in data and "mlp" in data
    assert config_cls.from_dict(data) == config
    model = build_model(data)
    assert model.config == config
    with pytest.raises(UsageError, match=r"unknown field.*colour"):
        config_cls.from_dict({**data, "colour": "red"})


def test_build_model_errors() -> None:
    with pytest.raises(UsageError, match="'model' field"):
        build_model({"n_layers": 2})
    with pytest.raises(UsageError, match="unknown model 'gtp'; did you mean 'gpt'"):
        build_model({"model": "gtp"})


def test_models_are_registered_and_described() -> None:
    assert {c.name for c in llmkit.components("model")} >= {"gpt", "bert", "transformer", "llama"}
    params = {p.name: p for p in llmkit.describe("model", "llama").params}
    assert params["n_kv_heads"].default == 4
    assert params["attention"].doc.startswith("Attention variant")
    assert "int" in params["d_model"].type


def test_bfloat16_weights_and_autocast_stay_close_to_float32() -> None:
    model = tiny("llama", n_kv_heads=2, d_ff=48)
    x = ids()
    with torch.no_grad():
        want = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(x)
        half = model.to(torch.bfloat16)
        cache = half.new_cache()
        got = torch.cat([half(x[:, :10], cache=cache), half(x[:, 10:], cache=cache)], dim=1)
    assert got.dtype == torch.bfloat16
    scale = want.abs().max()
    assert (autocast.float() - want).abs().max() < 0.05 * scale
    assert (got.float() - want).abs().max() < 0.05 * scale


@pytest.mark.parametrize(
    "attention,options",
    [
        ("mha", {}),
        ("sdpa", {}),
        ("mqa", {}),
        ("gqa", {}),
        ("sliding_window", {"window": 4}),
        ("linear", {"chunk_size": 4}),
    ],
)
def test_every_attention_trains_inside_a_model(attention: str, options: dict[str, int]) -> None:
    kv = {"n_kv_heads": 2} if attention == "gqa" else {}
    model = tiny("gpt", attention=attention, attention_options=options, dropout=0.1, **kv).train()
    x = ids(t=21)  # longer than 2 windows: the blockwise sliding-window path runs
    loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, V), x[:, 1:].reshape(-1))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["gpt", "bert", "transformer"])
def test_gradient_checkpointing_gives_the_same_gradients(name: str) -> None:
    calls = {False: 0, True: 0}

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        model = tiny(name, dropout=0.0, gradient_checkpointing=checkpointing).train()
        # (the MLP may stop early in recomputation, once the tensors backward needs exist)
        attns = [m for n, m in model.named_modules() if n.endswith(".attn")]

        def count(*_: object) -> None:
            calls[checkpointing] += 1

        for attn in attns:
            attn.register_forward_hook(count)
        x = ids(t=12)
        out = model(x, x) if name == "transformer" else model(x)
        out.square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain, recomputed = grads(False), grads(True)
    assert calls[True] == 2 * calls[False]  # every block's forward ran again in backward
    assert len(plain) == len(recomputed) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, recomputed, strict=True))


def test_the_yaml_in_docs_models_builds_the_model_it_describes() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "attention:" in b]
    spec = dict(yaml.safe_load(block)["train"]["model"])
    model = llmkit.create("model", spec.pop("name"), vocab_size=V, **spec)
    assert type(model.blocks[0].attn).__name__ == "SlidingWindowAttention"
    assert model.config.to_dict() | spec == model.config.to_dict()
