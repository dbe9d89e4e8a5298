"""Positions, norms, MLPs and the KV cache checked against their defining formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmkit.errors import UsageError
from llmkit.hookspecs import Register
from llmkit.nn.cache import KVCache
from llmkit.nn.dropout import dropout_layer
from llmkit.nn.mlp import build_mlp
from llmkit.nn.norms import build_norm
from llmkit.nn.positions import alibi_slopes, build_positions, sinusoid_table


def test_rope_scores_depend_only_on_relative_position() -> None:
    rope = build_positions("rope", d_model=16, n_heads=2, max_positions=4)  # grows on demand
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        qi, _ = rope.rotate(q, q, i)
        _, kj = rope.rotate(k, k, j)
        return float((qi * kj).sum())

    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-5)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-6)
    rotated, _ = rope.rotate(q, q, 7)
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-6)


def test_rope_uses_the_half_split_layout() -> None:
    rope = build_positions("rope", d_model=4, n_heads=1, max_positions=8)
    q = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 4)
    out, _ = rope.rotate(q, q, 1)
    # Channel 0 pairs with channel 2 (not 1) and turns by 1 radian at position 1.
    assert out.flatten().tolist() == pytest.approx([math.cos(1), 0, math.sin(1), 0], abs=1e-6)


def test_alibi_slopes_and_bias() -> None:
    assert alibi_slopes(8).tolist() == pytest.approx([2.0 ** -(i + 1) for i in range(8)])
    assert len(alibi_slopes(6)) == 6
    alibi = build_positions("alibi", d_model=8, n_heads=2, max_positions=8)
    bias = alibi.bias(torch.arange(3), torch.arange(3), causal=True)
    assert bias is not None
    assert bias.shape == (2, 3, 3)
    assert bias[0, 2, 0] == pytest.approx(-2 * alibi_slopes(2)[0].item())


def test_sinusoid_table_formula_and_growth() -> None:
    table = sinusoid_table(10, 6)
    pos, i = 7, 2
    assert table[pos, 2 * i] == pytest.approx(math.sin(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert table[pos, 2 * i + 1] == pytest.approx(math.cos(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    sinus = build_positions("sinusoidal", d_model=6, n_heads=1, max_positions=4)
    out = sinus.embed(torch.zeros(1, 10, 6))
    assert torch.allclose(out[0], table, atol=1e-6)


def test_learned_positions_refuse_overlong_input() -> None:
    learned = build_positions("learned", d_model=4, n_heads=1, max_positions=5)
    with pytest.raises(UsageError, match="max_positions is 5"):
        learned.embed(torch.zeros(1, 4, 4), offset=2)
    with pytest.raises(UsageError, match=r"unknown position 'rotary'; available: .*rope"):
        build_positions("rotary", d_model=4, n_heads=1, max_positions=5)


def test_norms_match_formulas() -> None:
    x = torch.randn(3, 8) * 5 + 2
    rms = build_norm("rmsnorm", 8, 1e-6)
    assert torch.allclose(rms(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt(), atol=1e-5)
    ln = build_norm("layernorm", 8, 1e-5)
    assert torch.allclose(ln(x), F.layer_norm(x, (8,), eps=1e-5), atol=1e-6)
    with pytest.raises(UsageError, match="batchnorm"):
        build_norm("batchnorm", 8, 1e-5)


def test_mlps_match_formulas() -> None:
    x = torch.randn(2, 3, 8)
    swiglu = build_mlp("swiglu", 8, 16, bias=False)
    want = swiglu.down(F.silu(swiglu.gate(x)) * swiglu.up(x))
    assert torch.allclose(swiglu(x), want)
    gelu = build_mlp("gelu_tanh", 8, 16, bias=True)
    h = gelu.up(x)
    new_gelu = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    assert torch.allclose(gelu(x), gelu.down(new_gelu), atol=1e-6)
    with pytest.raises(UsageError, match="geglu"):
        build_mlp("geglu", 8, 16, bias=True)


def test_cache_grows_trims_and_reorders() -> None:
    cache = KVCache(2, max_length=2)
    layer = cache[0]
    for t in range(5):
        k = torch.full((2, 1, 1, 1), float(t))
        k[1] += 10
        keys, _ = layer.append(k, k)
    assert keys[0].flatten().tolist() == [0, 1, 2, 3, 4]
    assert cache.length == 5
    layer.keep_last(2)
    assert (layer.start, layer.length) == (3, 5)
    cache.reorder(torch.tensor([1, 0]))
    keys, _ = layer.append(torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1))
    assert keys[0].flatten().tolist() == [13, 14, 0]


@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (2, 3), (1, 64), (3, 40), (0, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_lm_head_equals_linear_in_either_orientation(shape: tuple[int, int], bias: bool) -> None:
    from llmkit.nn.head import LMHead

    torch.manual_seed(0)
    head = LMHead(16, 300, bias=bias)
    x = torch.randn(*shape, 16, requires_grad=True)
    got = head(x)
    want = torch.nn.functional.linear(x, head.weight, head.bias)
    assert got.shape == (*shape, 300) and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if x.numel():
        got.square().sum().backward()
        grad = x.grad
        x.grad = None
        want.square().sum().backward()
        torch.testing.assert_close(grad, x.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_position_ids_give_the_same_as_offsets(name: str) -> None:
    torch.manual_seed(0)
    positions = build_positions(name, d_model=16, n_heads=2, max_positions=16)
    x, q = torch.randn(2, 3, 16), torch.randn(2, 2, 3, 8)
    ids = torch.arange(5, 8).expand(2, 3)
    positions.fit(8)
    torch.testing.assert_close(positions.embed(x, 5), positions.embed(x, 0, ids))
    for a, b in zip(positions.rotate(q, q, 5), positions.rotate(q, q, 0, ids), strict=True):
        torch.testing.assert_close(a, b)


def test_position_ids_past_the_tables() -> None:
    from llmkit.models.gpt import GPT, GPTConfig

    ids = torch.tensor([[1, 2, 3]])
    far = torch.tensor([[30, 31, 32]])
    rope = GPT(
        GPTConfig(vocab_size=11, max_positions=8, n_layers=1, n_heads=2, d_model=8, position="rope")
    ).eval()
    with torch.no_grad():  # RoPE tables grow; relative positions make a shift invisible
        torch.testing.assert_close(rope(ids, position_ids=far), rope(ids), atol=1e-5, rtol=0)
    learned = GPT(GPTConfig(vocab_size=11, max_positions=8, n_layers=1, n_heads=2, d_model=8))
    with pytest.raises(UsageError, match="max_positions is 8"):
        learned(ids, position_ids=far)


def test_dropout_layer_is_free_at_zero_and_drops_in_training() -> None:
    assert isinstance(dropout_layer(0.0), torch.nn.Identity)
    layer = dropout_layer(0.5).train()
    torch.manual_seed(0)
    y = layer(torch.ones(10_000))
    assert set(y.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert 0.45 < float((y == 0).float().mean()) < 0.55
    assert torch.equal(layer.eval()(torch.ones(5)), torch.ones(5))
    for bad in (-0.1, 1.0):
        with pytest.raises(UsageError, match="dropout"):
            dropout_layer(bad)


class _MeanOnlyNorm(torch.nn.Module):
    """Subtract the mean over features (a deliberately odd norm, to be recognisable)."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True) + self.shift


