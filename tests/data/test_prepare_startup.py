"""What `prepare` does before the first chunk: its components from the data plugin alone, the
input listing, the settings it checks itself."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit.data.prepare import PrepareConfig, make_cleaners, make_reader
from llmkit.data.readers import expand_paths
from llmkit.errors import UsageError


def test_data_components_come_from_the_data_plugin_alone() -> None:
    from llmkit import plugins

    plugins.reset()
    before = set(sys.modules)
    cleaners = make_cleaners(["nfc", {"length": {"min_chars": 3}}])
    host = plugins.get_host.__globals__["_host"]
    assert host is not None and list(host.plugins) == ["llmkit.data"]
    assert not any(m.startswith("llmkit.nn") or m == "torch" for m in set(sys.modules) - before)
    assert [c.name for c in cleaners] == ["nfc", "length"]
    assert cleaners[1].config()["min_chars"] == 3
    import llmkit

    full = llmkit.get("cleaner", "nfc")  # a full load later: the same component, every plugin
    assert full is plugins.builtin_component("llmkit.data", "cleaner", "nfc")
    assert "llmkit.nn" in plugins.get_host().plugins


def test_an_unknown_or_badly_set_cleaner_is_refused_as_before() -> None:
    with pytest.raises(UsageError, match="did you mean 'nfc'"):
        make_cleaners(["nfd"])
    with pytest.raises(UsageError, match="min_chars: expected an integer"):
        make_cleaners([{"length": {"min_chars": "many"}}])


@pytest.mark.parametrize(
    ("key", "value"), [("inputs", "a.txt"), ("exclude", [3]), ("field", 5), ("unit", None)]
)
def test_reader_settings_of_the_wrong_type_are_named(key: str, value: object) -> None:
    cfg = PrepareConfig(inputs=["a.txt"])
    setattr(cfg, key, value)
    with pytest.raises(UsageError, match=key):
        make_reader(cfg)


def _walk_reference(spec: str, include: list[str], exclude: list[str]) -> list[Path]:
    """The listing as it was: os.walk, sorted Paths, a stat per file, fnmatch per pattern."""

    def wanted(p: Path) -> bool:
        text = p.as_posix()
        if any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(text, pat) for pat in exclude):
            return False
        return not include or any(
            fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(text, pat) for pat in include
        )

    found = sorted(
        Path(root) / name
        for root, _, files in os.walk(spec)
        for name in files
        if not name.startswith(".")
    )
    return [p for p in found if os.path.isfile(p) and wanted(p)]


_NAMES = st.sampled_from(["a", "a-b", "a.b", "A", "_", "b0", ".h", "z", "a b"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.lists(st.lists(_NAMES, min_size=1, max_size=3), min_size=1, max_size=12),
    links=st.lists(st.tuples(_NAMES, st.integers(0, 11)), max_size=3),
    patterns=st.lists(st.sampled_from(["*.b", "a*", "*/a/*", "a-b/*", "*z*"]), max_size=2),
    prefix=st.sampled_from(["", "./", "abs"]),
    split=st.booleans(),
)
def test_listing_a_directory_matches_the_os_walk_order(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[list[str]],
    links: list[tuple[str, int]],
    patterns: list[str],
    prefix: str,
    split: bool,
) -> None:
    root = tmp_path_factory.mktemp("tree")
    made: list[Path] = []
    for parts in files:
        path = root.joinpath("top", *parts)
        if any(p.is_file() for p in [path, *path.parents]) or path.is_dir():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        made.append(path)
    for name, target in links:  # links to files and to folders, and a broken one
        link = root / "top" / f"link-{name}"
        if not os.path.lexists(link):
            goal = made[target % len(made)] if target % 3 else root / "top" / "missing"
            os.symlink(goal.parent if target % 2 else goal, link)
    here = os.getcwd()
    os.chdir(root)
    try:
        spec = {"": "top", "./": "./top/", "abs": str(root / "top")}[prefix]
        include, exclude = (patterns, []) if split else ([], patterns)
        expected = _walk_reference(spec, include, exclude)
        if not expected:
            with pytest.raises(UsageError, match="matches no files"):
                expand_paths([spec], include, exclude)
            return
        got = expand_paths([spec], include, exclude)
        assert got == expected
        assert [str(p) for p in got] == [str(p) for p in expected]
    finally:
        os.chdir(here)


def test_a_rank_file_parsed_first_builds_the_tokenizer_load_tokenizer_builds(
    tmp_path: Path,
) -> None:
    import base64
    import gc

    from llmkit.data.prepare import _tiktoken_build, load_tokenizer

    ranks = [bytes([b]) for b in range(256)] + [b"th", b"the", b" the", b"in", b"ing"]
    path = tmp_path / "small.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(ranks)))
    build = _tiktoken_build(str(path))
    assert build is not None and gc.isenabled()  # the parse paused the collector, then not
    text = "the thing in the ring"
    assert build().encode(text) == load_tokenizer(str(path)).encode(text)
    assert _tiktoken_build("byte") is None
    (tmp_path / "tok.json").write_text("{}")
    assert _tiktoken_build(str(tmp_path / "tok.json")) is None
    (tmp_path / "bad.tiktoken").write_text("not base64 at all\n")
    with pytest.raises(UsageError, match=r"bad\.tiktoken:1"):
        _tiktoken_build(str(tmp_path / "bad.tiktoken"))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "path": st.text(max_size=12),
                "bytes": st.integers(0, 2**40),
                "sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
            }
        ),
        max_size=6,
    ),
    st.dictionaries(st.sampled_from(["x", "inputs2", "z\u00e9"]), st.text(max_size=5), max_size=2),
)
def test_the_manifest_text_is_what_the_indenting_encoder_writes(
    inputs: list[dict[str, object]], extra: dict[str, str]
) -> None:
    from llmkit.data.prepare import manifest_json

    manifest = {"format_version": 1, "inputs": inputs, "config": {"inputs": "no"}, **extra}
    assert manifest_json(manifest) == json.dumps(manifest, indent=2) + "\n"
