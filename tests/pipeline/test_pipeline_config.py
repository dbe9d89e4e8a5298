"""Pipeline files: schema errors name the file and field; overrides; validate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.pipeline import config, runner

GOOD = """
name: t
tokenizer: {name: byte}
train:
  model: {name: gpt, d_model: 32, n_layers: 1, n_heads: 2}
  optimizer: {name: adamw, lr: 1.0e-3}
  max_steps: 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return path


def test_loads_and_applies_overrides(tmp_path: Path) -> None:
    cfg = config.load(
        write(tmp_path, GOOD), ["train.max_steps=7", "train.optimizer.lr=0.5", "seed=3"]
    )
    assert cfg.train is not None
    assert cfg.train.max_steps == 7 and cfg.seed == 3
    assert cfg.train.optimizer.params == {"lr": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("max_steps: 3", "max_step: 3"),
            "unknown key 'train.max_step'; did you mean 'max_steps'?",
        ),
        (
            GOOD.replace("max_steps: 3", "max_steps: many"),
            "train.max_steps: input should be a valid integer",
        ),
        (GOOD.replace("name: t", "nmae: t"), "unknown key 'nmae'; did you mean 'name'?"),
        (GOOD + "  precision: fp8\n", "train.precision: input should be 'fp32', 'bf16' or 'fp16'"),
        ("train:\n  max_steps: 3\n", "train: give exactly one of model"),
        ("tokenizer: {}\n", "tokenizer: give exactly one of path"),
        ("train: [1, 2\n", "invalid YAML"),
        ("- a\n- b\n", "a pipeline must be a mapping of sections"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}:")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pipeline file not found"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        config.load(write(tmp_path, GOOD), ["train.max_steps"])
    with pytest.raises(UsageError, match="'name' is not a section"):
        config.load(write(tmp_path, GOOD), ["name.x=1"])


def test_validate_command(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "train: causal_lm, model gpt, 3 steps" in result.stdout
    bad = CliRunner().invoke(cli, ["validate", str(path), "train.optimizer.lr=fast"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == f"Error: {path}: train.optimizer.lr: expected a number, got 'fast'"
    bad = CliRunner().invoke(cli, ["validate", str(path), "train.model.name=gtp"])
    assert bad.exit_code == 2 and "did you mean 'gpt'?" in bad.stderr
    bad = CliRunner().invoke(cli, ["validate", str(path), "train.model.n_layer=2"])
    assert (
        bad.exit_code == 2 and "unknown parameter 'n_layer'; did you mean 'n_layers'?" in bad.stderr
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.model.attention=gqq",
            "train.model.attention: unknown attention 'gqq'; did you mean 'gqa'?",
        ),
        ("train.model.d_model=33", "train.model: d_model=33 is not divisible by n_heads=2"),
        ("train.model.n_kv_heads=3", "train.model: n_heads=2 is not a multiple of n_kv_heads=3"),
        ("train.model.position=ropee", "train.model.position: unknown choice 'ropee'"),
        ("train.model.norm=ln", "train.model.norm: unknown choice 'ln'"),
        (
            "train.model.attention_options.windw=3",
            "train.model.attention_options: attention 'sdpa': unknown parameter 'windw'",
        ),
        (  # a Llama (RoPE) on the meta device: the options are still checked
            "train.model={name: llama, d_model: 32, n_layers: 1, n_heads: 2, n_kv_heads: 2, "
            "attention: sliding_window, attention_options: {windw: 3}}",
            "unknown parameter 'windw'; did you mean 'window'?",
        ),
    ],
)
def test_validate_builds_the_model_config(tmp_path: Path, override: str, message: str) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError) as info:
        runner.check(config.load(path, [override]))
    assert str(info.value).startswith(f"{path}: train.model")
    assert message in str(info.value) and "\n" not in str(info.value)
    result = CliRunner().invoke(cli, ["validate", str(path), override])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}: train.model") and message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.model.position=rope", "train.model.attention=gqa", "train.model.n_kv_heads=1"],
        [  # n_labels is only known once the data is read; a placeholder stands in for it
            "train.objective=classification",
            "train.model={name: bert, d_model: 32, n_layers: 1, n_heads: 2}",
        ],
    ],
)
def test_validate_accepts_models_that_build(tmp_path: Path, overrides: list[str]) -> None:
    assert runner.check(config.load(write(tmp_path, GOOD), overrides))


