"""Reading a settings file (a pipeline, a data config) as YAML that cannot hang or surprise.

Only regular files are read (a device such as /dev/urandom or a FIFO would be read for ever), at
most `MAX_PIPELINE_BYTES`; the YAML is parsed by a safe loader (no tags that build objects) that
also refuses what a settings file never needs and an attacker likes: aliases (`*name`, the
"billion laughs"), merge keys (`<<`), duplicate keys (the second would silently win), and nesting
deeper than `MAX_YAML_DEPTH`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmkit.errors import UsageError
from llmkit.limits import MAX_PIPELINE_BYTES, MAX_YAML_DEPTH

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MERGE_TAG = "tag:yaml.org,2002:merge"
MERGE_REFUSED = "merge keys (<<) are not allowed; write the keys out"


class _Refused(yaml.YAMLError):
    """A construct the strict loader refuses, with where it is."""

    def __init__(self, problem: str, node: yaml.Node) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = node.start_mark


class StrictLoader(_Base):
    """A safe loader that refuses aliases, merge keys and duplicate keys."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Build one node; a node met a second time is an alias (or a recursive one)."""
        if node in self.constructed_objects or node in self.recursive_objects:
            raise _Refused(
                "YAML aliases (*name) are not allowed in a settings file; write the value out",
                node,
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping; a repeated key or a merge key (<<) is an error naming the line."""
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    raise _Refused(MERGE_REFUSED, key_node)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.constructed_objects.get(key_node)
                if key in seen:
                    raise _Refused(f"duplicate key '{key}' (keep one)", key_node)
                seen.add(key)
        return mapping


def read_settings(path: str | Path, what: str = "pipeline file") -> str:
    """The text of a settings file: a regular file of at most MAX_PIPELINE_BYTES, in UTF-8."""
    file = Path(path)
    try:
        info = os.stat(file)  # stat, not open: opening a FIFO would wait for a writer
    except FileNotFoundError:
        raise UsageError(f"{file}: {what} not found") from None
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise UsageError(f"{file}: not a regular file ({kind}); give a YAML file")
    limit = f"the limit is {MAX_PIPELINE_BYTES // 1024} KiB (llmkit/limits.py)"
    if info.st_size > MAX_PIPELINE_BYTES:
        raise UsageError(f"{file}: {info.st_size} bytes is too large for a {what}; {limit}")
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_PIPELINE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_PIPELINE_BYTES:
        raise UsageError(f"{file}: too large for a {what}; {limit}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{file}: not UTF-8 text (byte {exc.start})") from None


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest in `data` (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_YAML_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


KeyCheck = Callable[[tuple[str, ...], str], None]


def _check_keys(root: yaml.Node, check: KeyCheck) -> None:
    """Call `check(section, key)` for every key of the nested mappings, before any is built.

    `check` raises on a key that is not allowed and returns for one that is; it is not asked
    about the keys below a mapping it declares free by raising `FreeSection`.
    """
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, yaml.MappingNode):
            continue
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                raise _Refused(MERGE_REFUSED, key_node)
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            try:
                check(path, key)
            except FreeSection:
                continue
            if isinstance(value_node, yaml.MappingNode):
                stack.append((value_node, (*path, key)))


class FreeSection(Exception):
    """Raised by a key check for a key whose value may hold any keys (a component's parameters)."""


def parse(text: str, source: str, keys: KeyCheck | None = None) -> Any:
    """YAML `text` parsed strictly; errors are one UsageError line naming `source` and the line.

    `keys`, when given, vets every key of the composed document before any value is built, so
    that an unknown key holding megabytes is refused before the work of building them.
    """
    try:
        loader = StrictLoader(text)
        try:
            root = loader.get_single_node()
            if keys is not None and root is not None:
                _check_keys(root, keys)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["?"])[0]
        raise UsageError(f"{source}:{where} invalid YAML: {problem}") from None
    except RecursionError:
        raise UsageError(f"{source}: invalid YAML: nested too deeply") from None
    if _depth(data) > MAX_YAML_DEPTH:
        raise UsageError(
            f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep "
            "(the bound in llmkit/limits.py)"
        )
    return data


def load_settings(
    path: str | Path, what: str = "pipeline file", keys: KeyCheck | None = None
) -> Any:
    """Read and parse a settings file (`read_settings`, then `parse`)."""
    return parse(read_settings(path, what), str(path), keys)
