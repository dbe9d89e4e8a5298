"""Parameter validation and description from a factory's typed signature."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmkit
from llmkit.errors import RegistryError


def warmup(
    steps: int,
    lr: float = 1e-3,
    mode: Literal["linear", "cosine"] = "linear",
    betas: tuple[float, float] = (0.9, 0.99),
    name: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Build a toy schedule description.

    Args:
        steps: How many steps the warm-up lasts.
        lr: Peak learning rate, reached
            at the end of warm-up.
        mode: Shape of the ramp.
    """
    return {
        "steps": steps,
        "lr": lr,
        "mode": mode,
        "betas": betas,
        "name": name,
        "verbose": verbose,
    }


class Plugin:
    @staticmethod
    @llmkit.hookimpl
    def register_schedulers(register: Any) -> None:
        register("toy_warmup", warmup)


@pytest.fixture(autouse=True)
def toy_plugin(fresh_plugin_host: None) -> None:
    llmkit.register_plugin(Plugin(), name="toy")


def test_values_are_coerced_to_declared_types() -> None:
    built = llmkit.create("scheduler", "toy_warmup", steps="10", lr="1e-2", betas=[0.8, 0.9])
    assert built == {
        "steps": 10,
        "lr": 0.01,
        "mode": "linear",
        "betas": (0.8, 0.9),
        "name": None,
        "verbose": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 1, "lr": "fast"}, "scheduler 'toy_warmup': lr: expected a number, got 'fast'"),
        ({"steps": 1.5}, "scheduler 'toy_warmup': steps: expected an integer, got 1.5"),
        (
            {"steps": 1, "mode": "exp"},
            "scheduler 'toy_warmup': mode: expected one of 'linear' or 'cosine', got 'exp'",
        ),
        (
            {"steps": 1, "verbose": "maybe"},
            "scheduler 'toy_warmup': verbose: expected true or false, got 'maybe'",
        ),
        (
            {"steps": 1, "betas": [0.9, "x"]},
            "scheduler 'toy_warmup': betas.1: expected a number, got 'x'",
        ),
        ({"lr": 0.1}, "scheduler 'toy_warmup': steps: missing required parameter"),
        (
            {"steps": 1, "setps": 2},
            "scheduler 'toy_warmup': unknown parameter 'setps'; did you mean 'steps'?",
        ),
    ],
)
def test_bad_parameters_give_one_clear_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryError) as info:
        llmkit.create("scheduler", "toy_warmup", **kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_positional_and_keyword_clash() -> None:
    with pytest.raises(RegistryError, match="steps: given both positionally and by name"):
        llmkit.create("scheduler", "toy_warmup", 3, steps=4)


def test_describe_reads_signature_and_docstring() -> None:
    d = llmkit.describe("scheduler", "toy_warmup")
    assert d.summary == "Build a toy schedule description."
    assert d.plugin == "toy"
    params = {p.name: p for p in d.params}
    assert list(params) == ["steps", "lr", "mode", "betas", "name", "verbose"]
    assert params["steps"].required and params["steps"].type == "int"
    assert params["lr"].default == 1e-3
    assert params["lr"].doc == "Peak learning rate, reached at the end of warm-up."
    assert params["mode"].type == "Literal['linear', 'cosine']"
    assert params["name"].doc == ""


@given(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_valid_numbers_pass_through(steps: int, lr: float) -> None:
    from llmkit import plugins

    if "toy" not in plugins.get_host().plugins:
        llmkit.register_plugin(Plugin(), name="toy")
    built = llmkit.create("scheduler", "toy_warmup", steps=steps, lr=lr)
    assert built["steps"] == steps and built["lr"] == lr