def test_run_checks_the_model_before_any_stage(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text to train a tokenizer on\n" * 20)
    out = tmp_path / "out"
    path = write(
        tmp_path,
        GOOD.replace("tokenizer: {name: byte}", f"tokenizer: {{train_files: [{corpus}]}}")
        + f"output: {out}\n",
    )
    result = CliRunner().invoke(cli, ["run", str(path), "train.model.attention=gqq"])
    assert result.exit_code == 2
    assert "train.model.attention: unknown attention 'gqq'" in result.stderr
    assert not (out / "tokenizer.json").exists()  # the tokenizer was not trained first


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.scheduler={name: cosine, warmup_steps: 20}"],
            "train.scheduler: total_steps (3) must exceed warmup_steps (20)",
        ),
        (["train.optimizer.lr=-1"], "train.optimizer: Invalid learning rate: -1.0"),
    ],
)
def test_validate_builds_optimizer_and_scheduler(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError, match=re.escape(f"{path}: {message}")):
        runner.check(config.load(path, overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_steps=-5", "train.max_steps: input should be greater than or equal to 1"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints: input should be greater than"),
        ("train.eval_every=-1", "train.eval_every: input should be greater than or equal to 0"),
        ("train.device=tpu", "train.device: device must be auto, cpu, cuda, cuda:N or mps"),
        ("output=", "output: string should have at least 1 character"),
        ("output=afile/sub", "output: 'afile' exists and is not a directory"),
    ],
)
def test_ranges_devices_and_output_are_checked_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, override: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError) as info:
        config.load(path, [override])
    [line] = str(info.value).splitlines()
    assert line.startswith(f"{path}: {message}"), line


def test_validate_checks_that_the_input_files_exist(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("some text\n")
    text = GOOD.replace("tokenizer: {name: byte}", "tokenizer: {train_files: [corpus.txt]}")
    path = write(tmp_path, text + "data: {inputs: [corpus.txt]}\n")
    assert runner.check(config.load(path))  # relative to the pipeline file, as run reads them
    for override, field in [
        ("tokenizer.train_files=[nope.txt]", "tokenizer.train_files"),
        ("data.inputs=[texts/*.txt]", "data.inputs"),
    ]:
        with pytest.raises(UsageError) as info:
            runner.check(config.load(path, [override]))
        assert str(info.value).startswith(f"{path}: {field}: {tmp_path}/")


def test_tokenizer_section_takes_exclude_and_limit_alphabet(tmp_path: Path) -> None:
    # The library's WordPiece options reach the pipeline: exclude skips files, limit_alphabet
    # caps the alphabet; limit_alphabet on BPE is refused by name.
    import gzip

    from llmkit.pipeline import stages

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with gzip.open(corpus / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write("the quick brown fox jumps over the lazy dog\n" * 50)
    (corpus / "skip.txt").write_text("zzzz qqqq zzzz " * 500)  # z and q would lead if read
    pipe = tmp_path / "p.yaml"
    pipe.write_text(
        f"output: {tmp_path / 'out'}\n"
        f"tokenizer: {{type: wordpiece, train_files: ['{corpus}'], vocab_size: 60, "
        "exclude: ['*skip*'], limit_alphabet: 10}\n"
    )
    cfg = config.load(pipe)
    runner.check(cfg)
    path = stages.stage_tokenizer(cfg, tmp_path, tmp_path / "out", lambda line: None)
    import llmkit

    vocab = llmkit.load_tokenizer(path).get_vocab()
    assert "z" not in vocab and "q" not in vocab  # skip.txt was not read
    singles = {t for t in vocab if len(t) == 1}
    assert len(singles) <= 10 and "e" in singles  # the 10 most frequent characters only
    with pytest.raises(UsageError, match="limit_alphabet is a wordpiece setting"):
        config.load(pipe, ["tokenizer.type=bpe"])
