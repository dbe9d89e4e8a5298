"""What every architecture's config shares: dict round-trips, consistency checks, building parts by name.

A config is a dataclass; `to_dict()` gives a plain dict (with `"model": <registry name>`) and
`from_dict()` reads one back, rejecting unknown keys. `model_factory` turns a config class and a
module class into the typed function registered as the `model` component, so `llmkit.create("model",
"gpt", n_layers=4)` validates every field against the dataclass's own types.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from llmkit.errors import RegistryError, UsageError
from llmkit.models.traits import traits_of
from llmkit.params import EXPECTED

C = TypeVar("C", bound="ModelConfig")


@dataclasses.dataclass
class ModelConfig:
    """Base of the architecture configs (see GPTConfig, BertConfig, TransformerConfig, LlamaConfig)."""

    model_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.check_types()
        self.validate()

    def check_types(self) -> None:
        """Check (and coerce, e.g. 4.0 -> 4) every field against its annotation; UsageError naming it.

        Configs also come from JSON files (checkpoints, Hugging Face config.json), where a quoted
        number would otherwise surface later as an unrelated TypeError.
        """
        import pydantic

        for name, adapter in _field_adapters(type(self)).items():
            value = getattr(self, name)
            try:
                setattr(self, name, adapter.validate_python(value))
            except pydantic.ValidationError as exc:
                phrase = EXPECTED.get(exc.errors()[0].get("type", ""), "invalid value")
                raise UsageError(f"{name}: {phrase}, got {value!r}") from None

    def validate(self) -> None:
        """Check field values against each other; raise UsageError naming the fields."""
        d_model, n_heads = getattr(self, "d_model", 0), getattr(self, "n_heads", 0)
        if d_model <= 0 or n_heads <= 0:
            raise UsageError(f"d_model={d_model} and n_heads={n_heads} must be positive")
        if d_model % n_heads:
            raise UsageError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        n_kv = getattr(self, "n_kv_heads", None)
        if n_kv is not None and (n_kv <= 0 or n_heads % n_kv):
            raise UsageError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv}")
        for field in ("attention", "cross_attention"):
            name = getattr(self, field, None)
            if name is not None:
                check_attention(field, name)
        if getattr(self, "attention", None) == "mqa" and n_kv not in (None, 1):
            raise UsageError(f"attention='mqa' has one key/value head but n_kv_heads={n_kv}")
        if getattr(self, "attention", None) == "gqa" and n_kv is None:
            raise UsageError("attention='gqa' needs n_kv_heads")
        position = getattr(self, "position", None)
        if position == "alibi" and getattr(self, "attention", None) == "linear":
            raise UsageError("position='alibi' cannot be used with attention='linear'")
        if position == "rope" and (d_model // n_heads) % 2:
            raise UsageError(
                f"position='rope' needs an even head size, d_model/n_heads={d_model // n_heads}"
            )
        for kind in ("position", "norm", "mlp"):
            check_choice(kind, kind, getattr(self, kind, None))
        for field in ("n_layers", "vocab_size", "max_positions"):
            value = getattr(self, field, 1)
            if value <= 0:
                raise UsageError(f"{field}={value} must be positive")
        dropout = getattr(self, "dropout", 0.0)
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"dropout={dropout} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict of every field, plus `"model": <registry name>`."""
        return {"model": self.model_name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Read a config dict (as written by `to_dict`); unknown keys are a UsageError naming them."""
        data = dict(data)
        name = data.pop("model", cls.model_name)
        if name != cls.model_name:
            raise UsageError(f"model: config is for '{name}', not '{cls.model_name}'")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)


_ADAPTERS: dict[type, dict[str, Any]] = {}


def _field_adapters(cls: type) -> dict[str, Any]:
    """A pydantic TypeAdapter per dataclass field of a config class (built once per class)."""
    if cls not in _ADAPTERS:
        import pydantic

        hints = typing.get_type_hints(cls)
        _ADAPTERS[cls] = {
            f.name: pydantic.TypeAdapter(hints[f.name]) for f in dataclasses.fields(cls)
        }
    return _ADAPTERS[cls]


def check_choice(field: str, kind: str, value: str | None) -> None:
    """A part chosen by name (norm, mlp, position) must be a registered `kind`, built-in or a plugin's."""
    from llmkit.api import components
    from llmkit.registry import unknown_message

    names = [component.name for component in components(kind)]
    if value is not None and value not in names:
        raise UsageError(f"{field}: {unknown_message('choice', value, names)}")


def check_attention(field: str, name: str) -> None:
    """An attention variant name must be registered (built-in or from a plugin)."""
    from llmkit.api import get

    try:
        get("attention", name)
    except RegistryError as exc:
        raise UsageError(f"{field}: {exc}") from None


def build_attention(
    name: str,
    options: dict[str, Any],
    *,
    d_model: int,
    n_heads: int,
    n_kv_heads: int | None,
    causal: bool,
    cross: bool = False,
    dropout: float = 0.0,
    bias: bool = True,
) -> Any:
    """Build attention variant `name` through the registry, so plugin variants work the same way."""
    from llmkit.api import create

    reserved = sorted(
        set(options)
        & {"d_model", "n_heads", "n_kv_heads", "causal", "cross", "d_context", "dropout", "bias"}
    )
    if reserved:
        raise UsageError(
            f"attention_options: {', '.join(reserved)} come from the model config itself; "
            "set them there instead"
        )
    kwargs: dict[str, Any] = dict(
        d_model=d_model, n_heads=n_heads, causal=causal, dropout=dropout, bias=bias, **options
    )
    if cross:
        kwargs["cross"] = True
    if n_kv_heads is not None:
        kwargs["n_kv_heads"] = n_kv_heads
    try:
        return create("attention", name, **kwargs)
    except RegistryError as exc:
        raise UsageError(f"attention_options: {exc}") from None


def init_weights(module: Any, std: float = 0.02) -> None:
    """GPT-2/BERT-style init: normal(0, std) for linear and embedding weights, zero biases."""
    from torch import nn

    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=std)


def model_factory(
    config_cls: type[ModelConfig], model_cls: Callable[[Any], Any]
) -> Callable[..., Any]:
    """A function with the config's fields as typed keyword parameters that builds the model.

    Its signature and docstring come from the dataclass, so `llmkit describe model gpt` and the
    registry's parameter validation see every field with its type and default.
    """
    hints = typing.get_type_hints(config_cls)
    params = []
    for f in dataclasses.fields(config_cls):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else f.default_factory()
            if f.default_factory is not dataclasses.MISSING
            else inspect.Parameter.empty
        )
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hints[f.name]
            )
        )

    def build(**kwargs: Any) -> Any:
        return model_cls(config_cls(**kwargs))

    build.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    build.__annotations__ = {p.name: p.annotation for p in params}
    build.__doc__ = config_cls.__doc__
    build.__name__ = build.__qualname__ = config_cls.model_name
    build.__module__ = model_cls.__module__
    build.traits = traits_of(model_cls)  # type: ignore[attr-defined]  # asked before building
    return build
