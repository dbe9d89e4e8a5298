"""The registry and plugin host: registration, duplicates, unknown names, isolation, env filtering."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import llmkit
from llmkit import plugins
from llmkit.errors import RegistryError


class Scale:
    """Multiply numbers by a factor.

    Args:
        factor: What to multiply by.
    """

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def __call__(self, x: float) -> float:
        return x * self.factor


def make_plugin(**hooks: Any) -> object:
    """A plugin object whose named hooks are the given functions."""
    namespace = {name: llmkit.hookimpl(specname=name)(fn) for name, fn in hooks.items()}
    return type("Plugin", (), {k: staticmethod(v) for k, v in namespace.items()})()


def test_builtins_register_through_entry_points() -> None:
    host = plugins.get_host()
    assert host.plugins["llmkit.optim"].builtin
    assert "lamb" in host.plugins["llmkit.optim"].components["optimizer"]
    assert llmkit.get("optimizer", "lamb").plugin == "llmkit.optim"


def test_register_plugin_object_and_create() -> None:
    plugin = make_plugin(register_metrics=lambda register: register("scale", Scale))
    llmkit.register_plugin(plugin, name="scaler")
    component = llmkit.get("metric", "scale")
    assert component.plugin == "scaler"
    assert component.summary == "Multiply numbers by a factor."
    assert llmkit.create("metric", "scale", factor=3)(2.0) == 6.0
    assert [c.name for c in llmkit.components("metric")].count("scale") == 1


def test_lazy_factory_is_not_imported_until_used(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "lazy_mod_for_test.py").write_text(
        "IMPORTED = True\ndef make(n: int = 1):\n    return n\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys

    plugin = make_plugin(
        register_losses=lambda register: register("lazy", "lazy_mod_for_test:make", summary="s")
    )
    llmkit.register_plugin(plugin, name="lazy")
    assert "lazy_mod_for_test" not in sys.modules
    assert llmkit.create("loss", "lazy", n="4") == 4
    assert "lazy_mod_for_test" in sys.modules


def test_duplicate_name_names_both_plugins() -> None:
    first = make_plugin(register_metrics=lambda register: register("dup", Scale))
    second = make_plugin(register_metrics=lambda register: register("dup", Scale))
    llmkit.register_plugin(first, name="first")
    with pytest.raises(RegistryError, match=r"duplicate metric 'dup'.*'first'.*'second'"):
        llmkit.register_plugin(second, name="second")
    assert llmkit.get("metric", "dup").plugin == "first"
    assert "second" not in plugins.get_host().plugins


def test_duplicate_of_builtin_is_an_error() -> None:
    plugin = make_plugin(register_optimizers=lambda register: register("adamw", Scale))
    with pytest.raises(RegistryError, match=r"'llmkit.optim' and again by plugin 'mine'"):
        llmkit.register_plugin(plugin, name="mine")


def test_failed_registration_is_all_or_nothing() -> None:
    def hook(register: Any) -> None:
        register("good_one", Scale)
        raise RuntimeError("boom")

    with pytest.raises(RegistryError, match="boom"):
        llmkit.register_plugin(make_plugin(register_metrics=hook), name="half")
    assert "good_one" not in llmkit.get.__globals__["get_host"]().registry.names("metric")


def test_unknown_name_suggests_closest() -> None:
    llmkit.register_plugin(
        make_plugin(
            register_attentions=lambda register: (
                register("toy_gqa", Scale),
                register("toy_mha", Scale),
            )
        ),
        name="att",
    )
    with pytest.raises(RegistryError) as info:
        llmkit.create("attention", "toy_gqq")
    message = str(info.value)
    assert message.startswith("unknown attention 'toy_gqq'; did you mean 'toy_gqa'? available:")
    assert "toy_mha" in message


def test_unknown_kind_lists_kinds() -> None:
    with pytest.raises(
        RegistryError, match=r"unknown component kind 'optimiser'; did you mean 'optimizer'"
    ):
        llmkit.components("optimiser")


def test_bad_factory_is_rejected() -> None:
    plugin = make_plugin(register_metrics=lambda register: register("x", "no_colon_here"))
    with pytest.raises(RegistryError, match=r"must look like 'package\.module:Name'"):
        llmkit.register_plugin(plugin, name="bad")
    plugin = make_plugin(register_metrics=lambda register: register("y", 42))
    with pytest.raises(RegistryError, match="factory must be callable"):
        llmkit.register_plugin(plugin, name="bad2")


def test_unimportable_lazy_factory_errors_on_use() -> None:
    plugin = make_plugin(
        register_metrics=lambda register: register("ghost", "no_such_module_xyz:Thing", summary="g")
    )
    llmkit.register_plugin(plugin, name="ghosts")
    with pytest.raises(RegistryError, match=r"metric 'ghost': cannot import factory"):
        llmkit.create("metric", "ghost")


def test_register_single_component_from_a_script() -> None:
    llmkit.register("metric", "scale2", Scale)
    assert llmkit.get("metric", "scale2").plugin == "__main__"
    assert plugins.get_host().plugins["__main__"].components == {"metric": ["scale2"]}


def _write_dist(site: Path, dist: str, entry_name: str, module: str, source: str) -> None:
    """A minimal installed distribution with an `llmkit` entry point, as pip would leave it."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[llmkit]\n{entry_name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import llmkit

    @llmkit.hookimpl
    def register_metrics(register):
        register("always_one", "{module}:one", summary="Always one")

    def one() -> float:
        return 1.0
