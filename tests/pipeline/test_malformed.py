"""Malformed pipeline files: every one is refused by `validate` and by `run` with exit 2 and one
line naming the file and the field, quickly; none hangs, aborts or runs a stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit.cli import cli
from llmkit.errors import LlmkitError, UsageError
from llmkit.limits import MAX_PIPELINE_BYTES
from llmkit.pipeline import config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-gpt.yaml"

BASE = """\
name: t
output: {out}
seed: 0
tokenizer: {{name: byte}}
data:
  inputs: [corpus.txt]
  unit: paragraph
  validation: 0.1
train:
  model: {{name: gpt, d_model: 16, n_layers: 1, n_heads: 2, max_positions: 32}}
  optimizer: {{name: adamw, lr: 1.0e-3}}
  context: 16
  batch_size: 2
  max_steps: 2
"""

TRAINED = BASE.replace("tokenizer: {{name: byte}}", "tokenizer: {{train_files: [corpus.txt]}}")

LAUGHS = (
    '&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    "&b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
    "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
    "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
    "&f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
    "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
    "&h [*g,*g,*g,*g,*g,*g,*g,*g,*g]",
    "&i [*h,*h,*h,*h,*h,*h,*h,*h,*h]",
)


def _bomb(text: str, key: str | None) -> str:
    """`text` with a "billion laughs" under train.optimizer (a section of free parameters), and
    its last alias as the value of top-level `key` (or of the optimizer's lr when None)."""
    anchors = "".join(f"    x{n}: {v}\n" for n, v in enumerate(LAUGHS))
    lr = "*i" if key is None else "1.0e-3"
    block = f"  optimizer:\n    name: adamw\n{anchors}    lr: {lr}\n"
    text = text.replace("  optimizer: {name: adamw, lr: 1.0e-3}\n", block)
    if key is None:
        return text
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}: ")]
    return "\n".join(lines) + f"\n{key}: *i\n"


Case = tuple[str, str, str, str]  # (case id, text of the base file, its replacement, the line)
FINITE = "train.optimizer.lr: must be a finite number"
AT_MOST = "train.batch_size: must be at most"
GRAD_ACCUM = "train.grad_accum: must be at most"
NOT_REGULAR = "/dev/zero: not a regular file"
TOKENIZER = "{train_files: [corpus.txt]}"


def _value(case: str, line: str, value: str, needle: str) -> Case:
    """A case giving the key of `line` (text of the base file) another value."""
    return case, line, f"{line.split(': ', 1)[0]}: {value}", needle


def _added(case: str, line: str, added: str, needle: str) -> Case:
    """A case adding the line `added` after `line`."""
    return case, line, f"{line}\n{added}", needle


def _tokenizer(case: str, extra: str, needle: str) -> Case:
    """A case adding `extra` to the trained tokenizer's section."""
    return case, TOKENIZER, f"{TOKENIZER[:-1]}, {extra}}}", needle


CASES: list[Case] = [
    _value("data.validation", "  validation: 0.1", "half", "data.validation: "),
    _value("data.inputs", "  inputs: [corpus.txt]", "5", "data.inputs: "),
    _added("data.shard_tokens", "  unit: paragraph", "  shard_tokens: many", "data.shard_tokens: "),
    _added("data.seed", "  unit: paragraph", "  seed: x", "data.seed: "),
    _added("data.unknown", "  unit: paragraph", "  shards: 3", "unknown key 'data.shards'"),
    _added("duplicate key", "  max_steps: 2", "  max_steps: 5", "duplicate key 'max_steps'"),
    _added("duplicate section", "seed: 0", "seed: 1", "duplicate key 'seed'"),
    _value("batch_size bool", "  batch_size: 2", "true", "train.batch_size: "),
    _value("lr inf", "lr: 1.0e-3", ".inf", FINITE),
    _value("lr inf text", "lr: 1.0e-3", "inf", FINITE),
    _value("lr nan", "lr: 1.0e-3", ".nan", FINITE),
    _value("batch_size 1e9", "  batch_size: 2", "1e9", AT_MOST),
    _value("batch_size 1.0e9", "  batch_size: 2", "1.0e+9", AT_MOST),
    _value("context 1e8", "  context: 16", "1e8", "train.context: must be at most"),
    _value("max_steps 1e30", "  max_steps: 2", "1e30", "train.max_steps: must be at most"),
    _added("grad_accum 1e12", "  max_steps: 2", "  grad_accum: 1e12", GRAD_ACCUM),
    _value(
        "model vocab_size 10", "max_positions: 32", "32, vocab_size: 10", "train.model.vocab_size: "
    ),
    _value("model n_layers 1e9", "n_layers: 1", "1000000000", "train.model.n_layers: "),
    _value("seed bool", "seed: 0", "true", "seed: "),
    _value("seed huge", "seed: 0", "1e40", "seed: must be at most"),
    _value("data.inputs /dev/zero", "  inputs: [corpus.txt]", "[/dev/zero]", NOT_REGULAR),
    _value("yaml tag", "name: t", "!!python/object/apply:os.system [echo hi]", "invalid YAML"),
    ("merge key", "  max_steps: 2", "  <<: {max_steps: 3}", "merge keys"),
    _value("deep nesting", "name: t", "[" * 100 + "]" * 100, "nested"),
    _added("eval.batches", "  max_steps: 2", "eval: {batches: 1e20}", "eval.batches: "),
]

