"""Hermetic tests: no installed third-party plugin leaks in; each test starts with a fresh plugin host."""

from __future__ import annotations

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