"""


def test_broken_plugin_is_isolated(tmp_path: Path, monkeypatch: Any) -> None:
    _write_dist(
        tmp_path, "goodplug", "good", "goodplug_mod", GOOD_PLUGIN.format(module="goodplug_mod")
    )
    _write_dist(tmp_path, "badplug", "bad", "badplug_mod", "raise ImportError('missing dep foo')\n")
    _write_dist(
        tmp_path,
        "badhook",
        "badhook",
        "badhook_mod",
        """
        import llmkit

        @llmkit.hookimpl
        def register_optimizers(register):
            raise ValueError("cannot register today")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("LLMKIT_PLUGINS")
    plugins.reset()
    host = plugins.get_host()
    assert host.plugins["bad"].error == "failed to load: ImportError: missing dep foo"
    assert host.plugins["badhook"].error == "failed to register: ValueError: cannot register today"
    assert host.plugins["good"].error is None
    assert host.plugins["good"].version == "1.0"
    assert llmkit.create("metric", "always_one") == 1.0
    assert llmkit.get("optimizer", "adamw").plugin == "llmkit.optim"


@pytest.mark.parametrize(
    ("setting", "loaded"),
    [
        (None, {"good", "other"}),
        ("", set()),
        ("none", set()),
        ("good", {"good"}),
        ("otherplug", {"other"}),
    ],
)
def test_env_var_selects_plugins(
    tmp_path: Path, monkeypatch: Any, setting: str | None, loaded: set[str]
) -> None:
    _write_dist(
        tmp_path, "goodplug", "good", "goodplug_mod2", GOOD_PLUGIN.format(module="goodplug_mod2")
    )
    _write_dist(tmp_path, "otherplug", "other", "otherplug_mod", "x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if setting is None:
        monkeypatch.delenv("LLMKIT_PLUGINS")
    else:
        monkeypatch.setenv("LLMKIT_PLUGINS", setting)
    plugins.reset()
    host = plugins.get_host()
    third_party = {name for name, info in host.plugins.items() if not info.builtin}
    assert third_party == loaded
    assert any(info.builtin for info in host.plugins.values())


def test_hook_with_wrong_argument_names_is_explained() -> None:
    plugin = make_plugin(register_metrics=lambda reg: reg("x", Scale))
    with pytest.raises(RegistryError, match=r"plugin 'typo'.*can not be found in the hookspec"):
        llmkit.register_plugin(plugin, name="typo")


def test_every_kind_has_a_written_hook_spec_and_every_spec_a_kind() -> None:
    from llmkit.hookspecs import KINDS, Specs

    specs = {name for name in vars(Specs) if name.startswith("register_")}
    assert specs - {"register_commands"} == set(KINDS.values())
    for hook in specs:
        doc = getattr(Specs, hook).__doc__ or ""
        assert doc.strip() and "\n" not in doc.strip(), f"{hook} needs a one-line docstring"
    host = plugins.PluginHost()
    for hook in KINDS.values():
        assert getattr(host.pm.hook, hook).spec is not None