class _SquaredReluMLP(torch.nn.Module):
    """Squared-ReLU MLP (So et al. 2021, Primer)."""

    def __init__(self, d_model: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = torch.nn.Linear(d_model, hidden, bias=bias)
        self.down = torch.nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)) ** 2)


def _parts_plugin() -> object:
    import llmkit
    from llmkit.nn.positions import Positions, RotaryPositions

    class Rope500k(RotaryPositions):
        """RoPE with a base of 500000 whatever the model says (Llama 3's base)."""

        def __init__(self, head_dim: int, **kwargs: object) -> None:
            super().__init__(head_dim, theta=500000.0)

    class Plugin:
        @staticmethod
        @llmkit.hookimpl
        def register_norms(register: Register) -> None:
            register("meanonly", _MeanOnlyNorm)
            register("not_a_module", lambda d_model, eps, bias: d_model)

        @staticmethod
        @llmkit.hookimpl
        def register_mlps(register: Register) -> None:
            register("relu2", _SquaredReluMLP)

        @staticmethod
        @llmkit.hookimpl
        def register_positions(register: Register) -> None:
            register("rope500k", Rope500k)
            register("bare", Positions)

    return Plugin()


def test_plugin_norm_mlp_and_positions_build_into_a_model_by_name() -> None:
    import llmkit

    llmkit.register_plugin(_parts_plugin(), name="parts")
    assert llmkit.get("norm", "meanonly").summary.startswith("Subtract the mean")
    model = llmkit.create(
        "model",
        "gpt",
        vocab_size=20,
        d_model=16,
        n_heads=2,
        n_layers=1,
        max_positions=16,
        norm="meanonly",
        mlp="relu2",
        position="rope500k",
    )
    block = model.blocks[0]
    assert isinstance(block.norm1, _MeanOnlyNorm) and isinstance(block.mlp, _SquaredReluMLP)
    assert model.positions.theta == 500000.0
    assert {"blocks.0.norm1.shift", "blocks.0.mlp.up.weight", "norm.shift"} <= set(
        model.state_dict()
    )
    ids = torch.randint(0, 20, (2, 7))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(batch_size=2)
        steps = torch.cat([model(ids[:, t : t + 1], cache=cache) for t in range(7)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def test_plugin_parts_of_the_wrong_type_and_unknown_names_are_explained() -> None:
    import llmkit

    llmkit.register_plugin(_parts_plugin(), name="parts")
    with pytest.raises(UsageError, match="norm 'not_a_module': its factory returned int, not a"):
        build_norm("not_a_module", 8, 1e-5)
    with pytest.raises(UsageError, match=r"mlp: unknown mlp 'relu_2'; did you mean 'relu2'\?"):
        build_mlp("relu_2", 8, 16, bias=True)
    with pytest.raises(UsageError, match=r"norm: unknown choice 'meanonl'; did you mean"):
        llmkit.create("model", "gpt", vocab_size=20, d_model=16, n_heads=2, norm="meanonl")
    assert type(build_positions("bare", d_model=8, n_heads=2, max_positions=4)).__name__ == (
        "Positions"
    )
