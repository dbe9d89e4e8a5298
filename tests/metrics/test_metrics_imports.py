"""The metrics and pipeline plugins and the score/eval command modules stay light: no torch, numpy or sacrebleu."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_and_cli_modules_import_no_heavy_packages() -> None:
    code = (
        "import sys\n"
        "import click\n"
        "from llmkit.metrics import plugin\n"
        "from llmkit.pipeline import plugin as pipeline_plugin\n"
        "group = click.Group()\n"
        "plugin.register_commands(cli=group)\n"
        "pipeline_plugin.register_commands(cli=group)  # `llmkit eval` lives with the pipelines\n"
        "plugin.register_metrics(register=lambda name, target, summary: None)\n"
        "heavy = [m for m in ('torch', 'numpy', 'sacrebleu', 'sklearn') if m in sys.modules]\n"
        "assert sorted(group.commands) == ['eval', 'score'], sorted(group.commands)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == ""
