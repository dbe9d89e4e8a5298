"""The bounds on every number a pipeline or data file may give, in one place.

Each bound is generous (far past what a CPU or one node trains) but finite, so that a typo such as
`max_steps: 1e30` or `tokenizer.vocab_size: 1e12` is one line naming the bound, not a hang or an
abort. The Rust trainer checks `MAX_VOCAB_SIZE` again (rust/src/trainer.rs, `MAX_VOCAB_SIZE`).
The integer and fraction types here reject booleans (`batch_size: true` is not 1) and strings that
are not numbers; a whole float such as `1.0e9` (or YAML's `1e9`, which YAML 1.1 reads as a string)
is taken as the integer it names, so that the bound, not the type, is what the error names.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

MAX_PIPELINE_BYTES = 1 << 20  # a pipeline or data config file: 1 MiB
MAX_YAML_DEPTH = 64  # nested mappings and lists in one file

BYTE_ALPHABET = 256  # a byte-level BPE vocabulary holds every byte, plus its special tokens
MAX_VOCAB_SIZE = 1 << 22  # 4,194,304 ids (the largest published vocabularies hold ~256k)
MAX_CONTEXT = 1 << 20  # tokens per example
MAX_BATCH_SIZE = 1 << 16  # examples per micro-batch
MAX_GRAD_ACCUM = 1 << 16  # micro-batches per optimizer step
MAX_STEPS = 10**9  # optimizer steps, and every count of steps (log_every, eval_every, ...)
MAX_BATCHES = 10**9  # evaluation batches
MAX_SEED = (1 << 63) - 1
MAX_CLIP = 1e9  # gradient-norm clipping threshold
MAX_SHARD_TOKENS = 1 << 40
MAX_CHUNK_CHARS = 1 << 31
MAX_WORKERS = 1024  # processes of `llmkit data prepare`
MAX_FREQUENCY = 1 << 40  # a tokenizer's min_frequency
MAX_COUNT = 1 << 31  # any other count (a model's layers, heads, widths)

# Model parameters bounded by name wherever a model takes them (values checked by its signature).
MODEL_PARAM_BOUNDS: dict[str, int] = {
    "vocab_size": MAX_VOCAB_SIZE,
    "max_positions": MAX_CONTEXT,
    "d_model": 1 << 16,
    "d_ff": 1 << 18,
    "hidden": 1 << 18,
    "n_layers": 1 << 10,
    "n_encoder_layers": 1 << 10,
    "n_decoder_layers": 1 << 10,
    "n_heads": 1 << 10,
    "n_kv_heads": 1 << 10,
    "head_dim": 1 << 12,
    "window": MAX_CONTEXT,
    "n_labels": 1 << 20,
}

_NUMBER = re.compile(r"[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?")


def _number(value: Any, integer: bool) -> Any:
    """`value` as a number when it is one (whole floats and numeric strings included)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
    if isinstance(value, str) and value.strip() and _NUMBER.fullmatch(value.strip()):
        with contextlib.suppress(ValueError):
            value = float(value.replace("_", "")) if not integer else _whole_text(value)
    if integer and isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite whole number")
        if value.is_integer():
            return int(value)
        raise ValueError("expected a whole number")
    if not integer and isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number (not inf or nan)")
    return value


def _whole_text(text: str) -> int | float:
    """`"12"` -> 12, `"1e9"` -> 1000000000 (exactly, without a float's rounding)."""
    text = text.strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        mantissa, _, exponent = text.lower().partition("e")
        if "." not in mantissa and exponent and int(exponent) >= 0 and int(exponent) < 400:
            return int(mantissa) * 10 ** int(exponent)
        return float(text)


def _at_most(hi: float) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("expected a finite number (not inf or nan)")
        if value > hi:
            shown = hi if isinstance(hi, int) else f"{hi:g}"
            raise ValueError(f"must be at most {shown} (the bound in llmkit/limits.py)")
        return value

    return check


def Int(lo: int, hi: int) -> Any:
    """A strict integer type in [lo, hi]: booleans refused, whole floats taken, bound named."""
    return Annotated[
        int,
        BeforeValidator(lambda v: _number(v, integer=True)),
        Field(ge=lo),
        AfterValidator(_at_most(hi)),
    ]


def Real(lo: float, hi: float) -> Any:
    """A finite float type in [lo, hi]: booleans, inf and nan refused, bound named."""
    return Annotated[
        float,
        BeforeValidator(lambda v: _number(v, integer=False)),
        Field(ge=lo, allow_inf_nan=False),
        AfterValidator(_at_most(hi)),
    ]


def check_number(value: Any, bound: int | None = None) -> str | None:
    """Why a component parameter's value is out of bounds (non-finite, or over `bound`), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (not inf or nan)"
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in {
        "inf",
        "infinity",
        "nan",
        ".inf",
        ".nan",
    }:
        return "must be a finite number (not inf or nan)"
    if bound is not None and isinstance(value, int | float) and value > bound:
        return f"must be at most {bound} (the bound in llmkit/limits.py)"
    return None
