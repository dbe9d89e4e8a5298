"""Plugin loading: one pluggy manager for built-in and third-party plugins, each isolated from the others.

Plugins are found through the ``llmkit`` entry-point group (llmkit's own components included).
``LLMKIT_PLUGINS`` limits which third-party plugins load: unset loads all, an empty value (or
``none``) loads none, ``a,b`` loads those entry-point or distribution names. A plugin that fails
to import or to register is recorded with its error and skipped; everything else keeps working.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from llmkit.errors import LlmkitError, RegistryError
from llmkit.hookspecs import KINDS, PROJECT, Register, Specs
from llmkit.registry import Component, Factory, Registry

ENV_PLUGINS = "LLMKIT_PLUGINS"
ENTRY_POINT_GROUP = "llmkit"
CORE_DISTRIBUTION = "llmkit"


@dataclass
class PluginInfo:
    """What `llmkit plugins` shows about one plugin."""

    name: str
    distribution: str | None = None
    builtin: bool = False
    components: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    error: str | None = None
    load_seconds: float | None = None  # how long importing the plugin's module took
    dist: metadata.Distribution | None = field(default=None, repr=False, compare=False)

    @property
    def version(self) -> str | None:
        """The distribution's version, read only when asked (parsing METADATA costs start-up time)."""
        return self.dist.version if self.dist is not None else None

    def to_json(self) -> dict[str, Any]:
        """What `llmkit plugins --json` prints."""
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "builtin": self.builtin,
            "components": self.components,
            "commands": self.commands,
            "error": self.error,
            "load_seconds": self.load_seconds,
        }


def _allowed_plugins() -> set[str] | None:
    """Names from LLMKIT_PLUGINS, or None when every installed plugin may load."""
    raw = os.environ.get(ENV_PLUGINS)
    if raw is None:
        return None
    names = {part.strip() for part in raw.split(",") if part.strip()}
    return set() if names <= {"none"} else names


def _wanted(name: str, dist: str, allowed: set[str] | None) -> bool:
    """Whether LLMKIT_PLUGINS lets third-party plugin `name` (of distribution `dist`) load."""
    return allowed is None or bool({name, dist} & allowed)


def third_party_names() -> list[str]:
    """The third-party plugins that would load, from entry-point metadata alone (no import)."""
    allowed = _allowed_plugins()
    names = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if dist != CORE_DISTRIBUTION and _wanted(ep.name, dist, allowed):
            names.add(ep.name)
    return sorted(names)


def _describe_error(exc: BaseException) -> str:
    """One line: the exception's own lines joined (pluggy's validation errors span several)."""
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text if isinstance(exc, LlmkitError) else f"{type(exc).__name__}: {text}".rstrip(": ")


