"""Attention variants against the plain-math `mha` reference and their own defining formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import llmkit
from llmkit.errors import UsageError
from llmkit.nn.attention import Attention, repeat_kv
from llmkit.nn.cache import KVCache
from llmkit.nn.positions import build_positions

B, T, D, H = 2, 37, 32, 4
TOL = 2e-5


def make(name: str, **kwargs: object) -> Attention:
    torch.manual_seed(0)
    return llmkit.create("attention", name, d_model=D, n_heads=H, **kwargs).eval()


def reference_like(module: Attention, **kwargs: object) -> Attention:
    """The `mha` reference holding exactly the weights of `module`."""
    ref = make("mha", n_kv_heads=module.n_kv_heads, causal=module.causal, **kwargs)
    ref.load_state_dict(module.state_dict())
    return ref


def padding(lengths: list[int], total: int) -> torch.Tensor:
    return (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(B, T, D)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "name,kwargs",
    [("sdpa", {}), ("mqa", {}), ("gqa", {"n_kv_heads": 2}), ("sdpa", {"n_kv_heads": 1})],
)
def test_softmax_variants_match_reference(
    x: torch.Tensor, name: str, kwargs: dict[str, int], causal: bool
) -> None:
    module = make(name, causal=causal, **kwargs)
    ref = reference_like(module)
    mask = padding([T, 20], T)
    with torch.no_grad():
        assert torch.allclose(module(x), ref(x), atol=TOL)
        got, want = module(x, attention_mask=mask), ref(x, attention_mask=mask)
    assert torch.allclose(got[:, :20], want[:, :20], atol=TOL)


def test_mha_is_the_textbook_formula(x: torch.Tensor) -> None:
    module = make("mha", causal=True)
    q, k, v = module.qkv(x).split(D, dim=-1)
    q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
    with torch.no_grad():
        assert torch.allclose(module(x), module.out(y), atol=TOL)


def test_padding_mask_hides_padded_keys(x: torch.Tensor) -> None:
    module = make("sdpa")
    mask = padding([T, 25], T)
    with torch.no_grad():
        full = module(x, attention_mask=mask)
        short = module(x[1:, :25])
        changed = x.clone()
        changed[1, 25:] = 100.0
        again = module(changed, attention_mask=mask)
    assert torch.allclose(full[1, :25], short[0], atol=TOL)
    assert torch.allclose(full[1, :25], again[1, :25], atol=TOL)
    assert torch.isfinite(module(x, attention_mask=torch.zeros(B, T))).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 5, 16])
def test_sliding_window_is_masked_reference(x: torch.Tensor, causal: bool, window: int) -> None:
    module = make("sliding_window", causal=causal, window=window)
    ref = reference_like(module)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    local = (i - j < window) & (j <= i) if causal else (i - j).abs() < window
    pad = padding([T, 30], T).bool()
    explicit = local[None, None] & pad[:, None, None, :]  # (B, 1, T, T)
    with torch.no_grad():
        got = module(x, attention_mask=padding([T, 30], T))
        want = ref(x, attention_mask=explicit)
    assert torch.allclose(got[:, :30], want[:, :30], atol=TOL)


def test_sliding_window_blockwise_path_equals_masked_path(x: torch.Tensor) -> None:
    module = make("sliding_window", causal=True, window=4)  # T > 2 * window: blockwise
    assert 2 * module.window < T
    alibi = build_positions("alibi", d_model=D, n_heads=H, max_positions=64)
    with torch.no_grad():
        blockwise = module(x, positions=alibi)
        masked = module.__class__.__mro__[1].attend  # SDPAttention.attend: the masked path
        q, k, v = module._project(x, None, None)
        pos = torch.arange(T)
        y = masked(module, q, k, v, pos, None, None, alibi)
        assert torch.allclose(blockwise, module.out(y.transpose(1, 2).reshape(B, T, D)), atol=TOL)


def linear_formula(
    module: Attention, x: torch.Tensor, causal: bool, keep: torch.Tensor
) -> torch.Tensor:
    """out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j) over allowed j, quadratically."""
    q, k, v = module.qkv(x).split(D, dim=-1)
    q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    a = phi_q @ phi_k.transpose(-1, -2)  # (B, H, T, T)
    allowed = keep.bool()[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(T, T).tril().bool()
    a = a * allowed
    y = (a @ v) / a.sum(-1, keepdim=True)
    return module.out(y.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 8, 64])
def test_linear_attention_matches_its_formula(x: torch.Tensor, causal: bool, chunk: int) -> None:
    module = make("linear", causal=causal, chunk_size=chunk)
    mask = padding([T, 29], T)
    with torch.no_grad():
        got = module(x, attention_mask=mask)
        want = linear_formula(module, x, causal, mask)
    assert torch.allclose(got[:, :29], want[:, :29], atol=1e-4)


VARIANTS = [
    ("mha", {}),
    ("sdpa", {}),
    ("mqa", {}),
    ("gqa", {"n_kv_heads": 2}),
    ("sliding_window", {"window": 6}),
    ("linear", {"chunk_size": 8}),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS)
@pytest.mark.parametrize("position", ["none", "rope", "alibi"])
def test_incremental_decoding_equals_full_forward(
    x: torch.Tensor, name: str, kwargs: dict[str, int], position: str
) -> None:
    if name == "linear" and position == "alibi":
        pytest.skip("ALiBi is not defined for linear attention")
    module = make(name, causal=True, **kwargs)
    positions = build_positions(position, d_model=D, n_heads=H, max_positions=64)
    mask = padding([T, T - 3], T)
    mask[1, :4] = 0  # left padding too
    with torch.no_grad():
        full = module(x, attention_mask=mask, positions=positions)
        cache = KVCache(1, max_length=8)  # small: buffers must grow
        steps = [
            module(x[:, :13], attention_mask=mask[:, :13], cache=cache[0], positions=positions)
        ]
        for t in range(13, T):
            m = mask[:, : t + 1]
            steps.append(
                module(x[:, t : t + 1], attention_mask=m, cache=cache[0], positions=positions)
            )
    assert cache.length == T
    real = mask.bool()  # outputs at padded query positions are meaningless
    assert torch.allclose(torch.cat(steps, dim=1)[real], full[real], atol=TOL)


@pytest.mark.parametrize("name", ["mha", "sdpa", "gqa", "linear"])
def test_cross_attention_with_cached_memory(x: torch.Tensor, name: str) -> None:
    kwargs = {"n_kv_heads": 2} if name == "gqa" else {}
    module = make(name, cross=True, d_context=16, **kwargs)
    memory = torch.randn(B, 11, 16)
    mem_mask = padding([11, 7], 11)
    with torch.no_grad():
        full = module(x, memory, attention_mask=mem_mask)
        cache = KVCache(1, cross=True)
        first = module(x[:, :5], memory, attention_mask=mem_mask, cache=cache.cross[0])
        rest = module(x[:, 5:], None, attention_mask=mem_mask, cache=cache.cross[0])
        short = module(x[1:], memory[1:, :7])
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=TOL)
    assert torch.allclose(full[1], short[0], atol=TOL)
    if name in ("sdpa", "gqa"):
        ref = reference_like(module, cross=True, d_context=16)
        with torch.no_grad():
            assert torch.allclose(ref(x, memory, attention_mask=mem_mask), full, atol=TOL)


def test_dropout_only_in_training(x: torch.Tensor) -> None:
    module = make("sdpa", causal=True, dropout=0.5)
    with torch.no_grad():
        assert torch.equal(module(x), module(x))
        module.train()
        assert not torch.allclose(module(x), module(x))


def test_cache_reorder_selects_rows(x: torch.Tensor) -> None:
    module = make("sdpa", causal=True)
    with torch.no_grad():
        cache = KVCache(1)
        module(x[:, :10], cache=cache[0])
        cache.reorder(torch.tensor([1, 1]))
        y = module(x[[1, 1], 10:11], cache=cache[0])
        want = module(x[[1, 1], :11])[:, -1:]
    assert torch.allclose(y, want, atol=TOL)


def test_repeat_kv_groups_consecutive_query_heads() -> None:
    kv = torch.arange(2.0).view(1, 2, 1, 1)  # two kv heads
    assert repeat_kv(kv, 6).flatten().tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"d_model": 30, "n_heads": 4}, "d_model=30 is not divisible by n_heads=4"),
        ({"n_kv_heads": 3}, "n_heads=4 is not a multiple of n_kv_heads=3"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_shapes_name_the_fields(kwargs: dict[str, int], needle: str) -> None:
    args = {"d_model": D, "n_heads": H, **kwargs}
    with pytest.raises(UsageError, match=needle):
        llmkit.create("attention", "sdpa", **args)


def test_variant_specific_errors() -> None:
    with pytest.raises(UsageError, match="n_kv_heads"):
        llmkit.create("attention", "gqa", d_model=D, n_heads=H)
    with pytest.raises(UsageError, match="mqa"):
        llmkit.create("attention", "mqa", d_model=D, n_heads=H, n_kv_heads=2)
    with pytest.raises(UsageError, match="window"):
        llmkit.create("attention", "sliding_window", d_model=D, n_heads=H, window=0)
    with pytest.raises(UsageError, match="did you mean 'gqa'"):
        llmkit.create("attention", "gqq", d_model=D, n_heads=H)
    alibi = build_positions("alibi", d_model=D, n_heads=H, max_positions=8)
    with pytest.raises(UsageError, match="ALiBi"):
        make("linear", causal=True)(torch.randn(1, 3, D), positions=alibi)


def test_every_variant_is_registered_with_a_summary() -> None:
    names = {c.name: c.summary for c in llmkit.components("attention")}
    for name, _ in VARIANTS:
        assert names[name]


def test_fp16_reference_keeps_a_padded_batch_finite() -> None:
    """Masked fp16 scores are added in fp32: the dtype's minimum plus a negative logit would
    overflow to -inf, a padding query's row would turn NaN, and the next layer would spread it."""
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "gpt", vocab_size=16, n_layers=2, d_model=32, n_heads=4, attention="mha"
    ).eval()
    with torch.no_grad():
        model.blocks[0].attn.qkv.bias[:64] = 8.0  # q.k about -25 per head once k is negated
        model.blocks[0].attn.qkv.bias[32:64] *= -1
    model = model.half()
    ids, mask = torch.tensor([[0, 0, 5, 6, 7]]), torch.tensor([[0, 0, 1, 1, 1]])
    with torch.no_grad():
        padded = model(ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0))
        alone = model(ids[:, 2:])
    assert torch.isfinite(padded).all()
    assert (padded[:, 2:].float() - alone.float()).abs().max() < 5e-2


