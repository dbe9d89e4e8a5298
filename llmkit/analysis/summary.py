"""A model's cost, layer by layer: parameters, forward FLOPs per token, activation memory.

The model is built and run once on the meta device (shapes only, no memory, no weights read), so a
135M-parameter checkpoint is summarised in a second. Per row (each top-level child of the model,
each block of a block list):

- parameters: each tensor once (a tied LM head's matrix belongs to the embedding row);
- forward FLOPs per token: 2 per parameter of every module the forward ran, except lookup tables
  (token, token-type and position embeddings are gathered or added, not multiplied), plus the
  attention scores: 4 * keys * n_heads * head_dim per attention module (QK^T and the weighted sum
  of V, 2 FLOPs a multiply-add each), where keys = the context for full attention,
  min(context, window) for a sliding window, head_dim for linear attention (its running state);
- activation memory: the bytes autograd saves for backward in that row at the given batch and
  context, measured on the meta device in the model's dtype (fp32 unless converted).

Totals: parameters = sum(p.numel()); training FLOPs per token = 3 x forward (backward costs twice
the forward) = 6 N + 12 sum_layers(keys * d_attn), which for full attention is PaLM's
6 N + 12 L T d (Chowdhery et al. 2022, appendix B), N the multiplied parameters above.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Dense bf16 peak FLOP/s of known accelerators (vendor data sheets, without sparsity); the first
#: name contained in the device's name wins, so specific models come before their family.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100 NVL": 835.0e12,
    "H100": 989.4e12,
    "A100": 312.0e12,
}


@dataclass
class LayerRow:
    """One row of the summary: a top-level module of the model or one block of a block list."""

    name: str
    params: int
    forward_flops: int  # per token
    activation_bytes: int  # at the summary's batch and context
    attention_flops: int = 0  # the part of forward_flops spent on attention scores


@dataclass
class ModelSummary:
    """A model's per-layer table and its totals at one batch size and context length."""

    model: str
    batch: int
    context: int
    rows: list[LayerRow] = field(default_factory=list)

    @property
    def params(self) -> int:
        """Every parameter once: sum(p.numel()) over model.parameters()."""
        return sum(r.params for r in self.rows)

    @property
    def forward_flops(self) -> int:
        """Forward FLOPs per token (matmuls and attention scores)."""
        return sum(r.forward_flops for r in self.rows)

    @property
    def attention_flops(self) -> int:
        """The attention-score part of the forward FLOPs per token."""
        return sum(r.attention_flops for r in self.rows)

    @property
    def multiplied_params(self) -> int:
        """N in 6N: the parameters the forward multiplies (forward FLOPs minus attention, / 2)."""
        return (self.forward_flops - self.attention_flops) // 2

    @property
    def training_flops(self) -> int:
        """Training FLOPs per token: forward + backward = 6 N + 3 x attention (PaLM's 12 L T d)."""
        return 3 * self.forward_flops

    @property
    def activation_bytes(self) -> int:
        """Bytes autograd saves for backward at this batch and context."""
        return sum(r.activation_bytes for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """The table and totals as plain JSON values."""
        return {
            "model": self.model,
            "batch": self.batch,
            "context": self.context,
            "layers": [asdict(r) for r in self.rows],
            "total": {
                "params": self.params,
                "multiplied_params": self.multiplied_params,
                "forward_flops_per_token": self.forward_flops,
                "attention_flops_per_token": self.attention_flops,
                "training_flops_per_token": self.training_flops,
                "training_flops_per_step": self.training_flops * self.batch * self.context,
                "activation_bytes": self.activation_bytes,
            },
            "formula": "training FLOPs/token = 6 N + 12 * sum_layers(keys * d_attn)",
        }


def _rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The summary's rows: each top-level child, with block lists split into their blocks."""
    from torch import nn

    rows: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList | nn.Sequential):
            rows.extend((f"{name}.{i}", block) for i, block in enumerate(child))
        else:
            rows.append((name, child))
    return rows


