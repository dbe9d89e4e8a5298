"""Plugins cannot take the CLI down: exits and interrupts at import or in a hook are the plugin's
recorded error, a plugin command cannot replace a built-in one, and `--help` waits for no plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _install(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """A plugin distribution `name` (module `<name>_mod`) on a private path; the env to use it."""
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[llmkit]\n{name} = {name}_mod\n")
    (tmp_path / f"{name}_mod.py").write_text(source)
    return {"PYTHONPATH": str(tmp_path), "LLMKIT_PLUGINS": name}


def _llmkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmkit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _plugin_row(env: dict[str, str], name: str) -> dict[str, object]:
    proc = _llmkit("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return next(p for p in json.loads(proc.stdout) if p["name"] == name)


SOURCES = {
    "exit at import": "import sys\nsys.exit(3)\n",
    "interrupt at import": "raise KeyboardInterrupt\n",
    "exit in a hook": (
        "import sys\nfrom llmkit.hookspecs import hookimpl\n\n@hookimpl\n"
        "def register_metrics(register):\n    sys.exit(4)\n"
    ),
    "exit in register_commands": (
        "import sys\nfrom llmkit.hookspecs import hookimpl\n\n@hookimpl\n"
        "def register_commands(cli):\n    raise SystemExit(5)\n"
    ),
}


@pytest.mark.parametrize("case", list(SOURCES))
def test_exits_and_interrupts_are_the_plugins_error(tmp_path: Path, case: str) -> None:
    env = _install(tmp_path, "badplug", SOURCES[case])
    for args in (("--help",), ("components", "optimizer"), ("describe", "optimizer", "adamw")):
        proc = _llmkit(*args, env=env)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
    row = _plugin_row(env, "badplug")
    assert row["error"] and (
        "SystemExit" in str(row["error"]) or "KeyboardInterrupt" in str(row["error"])
    )
    table = _llmkit("plugins", env=env)
    assert table.returncode == 0
    assert any(
        line.startswith("badplug ") and "ERROR" in line for line in table.stdout.splitlines()
    )


def test_a_plugin_cannot_replace_a_builtin_command(tmp_path: Path) -> None:
    source = (
        "import click\nfrom llmkit.hookspecs import hookimpl\n\n@hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command(name='run')\n    def run():\n        click.echo('hijacked')\n"
        "    @cli.command(name='hijack-extra')\n    def extra():\n        click.echo('extra')\n"
    )
    env = _install(tmp_path, "hijack", source)
    proc = _llmkit("run", "/nonexistent.yaml", env=env)
    assert "hijacked" not in proc.stdout
    assert proc.returncode == 2 and "pipeline file not found" in proc.stderr
    row = _plugin_row(env, "hijack")
    assert "refused: command 'run'" in str(row["error"])
    assert row["commands"] == []
    assert _llmkit("hijack-extra", env=env).returncode != 0  # all or nothing: none of its commands


def test_help_does_not_import_third_party_plugins(tmp_path: Path) -> None:
    """A plugin that would take 30 s to import: `--help` does not import it (the marker file its
    import writes stays absent) and names it; `llmkit plugins` shows its import time."""
    marker = tmp_path / "imported"
    source = f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\nimport time\n"
    env = _install(tmp_path, "slowplug", source + "time.sleep(0.3)\n")
    proc = _llmkit("--help", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "slowplug" in proc.stdout and "run" in proc.stdout
    row = _plugin_row(env, "slowplug")
    assert marker.exists()
    assert isinstance(row["load_seconds"], float) and row["load_seconds"] >= 0.3
    table = _llmkit("plugins", env=env).stdout
    line = next(x for x in table.splitlines() if x.startswith("slowplug "))
    assert "s " in line  # the import column, e.g. 0.30s


def test_builtin_commands_of_the_rooms_still_listed(tmp_path: Path) -> None:
    proc = _llmkit("--help", env={"LLMKIT_PLUGINS": ""})
    assert proc.returncode == 0
    for name in ("run", "validate", "plugins", "data", "generate"):
        assert f"  {name} " in proc.stdout or f"  {name}\n" in proc.stdout, name