TRAINED_CASES: list[Case] = [
    _tokenizer(
        "tokenizer.vocab_size 10",
        "vocab_size: 10",
        "tokenizer.vocab_size: vocab_size 10 is smaller",
    ),
    _tokenizer(
        "tokenizer.vocab_size 1e12", "vocab_size: 1e12", "tokenizer.vocab_size: must be at most"
    ),
    ("tokenizer.train_files /dev/zero", TOKENIZER, "{train_files: [/dev/zero]}", NOT_REGULAR),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a small corpus; the pipeline's output goes below it."""
    monkeypatch.chdir(tmp_path)
    paragraphs = [f"Paragraph {i}: the quick brown fox jumps over the lazy dog." for i in range(40)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(paragraphs) + "\n")
    return tmp_path


def _both(path: Path, *extra: str) -> list[tuple[str, int, list[str]]]:
    """(command, exit code, output lines) of `validate` and `run` on `path`."""
    out = []
    for command in ("validate", "run"):
        result = CliRunner().invoke(cli, [command, str(path), *extra])
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        out.append((command, result.exit_code, lines))
    return out


def _assert_refused(path: Path, needle: str, *extra: str) -> None:
    for command, code, lines in _both(path, *extra):
        assert code == 2, (command, code, lines)
        assert len(lines) == 1, (command, lines)
        assert lines[0].startswith(f"Error: {path}"), (command, lines)
        assert needle in lines[0], (command, lines)
    assert not (path.parent / "out").exists() or not any((path.parent / "out").iterdir())


def test_the_base_file_is_valid(workdir: Path) -> None:
    for text in (BASE, TRAINED):
        path = workdir / "p.yaml"
        path.write_text(text.format(out="out"))
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("case", "old", "new", "needle"), CASES, ids=[c[0] for c in CASES])
def test_malformed_file_is_one_line_exit_2(
    workdir: Path, case: str, old: str, new: str, needle: str
) -> None:
    text = BASE.format(out="out")
    assert old in text, case
    path = workdir / "p.yaml"
    path.write_text(text.replace(old, new, 1))
    _assert_refused(path, needle)


@pytest.mark.parametrize(
    ("case", "old", "new", "needle"), TRAINED_CASES, ids=[c[0] for c in TRAINED_CASES]
)
def test_malformed_tokenizer_is_one_line_exit_2(
    workdir: Path, case: str, old: str, new: str, needle: str
) -> None:
    text = TRAINED.format(out="out")
    path = workdir / "p.yaml"
    path.write_text(text.replace(old, new, 1))
    _assert_refused(path, needle)


@pytest.mark.parametrize("key", ["seed", "name", None])
def test_alias_bombs_are_refused(workdir: Path, key: str | None) -> None:
    path = workdir / "p.yaml"
    path.write_text(_bomb(BASE.format(out="out"), key))
    _assert_refused(path, "aliases")


def test_a_large_list_under_an_unknown_key_is_refused(workdir: Path) -> None:
    text = BASE.format(out="out")
    path = workdir / "p.yaml"
    items = "".join(f"  - {i}\n" for i in range(100_000))  # about 1 MB, under the size bound
    path.write_text(text + "junk:\n" + items[: MAX_PIPELINE_BYTES - len(text) - 100])
    _assert_refused(path, "unknown key 'junk'")
    path.write_text(
        text.replace("data:\n", "data:\n  junk:\n" + items[:500_000].replace("  -", "    -"), 1)
    )
    _assert_refused(path, "unknown key 'data.junk'")


def test_a_file_over_the_size_bound_is_refused(workdir: Path) -> None:
    path = workdir / "p.yaml"
    path.write_text(BASE.format(out="out") + "junk:\n" + "  - 1\n" * 2_000_000)  # 12 MB
    _assert_refused(path, "too large")