class PluginHost:
    """Owns the pluggy manager, the registry it fills, and what is known about each plugin."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(Specs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self._loaded = False
        self._builtins_loaded = False
        self._commands_added: set[str] = set()
        self._lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------------
    def load(self, third_party: bool = True) -> None:
        """Discover entry-point plugins and collect their components (once); with `third_party`
        False only llmkit's own (what `llmkit --help` needs, so a slow plugin cannot slow it).

        Importing a plugin or running its hooks is isolated from `BaseException` too: a plugin
        that calls `sys.exit()` or raises KeyboardInterrupt is recorded as failed, not obeyed.
        """
        with self._lock:
            if self._loaded or (self._builtins_loaded and not third_party):
                return
            self._builtins_loaded = True
            self._loaded = third_party
            allowed = _allowed_plugins()
            names: dict[int, str] = {}  # reading a distribution's name parses its METADATA

            def dist_name(ep: metadata.EntryPoint) -> str:
                if ep.dist is None:
                    return ""
                if id(ep.dist) not in names:
                    names[id(ep.dist)] = ep.dist.name
                return names[id(ep.dist)]

            entry_points = sorted(
                metadata.entry_points(group=ENTRY_POINT_GROUP),
                key=lambda ep: (dist_name(ep) != CORE_DISTRIBUTION, ep.name),
            )
            for ep in entry_points:
                dist = dist_name(ep)
                builtin = dist == CORE_DISTRIBUTION
                if ep.name in self.plugins:
                    continue
                if not builtin and (not third_party or not _wanted(ep.name, dist, allowed)):
                    continue
                self._load_entry_point(ep, dist, builtin)

    def load_builtin(self, name: str) -> bool:
        """Load only llmkit's own plugin `name` (e.g. ``llmkit.data``), from llmkit's entry points
        alone, without scanning every installed distribution; False if llmkit declares no such
        plugin. A later full `load` adds the rest as if it had loaded everything at once, since
        built-in plugins load before third-party ones either way."""
        with self._lock:
            if name in self.plugins:
                return True
            try:
                dist = metadata.distribution(CORE_DISTRIBUTION)
            except metadata.PackageNotFoundError:
                return False
            found = [
                ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP and ep.name == name
            ]
            if not found:
                return False
            self._load_entry_point(found[0], CORE_DISTRIBUTION, True)
            return True

    def _load_entry_point(self, ep: metadata.EntryPoint, dist: str, builtin: bool) -> None:
        """Import one entry point's plugin and collect its components, recording any error."""
        info = PluginInfo(ep.name, dist, builtin=builtin, dist=ep.dist)
        self.plugins[ep.name] = info
        start = time.perf_counter()
        try:
            module = ep.load()
        except BaseException as exc:  # SystemExit at import: recorded, not obeyed
            info.error = f"failed to load: {_describe_error(exc)}"
            return
        finally:
            info.load_seconds = time.perf_counter() - start
        try:
            self.pm.register(module, name=ep.name)
        except Exception as exc:
            info.error = f"failed to load: {_describe_error(exc)}"
            return
        self._collect(ep.name)

    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module directly (notebooks, tests); errors raise at once."""
        self.load()
        with self._lock:
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self.plugins:
                raise RegistryError(f"a plugin named '{name}' is already registered")
            self.plugins[name] = PluginInfo(name)
            try:
                self.pm.register(plugin, name=name)
            except Exception as exc:
                del self.plugins[name]
                raise RegistryError(f"plugin '{name}': {_describe_error(exc)}") from exc
            self._collect(name)
            error = self.plugins[name].error
            if error is not None:
                self.pm.unregister(name=name)
                del self.plugins[name]
                raise RegistryError(error)
            return name

    def unregister_plugin(self, name: str) -> None:
        """Remove a directly registered plugin and its components (used by tests and notebooks)."""
        with self._lock:
            if name not in self.plugins:
                raise RegistryError(f"no plugin named '{name}' is registered")
            for component in [c for c in self.registry if c.plugin == name]:
                self.registry.remove(component.kind, component.name)
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            del self.plugins[name]

    def _collect(self, plugin_name: str) -> None:
        """Run one plugin's register hooks into a staging list, then add all or nothing."""
        info = self.plugins[plugin_name]
        plugin = self.pm.get_plugin(plugin_name)
        staged: list[Component] = []
        try:
            for kind, hook_name in KINDS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is not plugin:
                        continue
                    impl.function(register=self._stager(kind, plugin_name, staged))
            added: list[Component] = []
            try:
                for component in staged:
                    self.registry.add(component)
                    added.append(component)
            except Exception:
                for component in added:
                    self.registry.remove(component.kind, component.name)
                raise
        except BaseException as exc:  # a hook's SystemExit is its error
            info.error = f"failed to register: {_describe_error(exc)}"
            info.components = {}
            return
        for component in staged:
            info.components.setdefault(component.kind, []).append(component.name)

    def _stager(self, kind: str, plugin_name: str, staged: list[Component]) -> Register:
        def register(name: str, factory: Factory | str, summary: str | None = None) -> None:
            staged.append(self.registry.make_component(kind, name, factory, summary, plugin_name))

        return register

    # -- CLI -----------------------------------------------------------------------------------
    def add_commands(self, cli: Any, third_party: bool = True) -> None:
        """Let loaded plugins add their CLI commands, llmkit's own first; a failing plugin is
        recorded and skipped, and a third-party command cannot replace a built-in one (refused,
        recorded as that plugin's error, the built-in kept)."""
        self.load(third_party)
        impls = self.pm.hook.register_commands.get_hookimpls()
        builtin = {name for name, info in self.plugins.items() if info.builtin}
        impls = sorted(impls, key=lambda impl: impl.plugin_name not in builtin)
        for impl in impls:
            info = self.plugins.get(impl.plugin_name)
            if info is None or info.commands or impl.plugin_name in self._commands_added:
                continue
            if not third_party and not info.builtin:
                continue
            self._commands_added.add(impl.plugin_name)
            before = dict(cli.commands)
            protected = set(before) if not info.builtin else set()
            try:
                impl.function(cli=cli)
            except BaseException as exc:  # SystemExit in a hook: not obeyed
                cli.commands.clear()
                cli.commands.update(before)
                info.error = f"failed to add commands: {_describe_error(exc)}"
                continue
            replaced = sorted(n for n in protected if cli.commands.get(n) is not before[n])
            if replaced:
                cli.commands.clear()
                cli.commands.update(before)
                info.error = (
                    f"refused: command '{replaced[0]}' is already llmkit's or another plugin's; "
                    "a plugin cannot replace it (rename the plugin's command)"
                )
                continue
            info.commands = sorted(set(cli.commands) - set(before))


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_host(third_party: bool = True) -> PluginHost:
    """The process-wide plugin host, loaded on first use (only llmkit's own plugins when
    `third_party` is False, until a later call asks for them all)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
    _host.load(third_party)
    return _host


def builtin_component(plugin: str, kind: str, name: str) -> Component:
    """Component `name` of `kind`, found first among llmkit's own plugin `plugin` alone (loaded
    by itself, which is quick), else after loading every plugin: the same component either way,
    since a third-party plugin cannot take a built-in name."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
    host = _host
    if not host._loaded and host.load_builtin(plugin) and (kind, name) in host.registry:
        return host.registry.get(kind, name)
    return get_host().registry.get(kind, name)


def reset() -> None:
    """Forget every plugin and component; the next use loads afresh (tests, or after installs)."""
    global _host
    with _host_lock:
        _host = None
