"""Built-in model parts (attentions, norms, MLPs, position schemes), registered like third-party ones."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl

ATTENTIONS = {
    "mha": ("Attention", "Multi-head attention in plain tensor math (the reference)"),
    "sdpa": ("SDPAttention", "Multi-head attention via F.scaled_dot_product_attention"),
    "mqa": ("MultiQueryAttention", "Multi-query attention: one shared key/value head"),
    "gqa": ("GroupedQueryAttention", "Grouped-query attention with n_kv_heads key/value heads"),
    "sliding_window": ("SlidingWindowAttention", "Local attention within a window, O(T*window)"),
    "linear": ("LinearAttention", "Kernelised linear attention (elu+1 features), O(T)"),
}

NORMS = {
    "layernorm": ("LayerNorm", "LayerNorm (Ba et al.): centre, scale, optional bias"),
    "rmsnorm": ("RMSNorm", "RMSNorm (Zhang & Sennrich): scale by 1/rms, float32 as in Llama"),
}

MLPS = {
    "gelu": ("GeluMLP", "Two linear layers with exact GELU (BERT)"),
    "gelu_tanh": ("GeluTanhMLP", "Two linear layers with tanh-approximated GELU (GPT-2)"),
    "relu": ("ReluMLP", "Two linear layers with ReLU (the original Transformer)"),
    "swiglu": ("SwiGLU", "Gated MLP down(silu(gate(x)) * up(x)) (Shazeer 2020, Llama)"),
}

POSITIONS = {
    "none": ("Positions", "No position information"),
    "learned": ("LearnedPositions", "Learned absolute position table (GPT-2, BERT)"),
    "sinusoidal": ("SinusoidalPositions", "Fixed sinusoidal absolute positions (Vaswani et al.)"),
    "rope": ("RotaryPositions", "Rotary embeddings on queries and keys (Su et al., Llama)"),
    "alibi": ("AlibiPositions", "Linear distance bias on attention scores (Press et al.)"),
}


@hookimpl
def register_attentions(register: Register) -> None:
    """Register every attention variant of llmkit.nn.attention."""
    for name, (cls, summary) in ATTENTIONS.items():
        register(name, f"llmkit.nn.attention:{cls}", summary=summary)


@hookimpl
def register_norms(register: Register) -> None:
    """Register the norms of llmkit.nn.norms."""
    for name, (cls, summary) in NORMS.items():
        register(name, f"llmkit.nn.norms:{cls}", summary=summary)


@hookimpl
def register_mlps(register: Register) -> None:
    """Register the feed-forward blocks of llmkit.nn.mlp."""
    for name, (cls, summary) in MLPS.items():
        register(name, f"llmkit.nn.mlp:{cls}", summary=summary)


@hookimpl
def register_positions(register: Register) -> None:
    """Register the position schemes of llmkit.nn.positions."""
    for name, (cls, summary) in POSITIONS.items():
        register(name, f"llmkit.nn.positions:{cls}", summary=summary)
