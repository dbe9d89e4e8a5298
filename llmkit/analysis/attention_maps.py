"""Attention maps: the softmax weights a model gives each query-key pair of a prompt, drawn.

The weights are the model's own: the chosen layer's attention module keeps the matrix its kernel
computes (`keep_weights`, llmkit.nn.attention), with the same masks and position scheme as in
training; SDPA-based variants run their plain-math path for that one forward, and a sliding window
its one-matrix path. Linear attention has no softmax matrix to show (its `no_weights_reason`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmkit.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.nn.attention import Attention
    from llmkit.tokenizers.base import Tokenizer

#: Prompts longer than this (in tokens) are refused: the axis labels would be unreadable.
MAX_TOKENS = 128


@dataclass
class AttentionMap:
    """One layer's weights (heads, Tq, Tk) for a prompt, with its tokens as labels."""

    weights: Tensor
    tokens: list[str]
    layer: int
    n_layers: int


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The model's self-attention modules in forward order (one per block)."""
    return [
        m
        for m in model.modules()
        if hasattr(m, "n_heads") and hasattr(m, "causal") and not getattr(m, "cross", False)
    ]


def check_layer(layers: list[nn.Module], layer: int) -> Attention:
    """The attention module of `layer`, or a one-line error naming the range and why it cannot."""
    from llmkit.nn.attention import Attention

    if not layers:
        raise UsageError("the model has no self-attention layers to show")
    if not 0 <= layer < len(layers):
        raise UsageError(
            f"--layer {layer} is out of range: the model has {len(layers)} layers (0-{len(layers) - 1})"
        )
    module = layers[layer]
    name = type(module).__name__
    if not isinstance(module, Attention):
        raise UsageError(
            f"layer {layer}: attention {name} does not expose its weights "
            "(subclass llmkit.nn.attention.Attention to get them)"
        )
    if module.no_weights_reason:
        raise UsageError(f"layer {layer}: {module.no_weights_reason}")
    return module


def capture(model: nn.Module, input_ids: Tensor, layer: int) -> Tensor:
    """Run `model` on `input_ids` (1, T) and return layer `layer`'s weights (heads, T, T)."""
    import torch

    from llmkit.models.traits import traits_of

    if traits_of(model).is_encoder_decoder:
        raise UsageError("attention maps are drawn for decoder and encoder models, not seq2seq")
    module = check_layer(attention_layers(model), layer)
    module.keep_weights, module.last_weights = True, None
    try:
        with torch.no_grad():
            model(input_ids)
        weights = module.last_weights
    finally:
        module.keep_weights, module.last_weights = False, None
    if weights is None:
        raise UsageError(f"layer {layer}: the forward did not compute attention weights")
    return weights[0].float().cpu()  # (heads, Tq, Tk)


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token as text for an axis label (whitespace shown, long tokens cut)."""
    labels = []
    for i in ids:
        text = tokenizer.decode([i]).replace("\n", "\\n").replace(" ", "\u2423")
        labels.append(text if len(text) <= 12 else text[:11] + "\u2026")
    return labels


def prompt_map(checkpoint: Path, prompt: str, layer: int | None) -> AttentionMap:
    """Load a checkpoint and its tokenizer, encode `prompt`, return one layer's attention map."""
    import torch

    from llmkit.storage.checkpoint import load_model
    from llmkit.storage.tokenizer_files import load_checkpoint_tokenizer

    model = load_model(checkpoint)
    tokenizer = load_checkpoint_tokenizer(checkpoint)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise UsageError("-p: the prompt encodes to no tokens; give some text")
    if len(ids) > MAX_TOKENS:
        raise UsageError(
            f"-p: the prompt is {len(ids)} tokens; give at most {MAX_TOKENS} (labels would not fit)"
        )
    n_layers = len(attention_layers(model))
    chosen = n_layers - 1 if layer is None else layer
    weights = capture(model, torch.tensor([ids]), chosen)
    return AttentionMap(weights, token_labels(tokenizer, ids), chosen, n_layers)


def draw(amap: AttentionMap, out: str | Path, head: int | None = None) -> Path:
    """Draw one head (a heat-map with tokens on both axes) or a grid of every head as a PNG."""
    from llmkit.plots.figure import new_figure, save_png

    n_heads, T = amap.weights.shape[0], amap.weights.shape[-1]
    if head is not None and not 0 <= head < n_heads:
        raise UsageError(
            f"--head {head} is out of range: layer {amap.layer} has {n_heads} heads (0-{n_heads - 1})"
        )
    heads = [head] if head is not None else list(range(n_heads))
    cols = 1 if len(heads) == 1 else math.ceil(math.sqrt(len(heads)))
    rows = math.ceil(len(heads) / cols)
    cell = max(4.0, 0.16 * T + 1.5) if len(heads) == 1 else max(3.0, 0.11 * T + 1.2)
    fig = new_figure(cell * cols + 1.0, cell * rows + 0.6, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    font = max(4.0, min(9.0, 260.0 / max(T, 1) / (1.0 if len(heads) == 1 else 1.6)))
    image = None
    for ax, h in zip(axes, heads, strict=False):
        image = ax.imshow(amap.weights[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}", fontsize=10)
        ax.set_xticks(range(T), amap.tokens, rotation=90, fontsize=font)
        ax.set_yticks(range(T), amap.tokens, fontsize=font)
        ax.set_xlabel("key", fontsize=9)
        ax.set_ylabel("query", fontsize=9)
    for ax in axes[len(heads) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(heads)]), shrink=0.8, label="softmax weight")
    which = f"head {head}" if head is not None else f"all {n_heads} heads"
    fig.suptitle(f"attention weights, layer {amap.layer} of {amap.n_layers}, {which}")
    return save_png(fig, out)
