"""Import Llama-family models from GGUF files (llama.cpp's format), fully offline.

The tensors are dequantised to float32 with the `gguf` package, renamed to the Hugging Face Llama
layout, and llama.cpp's rotary permutation of the q/k projections is undone, so the result is the
state dict `transformers.LlamaForCausalLM` would hold; `llmkit.storage.hf.from_hf` builds the
llmkit model from it. The embedded byte-level BPE tokenizer becomes an llmkit `BPETokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError
from llmkit.progress import track
from llmkit.storage.tokenizer_files import PRE_TOKENIZER_PATTERNS

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from llmkit.tokenizers.base import Tokenizer

SUPPORTED_ARCHITECTURES = ("llama",)
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


@dataclass
class GGUFTokenizerSpec:
    """The byte-level BPE tokenizer stored in a GGUF file."""

    tokens: list[str]
    merges: list[str]
    special_tokens: dict[str, int]
    pattern: str
    pre: str
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    add_bos_token: bool = False


@dataclass
class GGUFModel:
    """A GGUF model as Hugging Face sees it: its config.json, its state dict, its tokenizer."""

    hf_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    tokenizer: GGUFTokenizerSpec | None
    chat_template: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face Llama name of a GGUF tensor name, or None if it has none."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_RE.match(gguf_name)
    if match is None or match.group(2) not in _LAYER_NAMES:
        return None
    layer, part, kind = match.groups()
    return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"


def unpermute_rotary(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's q/k row permutation (HF's rotate-half layout -> interleaved)."""
    rows = weight.shape[0]
    if rows % (2 * n_heads):
        raise UsageError(f"cannot unpermute a {weight.shape} projection into {n_heads} heads")
    rest = weight.shape[1:]
    return (
        weight.reshape(n_heads, rows // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(weight.shape)
    )


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    value = f.contents()
    return value


def _require(reader: Any, key: str, path: Path) -> Any:
    value = _field(reader, key)
    if value is None:
        raise UsageError(f"{path}: GGUF metadata field '{key}' is missing")
    return value


def _open(path: Path) -> Any:
    from gguf import GGUFReader

    if not path.is_file():
        raise UsageError(f"{path}: GGUF file not found")
    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise UsageError(f"{path}: not a readable GGUF file ({exc})") from None


def read_tokenizer(reader: Any, path: Path) -> GGUFTokenizerSpec | None:
    """The GGUF's tokenizer, or None if it stores none; unsupported kinds are a UsageError."""
    model = _field(reader, "tokenizer.ggml.model")
    if model is None:
        return None
    if model != "gpt2":
        raise UsageError(
            f"{path}: tokenizer.ggml.model is {model!r}; llmkit imports byte-level BPE ('gpt2') "
            "tokenizers only"
        )
    pre = str(_field(reader, "tokenizer.ggml.pre", "default"))
    if pre not in PRE_TOKENIZER_PATTERNS:
        raise UsageError(
            f"{path}: tokenizer.ggml.pre {pre!r} is not supported; known: "
            + ", ".join(sorted(PRE_TOKENIZER_PATTERNS))
        )
    tokens = list(_require(reader, "tokenizer.ggml.tokens", path))
    merges = list(_require(reader, "tokenizer.ggml.merges", path))
    types = list(_field(reader, "tokenizer.ggml.token_type", []) or [])
    special = {
        tok: i
        for i, (tok, kind) in enumerate(zip(tokens, types, strict=False))
        if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    }
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    return GGUFTokenizerSpec(
        tokens=tokens,
        merges=merges,
        special_tokens=special,
        pattern=PRE_TOKENIZER_PATTERNS[pre],
        pre=pre,
        bos_token_id=None if bos is None else int(bos),
        eos_token_id=None if eos is None else int(eos),
        add_bos_token=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    )


def read_gguf(path: str | Path) -> GGUFModel:
    """Read a Llama-family GGUF file into a Hugging Face config, fp32 state dict and tokenizer."""
    import numpy as np
    import torch
    from gguf.quants import dequantize

    file = Path(path)
    reader = _open(file)
    arch = _require(reader, "general.architecture", file)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UsageError(
            f"{file}: general.architecture is {arch!r}; llmkit imports: "
            + ", ".join(SUPPORTED_ARCHITECTURES)
        )
    n_layers = int(_require(reader, f"{arch}.block_count", file))
    d_model = int(_require(reader, f"{arch}.embedding_length", file))
    n_heads = int(_require(reader, f"{arch}.attention.head_count", file))
    n_kv_heads = int(_field(reader, f"{arch}.attention.head_count_kv", n_heads))
    if n_heads <= 0 or d_model % n_heads or n_kv_heads <= 0 or n_heads % n_kv_heads:
        raise UsageError(
            f"{file}: {arch}.embedding_length {d_model}, attention.head_count {n_heads} and "
            f"attention.head_count_kv {n_kv_heads} do not fit: the width must split into the "
            "heads, and the heads into key/value groups"
        )
    head_dim = int(_field(reader, f"{arch}.attention.key_length", d_model // n_heads))
    rope_dim = int(_field(reader, f"{arch}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise UsageError(
            f"{file}: {arch}.rope.dimension_count is {rope_dim} but heads are {head_dim} wide; "
            "partial rotary embeddings are not supported"
        )
    scaling = _field(reader, f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise UsageError(f"{file}: {arch}.rope.scaling.type {scaling!r} is not supported")

    state: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for tensor in track(reader.tensors, "import", unit="tensor"):
        name = hf_name(tensor.name)
        if tensor.name == "rope_freqs.weight":
            raise UsageError(
                f"{file}: tensor rope_freqs.weight (Llama 3.1-style RoPE scaling) is not supported"
            )
        if name is None:
            unknown.append(tensor.name)
            continue
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        try:
            array = dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as exc:
            raise UsageError(
                f"{file}: tensor {tensor.name}: quantisation {tensor.tensor_type.name} "
                f"cannot be dequantised ({exc})"
            ) from None
        array = np.asarray(array, dtype=np.float32).reshape(shape)
        if tensor.name.endswith("attn_q.weight"):
            array = unpermute_rotary(array, n_heads)
        elif tensor.name.endswith("attn_k.weight"):
            array = unpermute_rotary(array, n_kv_heads)
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32, order="C"))
    if unknown:
        raise UsageError(
            f"{file}: tensors llmkit cannot place in a Llama model: " + ", ".join(unknown[:5])
        )
    if "model.embed_tokens.weight" not in state:
        raise UsageError(f"{file}: tensor token_embd.weight is missing")

    tokenizer = read_tokenizer(reader, file)
    vocab_size = int(
        _field(reader, f"{arch}.vocab_size", 0) or state["model.embed_tokens.weight"].shape[0]
    )
    d_ff = int(_field(reader, f"{arch}.feed_forward_length", 0)) or int(
        state["model.layers.0.mlp.gate_proj.weight"].shape[0]
    )
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": d_model,
        "intermediate_size": d_ff,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length", 2048)),
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "tie_word_embeddings": "lm_head.weight" not in state,
        "attention_bias": "model.layers.0.self_attn.q_proj.bias" in state,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    if tokenizer is not None:
        config["bos_token_id"] = tokenizer.bos_token_id
        config["eos_token_id"] = tokenizer.eos_token_id
    _check_shapes(config, state, file)
    metadata = {
        k: _field(reader, k)
        for k in ("general.name", "general.organization", "general.license", "general.file_type")
        if k in reader.fields
    }
    return GGUFModel(
        hf_config=config,
        state_dict=state,
        tokenizer=tokenizer,
        chat_template=_field(reader, "tokenizer.chat_template"),
        metadata=metadata,
    )


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of every Hugging Face Llama tensor that `config` implies."""
    d, v, f = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    hd = config["head_dim"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (v, d),
        "model.norm.weight": (d,),
        "lm_head.weight": (v, d),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (q, d),
            p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d),
            p + "self_attn.o_proj.weight": (d, q),
            p + "mlp.gate_proj.weight": (f, d),
            p + "mlp.up_proj.weight": (f, d),
            p + "mlp.down_proj.weight": (d, f),
            p + "input_layernorm.weight": (d,),
            p + "post_attention_layernorm.weight": (d,),
        }
    return shapes


def _check_shapes(config: dict[str, Any], state: dict[str, torch.Tensor], file: Path) -> None:
    expected = expected_shapes(config)
    bad = [
        f"{name}: expected {shape}, got {tuple(state[name].shape)}"
        for name, shape in expected.items()
        if name in state and tuple(state[name].shape) != shape
    ]
    if bad:
        raise UsageError(f"{file}: tensor shapes disagree with the metadata: " + "; ".join(bad[:5]))
    missing = [n for n in expected if n not in state and n != "lm_head.weight"]
    if missing:
        raise UsageError(f"{file}: tensors missing: " + ", ".join(missing[:5]))


def missing_byte_tokens(tokens: Sequence[str]) -> list[str]:
    """Byte-level texts of the single bytes that have no token (SmolLM2 lacks 21 of the 256)."""
    from llmkit.tokenizers.bpe import bytes_to_text

    present = set(tokens)
    return [t for t in (bytes_to_text(bytes([b])) for b in range(256)) if t not in present]


def build_tokenizer(spec: GGUFTokenizerSpec) -> Tokenizer:
    """An llmkit BPETokenizer holding the GGUF vocabulary, merges, pattern and special tokens.

    Byte-level BPE needs a token for each of the 256 bytes; bytes the vocabulary lacks get ids
    after the model's vocabulary. Such bytes never occur in UTF-8 text except as rare control
    characters; `encode_prompt` drops them, as llama.cpp and Hugging Face do.
    """
    from llmkit.tokenizers.bpe import BPETokenizer

    tokens = [*spec.tokens, *missing_byte_tokens(spec.tokens)]
    return BPETokenizer.from_tokens_and_merges(
        tokens, spec.merges, pattern=spec.pattern, special_tokens=spec.special_tokens
    )


def import_gguf(path: str | Path) -> tuple[nn.Module, Tokenizer | None, GGUFModel]:
    """The llmkit model and tokenizer of a GGUF file, plus what was read from it."""
    from llmkit.storage.checkpoint import no_weight_init
    from llmkit.storage.hf import from_hf

    read = read_gguf(path)
    with no_weight_init():  # from_hf loads (and checks) every weight
        model = from_hf(read.hf_config, read.state_dict, source=str(path))
    tokenizer = build_tokenizer(read.tokenizer) if read.tokenizer is not None else None
    return model, tokenizer, read


def generation_defaults(read: GGUFModel) -> dict[str, Any]:
    """What generation needs to know that the model config does not: stop ids, chat template."""
    out: dict[str, Any] = {}
    if read.tokenizer is not None:
        out["bos_token_id"] = read.tokenizer.bos_token_id
        out["eos_token_id"] = read.tokenizer.eos_token_id
        out["add_bos_token"] = read.tokenizer.add_bos_token
    if read.chat_template:
        out["chat_template"] = read.chat_template
    return out


def q4_1_grids(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """HF name -> (scales d, mins m), each (rows, blocks) float32, of every Q4_1 tensor in the
    file, rows in the order `read_gguf` gives (q/k rotary permutation undone)."""
    import numpy as np
    from gguf import GGMLQuantizationType

    file = Path(path)
    reader = _open(file)
    n_heads = int(_require(reader, "llama.attention.head_count", file))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_heads))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None or tensor.tensor_type != GGMLQuantizationType.Q4_1:
            continue
        rows = int(tensor.shape.tolist()[1]) if len(tensor.shape) > 1 else 1
        blocks = np.asarray(tensor.data, dtype=np.uint8).reshape(-1, 20)  # d, m (fp16), 16 B
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(rows, -1)
        m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(rows, -1)
        if tensor.name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = n_heads if tensor.name.endswith("attn_q.weight") else n_kv
            d, m = unpermute_rotary(d, heads), unpermute_rotary(m, heads)
        out[name] = (np.ascontiguousarray(d), np.ascontiguousarray(m))
    return out


def keep_quantisation(model: nn.Module, read: GGUFModel, path: str | Path) -> nn.Module:
    """Hold the linears of a model imported from a GGUF file in int4 with the file's own Q4_1
    codes (w = q * d + m is w = (q - 8) * d + (m + 8d)); others (the Q8_0 embedding used as the
    LM head) in int8, requantised per row. Scales and zeros become bfloat16 (the kernel's)."""
    import torch

    from llmkit.nn.quantized import COMPUTE_DTYPE, Int4Linear, Int8Linear, QuantLinear, _linears
    from llmkit.storage.hf import layout_for

    grids = q4_1_grids(path)
    if not grids:
        raise UsageError(f"{path}: no Q4_1 tensors to keep; import without --keep-quant")
    conv = layout_for(read.hf_config, str(path)).conversions
    config = conv.config_from_hf(read.hf_config)
    scales = conv.state_dict_from_hf(
        config,
        {k: torch.from_numpy(grids[k][0]) if k in grids else v for k, v in read.state_dict.items()},
    )
    mins = conv.state_dict_from_hf(
        config,
        {k: torch.from_numpy(grids[k][1]) if k in grids else v for k, v in read.state_dict.items()},
    )
    names = {id(m): n for n, m in model.named_modules()}
    int8_layers: list[str] = []
    for parent, attr, layer in _linears(model):
        key = f"{names[id(layer)]}.weight"
        d, m = scales.get(key), mins.get(key)
        w = layer.weight.detach().float()
        new: QuantLinear
        if d is not None and m is not None and d.shape == (w.shape[0], w.shape[1] // 32):
            expand = lambda g: g.repeat_interleave(32, dim=1)  # noqa: E731
            codes = torch.round((w - expand(m)) / expand(d).clamp(min=1e-30)).clamp(0, 15)
            new = Int4Linear.from_codes(codes, d, m + 8.0 * d, layer.bias)
        else:
            new = Int8Linear.from_weight(w, layer.bias)
            int8_layers.append(names[id(layer)])
        setattr(parent, attr, new)
    model.to(COMPUTE_DTYPE)
    vars(model)["quantization"] = {"dtype": "int4", "group_size": 32, "int8_layers": int8_layers}
    return model