def _is_lookup(module: nn.Module) -> bool:
    """Embedding tables and position schemes: their parameters are gathered or added."""
    from torch import nn

    from llmkit.nn.positions import Positions

    return isinstance(module, nn.Embedding | Positions)


def _example_inputs(model: nn.Module, batch: int, context: int) -> tuple[torch.Tensor, ...]:
    import torch

    from llmkit.models.traits import traits_of

    ids = torch.zeros(batch, context, dtype=torch.long, device="meta")
    return (ids, ids) if traits_of(model).is_encoder_decoder else (ids,)


def summarize(model: nn.Module, batch: int, context: int) -> ModelSummary:
    """The per-layer table of a model (on the meta device) at `batch` sequences of `context`."""
    import torch

    if batch < 1 or context < 1:
        raise UsageError(f"--batch {batch} and --context {context} must be at least 1")
    rows = _rows(model)
    owner: dict[int, str] = {}
    for name, module in rows:
        for p in module.parameters():
            owner.setdefault(id(p), name)
    params: dict[str, int] = {}
    for p in model.parameters():
        key = owner.get(id(p), "(model)")
        params[key] = params.get(key, 0) + p.numel()

    ran: set[int] = set()
    current: list[str] = ["(model)"]
    saved: dict[str, int] = {}
    seen: set[int] = set()
    keep: list[torch.Tensor] = []  # saved tensors stay alive, so their ids stay unique

    def enter(module: nn.Module, args: Any) -> None:
        ran.add(id(module))
        if id(module) in row_names:
            current.append(row_names[id(module)])

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        current.pop()

    row_names = {id(module): name for name, module in rows}
    handles = [m.register_forward_pre_hook(enter) for m in model.modules()]
    handles += [module.register_forward_hook(leave) for _, module in rows]

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if not (base.requires_grad and base.is_leaf) and id(base) not in seen:  # not a weight
            seen.add(id(base))
            keep.append(base)
            saved[current[-1]] = saved.get(current[-1], 0) + base.numel() * base.element_size()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*_example_inputs(model, batch, context))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    keep.clear()

    summary = ModelSummary(type(model).__name__, batch, context)
    names = [name for name, _ in rows] + (["(model)"] if "(model)" in params else [])
    for name in names:
        module = dict(rows).get(name, model)
        mods = list(module.modules()) if name != "(model)" else [model]
        flops = attention = 0
        for m in mods:
            if id(m) not in ran or _is_lookup(m):
                continue
            flops += 2 * sum(p.numel() for p in m.parameters(recurse=False))
            keys = getattr(m, "score_keys", None)
            if callable(keys) and hasattr(m, "n_heads") and hasattr(m, "head_dim"):
                attn: Any = m
                width = int(attn.n_heads) * int(attn.head_dim)  # d_attn
                attention += 4 * int(keys(context)) * width
        row = LayerRow(name, params.get(name, 0), flops + attention, saved.get(name, 0), attention)
        if row.params or row.forward_flops or row.activation_bytes:
            summary.rows.append(row)
    return summary


def meta_model(config: dict[str, Any]) -> nn.Module:
    """Build a model from its config dict (`{"model": name, ...}`) on the meta device."""
    import torch

    from llmkit.models import build_model

    with torch.device("meta"):
        model: nn.Module = build_model(config)
    return model


def load_target(target: Path) -> tuple[nn.Module, int, int]:
    """A checkpoint directory or a pipeline file -> (meta model, default batch, default context)."""
    from llmkit.storage.checkpoint import CONFIG_FILE, is_checkpoint, model_fields, read_config

    if target.is_dir():
        if not is_checkpoint(target):
            raise UsageError(
                f"{target}: not an llmkit checkpoint (no {CONFIG_FILE}); give a checkpoint "
                "directory or a pipeline file"
            )
        config = read_config(target)
        try:
            model = meta_model(model_fields(config))
        except UsageError as exc:
            raise UsageError(f"{target / CONFIG_FILE}: {exc}") from None
        return model, 1, int(config.get("max_positions") or 512)
    if not target.is_file():
        raise UsageError(f"{target}: no such checkpoint directory or pipeline file")
    return _pipeline_model(target)