def test_a_removed_unknown_key_is_no_error(workdir: Path) -> None:
    path = workdir / "p.yaml"
    path.write_text(BASE.format(out="out") + "junk: [1, 2]\n")
    _assert_refused(path, "unknown key 'junk'")
    result = CliRunner().invoke(cli, ["validate", str(path), "~junk"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("device", ["/dev/urandom", "/dev/zero", "/dev/null"])
def test_a_device_as_the_pipeline_path_is_refused(workdir: Path, device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    _assert_refused(Path(device), "not a regular file")


def test_a_fifo_is_refused_as_pipeline_and_as_input(workdir: Path) -> None:
    fifo = workdir / "fifo.yaml"
    os.mkfifo(fifo)
    _assert_refused(fifo, "not a regular file")
    path = workdir / "p.yaml"
    path.write_text(BASE.format(out="out").replace("[corpus.txt]", f"[{fifo}]"))
    _assert_refused(path, "fifo.yaml: not a regular file")


def test_the_cli_refuses_a_device_in_a_real_process(workdir: Path) -> None:
    """Through the console script: no hang on /dev/urandom, exit 2, one line on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmkit", "validate", "/dev/urandom"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: /dev/urandom: not a regular file (a device, FIFO or socket); give a YAML file"
    ]


def test_data_section_is_typed_and_keeps_its_keys(workdir: Path) -> None:
    """Every key the data stage took is still taken, aliases and comma lists included."""
    path = workdir / "p.yaml"
    extra = (
        "  input: corpus.txt\n  format: text\n  field: text\n  clean: nfc, whitespace\n"
        "  include: ['*.txt']\n  exclude: []\n  on_error: skip\n  seed: 3\n  shard_tokens: 1000\n"
        "  chunk_chars: 10000\n  batch_size: 64\n  eos: null\n  val: 0.2\n"
    )
    path.write_text(
        BASE.format(out="out")
        .replace("  inputs: [corpus.txt]\n", "")
        .replace("  validation: 0.1\n", extra)
    )
    cfg = config.load(path)
    assert cfg.data is not None
    assert cfg.data.inputs == ["corpus.txt"] and cfg.data.clean == ["nfc", "whitespace"]
    assert cfg.data.validation == 0.2 and cfg.data.seed == 3
    assert cfg.data.to_mapping()["shard_tokens"] == 1000
    from llmkit.data.prepare import PrepareConfig

    fields = {f for f in PrepareConfig.__dataclass_fields__}
    from llmkit.data.options import DataOptions

    assert set(DataOptions.model_fields) == fields  # the schema and the stage cannot drift


def test_data_prepare_config_file_is_typed_too(workdir: Path) -> None:
    cfg = workdir / "d.yaml"
    cfg.write_text("inputs: [corpus.txt]\nvalidation: half\n")
    result = CliRunner().invoke(
        cli, ["data", "prepare", "--config", str(cfg), "--tokenizer", "byte", "-o", "shards"]
    )
    assert result.exit_code == 2, result.output
    assert "validation" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- a property: mutations of the shipped example never raise anything but the clean error ------

_EXAMPLE_TEXT = EXAMPLE.read_text()
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(data: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*prefix, str(key)))
            out.extend(_paths(value, (*prefix, str(key))))
    return out


_EXAMPLE_PATHS = _paths(yaml.safe_load(_EXAMPLE_TEXT))


@st.composite
def _mutations(draw: st.DrawFn) -> str:
    """The example file with one of: a value replaced, a key renamed, a line duplicated or cut,
    characters inserted, or the text truncated."""
    how = draw(st.sampled_from(["value", "key", "dup", "cut", "insert", "truncate", "alias"]))
    if how == "value":
        data = yaml.safe_load(_EXAMPLE_TEXT)
        where = draw(st.sampled_from(_EXAMPLE_PATHS))
        node = data
        for part in where[:-1]:
            node = node[part]
        node[where[-1]] = draw(_VALUES)
        return yaml.safe_dump(data)
    lines = _EXAMPLE_TEXT.splitlines()
    i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
    if how == "key":
        lines[i] = draw(st.text(alphabet="abcxyz_", min_size=1, max_size=6)) + lines[i].lstrip()
    elif how == "dup":
        lines.insert(i, lines[i])
    elif how == "cut":
        del lines[i]
    elif how == "alias":
        lines[i] = lines[i] + " &a x" if ":" in lines[i] else lines[i]
        lines.append("seed: *a")
    elif how == "insert":
        at = draw(st.integers(min_value=0, max_value=len(lines[i])))
        junk = draw(st.text(alphabet=":[]{}&*!|>-#'\" \t,x1", max_size=4))
        lines[i] = lines[i][:at] + junk + lines[i][at:]
    else:
        return _EXAMPLE_TEXT[: draw(st.integers(min_value=0, max_value=len(_EXAMPLE_TEXT)))]
    return "\n".join(lines) + "\n"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=_mutations())
def test_mutations_of_the_example_never_raise_anything_but_the_clean_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    folder = tmp_path_factory.mktemp("mut")
    (folder / "data").mkdir()
    (folder / "data" / "python-reference.txt").write_text("some text\n\nmore text\n")
    path = folder / "p.yaml"
    path.write_text(text)
    try:
        cfg = config.load(path, [f"output={folder / 'out'}"])
    except UsageError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith(str(path)), str(exc)
        return
    from llmkit.pipeline import runner

    try:
        runner.check(cfg)
    except LlmkitError as exc:
        assert exc.exit_code == 2 and len(str(exc).strip().splitlines()) == 1, str(exc)


def test_rust_trainer_refuses_a_huge_vocab_without_aborting(tmp_path: Path) -> None:
    """Past the schema (the Python API), 10^12 is still a Python exception from the Rust trainer,
    not SIGABRT: the bound is checked there and buffers are reserved fallibly."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox\n" * 20)
    code = (
        "from llmkit.tokenizers.bpe import BPETokenizer\n"
        "try:\n"
        f"    BPETokenizer.train([{str(corpus)!r}], vocab_size=10**12)\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    assert "refused:" in proc.stdout and "larger than the bound" in proc.stdout, proc.stdout