class QuietSDPA(llmkit.nn.attention.SDPAttention):
    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        zero = scores.new_zeros((*scores.shape[:-1], 1))
        return torch.softmax(torch.cat([scores, zero], dim=-1), dim=-1)[..., :-1]


def test_an_sdpa_subclass_normalize_is_used(x: torch.Tensor) -> None:
    quiet, plain = QuietSDPA(D, H, causal=True).eval(), make("sdpa", causal=True)
    plain.load_state_dict(quiet.state_dict())
    with torch.no_grad():
        got, base = quiet(x), plain(x)
        ref = Attention.kernel  # the plain math calls normalize: compute the expectation with it
        q, k, v = quiet._project(x, None, None)
        want = ref(quiet, q, k, v, None, is_causal=True).transpose(1, 2).reshape(B, T, D)
        want = quiet.out(want)
    assert not torch.allclose(got, base, atol=1e-3)
    assert torch.allclose(got, want, atol=TOL)


def test_sliding_window_subclass_hooks_run_on_the_blockwise_path(x: torch.Tensor) -> None:
    from llmkit.nn.attention import SlidingWindowAttention

    class Zero(SlidingWindowAttention):
        def kernel(self, q, k, v, mask, is_causal):  # type: ignore[no-untyped-def]
            return torch.zeros_like(q)

    class Wider(SlidingWindowAttention):
        def window_mask(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
            return ((q_pos[:, None] - k_pos[None, :]) < 2 * self.window)[None, None]

    window = 3  # T = 37 > 2 * window: the blockwise path
    zero = Zero(D, H, causal=True, window=window).eval()
    with torch.no_grad():
        assert torch.equal(zero(x), zero.out(torch.zeros(B, T, D)))
    wider = Wider(D, H, causal=True, window=window).eval()
    same = make("sliding_window", causal=True, window=2 * window)
    same.load_state_dict(wider.state_dict())
    with torch.no_grad():
        assert torch.allclose(wider(x), same(x), atol=TOL)


def test_a_float_4d_mask_is_refused(x: torch.Tensor) -> None:
    additive = torch.zeros(B, 1, T, T)
    with pytest.raises(UsageError, match="4-D attention_mask must be boolean"):
        make("sdpa")(x, attention_mask=additive)
    keep = torch.ones(B, 1, T, T, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(make("sdpa")(x, attention_mask=keep), make("sdpa")(x), atol=TOL)