def _pipeline_model(path: Path) -> tuple[nn.Module, int, int]:
    """The model a pipeline file's train section would build (vocab from its tokenizer)."""
    from llmkit.pipeline import checks, config

    cfg = config.load(path)
    t = cfg.train
    if t is None:
        raise UsageError(f"{path}: has no train section, so no model to summarise")
    base = path.resolve().parent
    if t.init_from is not None:
        model, _, _ = load_target(Path(checks.resolve(base, t.init_from)))
        return model, t.batch_size, t.context
    assert t.model is not None
    objective = checks.build_objective(cfg)
    vocab = _vocab_size(cfg, base)
    params = checks.model_params(t, objective, vocab, {"labels": checks.PLACEHOLDER_LABELS})
    try:
        model = meta_model({"model": t.model.name, **params})
    except UsageError as exc:
        raise UsageError(f"{path}: train.model: {exc}") from None
    return model, t.batch_size, t.context


def _vocab_size(cfg: Any, base: Path) -> int:
    """The vocabulary the pipeline's tokenizer has or will have."""
    from llmkit.pipeline import checks

    tok = cfg.tokenizer
    if tok is None:
        return checks.PLACEHOLDER_VOCAB
    if tok.train_files:
        return int(tok.vocab_size)
    from llmkit.storage.tokenizer_files import load_tokenizer

    spec = checks.resolve(base, tok.path) if tok.path else tok.name
    return int(load_tokenizer(spec).vocab_size)


def training_flops_per_token(model: nn.Module, context: int) -> int:
    """6N + attention FLOPs per token of a live model, from a meta copy built from its config.

    For the trainer's MFU: computed once before training, then `mfu(tokens/s, this, device)`.
    """
    from llmkit.storage.checkpoint import model_config

    return summarize(meta_model(model_config(model)), 1, context).training_flops


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device named like `torch.cuda.get_device_name()`, if known."""
    for key, value in PEAK_BF16_FLOPS.items():
        if re.search(rf"\b{re.escape(key)}\b", device_name, flags=re.IGNORECASE):
            return value
    return None


def mfu(tokens_per_s: float, flops_per_token: float, device: str | torch.device) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's bf16 peak (None: unknown)."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    peak = peak_flops(torch.cuda.get_device_name(dev))
    return None if peak is None else tokens_per_s * flops_per_token / peak


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (K, M, G, T), for the table."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def human_bytes(n: float) -> str:
    """Bytes in KiB/MiB/GiB."""
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g} {suffix}"
    return f"{n:.0f} B"


def table_lines(s: ModelSummary) -> list[str]:
    """The summary as aligned text lines: one per row, then the totals and the formula."""
    header = ("layer", "params", "fwd FLOPs/token", f"activations (B={s.batch}, T={s.context})")
    body = [
        (r.name, f"{r.params:,}", human(r.forward_flops), human_bytes(r.activation_bytes))
        for r in s.rows
    ]
    total = ("total", f"{s.params:,}", human(s.forward_flops), human_bytes(s.activation_bytes))
    widths = [max(len(row[i]) for row in [header, *body, total]) for i in range(4)]
    lines = []
    for i, row in enumerate([header, *body, total]):
        if i == len(body) + 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines += [
        "",
        f"training FLOPs/token = 6 N + 3 x attention = 6 x {s.multiplied_params:,} + 3 x "
        f"{s.attention_flops:,} = {s.training_flops:,} ({human(s.training_flops)})",
        f"training FLOPs/step (B x T = {s.batch * s.context:,} tokens): "
        f"{human(s.training_flops * s.batch * s.context)}",
    ]
    return lines
