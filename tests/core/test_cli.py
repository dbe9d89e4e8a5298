"""The CLI shell through Click's runner and through real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import llmkit
from llmkit.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"llmkit {llmkit.__version__}"


def test_help_lists_core_commands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in ("plugins", "components", "describe"):
        assert command in out


def test_components_table_and_kind_filter() -> None:
    code, out, _ = run("components", "optimizer")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "summary", "plugin"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(names) and {"adam", "adamw", "lamb", "sgd"} <= set(names)
    assert all(" optimizer " in line for line in lines[1:])


@pytest.mark.parametrize(
    ("kind", "builtins"),
    [
        ("norm", {"layernorm", "rmsnorm"}),
        ("mlp", {"gelu", "gelu_tanh", "relu", "swiglu"}),
        ("position", {"none", "learned", "sinusoidal", "rope", "alibi"}),
    ],
)
def test_components_lists_builtin_model_parts(kind: str, builtins: set[str]) -> None:
    code, out, _ = run("components", kind)
    assert code == 0
    rows = [line.split(maxsplit=2) for line in out.splitlines()[1:]]
    assert {row[0] for row in rows} == builtins
    assert all(row[1] == kind and not row[2].startswith("llmkit") for row in rows)


def test_components_knows_the_objective_kind() -> None:
    code, out, _ = run("components", "objective")
    assert code == 0 and out.splitlines()[0].split() == ["name", "kind", "summary", "plugin"]
    rows = [line.split() for line in out.splitlines()[1:]]
    builtins = {"causal_lm", "masked_lm", "seq2seq", "classification"}
    assert {row[0] for row in rows if row[-1] == "llmkit.objectives"} >= builtins
    assert all(row[1] == "objective" for row in rows)


def test_describe_shows_parameters() -> None:
    code, out, _ = run("describe", "optimizer", "lamb")
    assert code == 0
    assert "optimizer 'lamb'" in out
    row = next(line for line in out.splitlines() if line.startswith("lr "))
    assert "float" in row and "0.001" in row and "Learning rate." in row


def test_plugins_lists_builtins() -> None:
    code, out, _ = run("plugins")
    assert code == 0
    assert any(line.startswith("llmkit.optim ") and "built-in" in line for line in out.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("describe", "optimizer", "lambb"),
            "Error: unknown optimizer 'lambb'; did you mean 'lamb'?",
        ),
        (
            ("components", "optimiser"),
            "Error: unknown component kind 'optimiser'; did you mean 'optimizer'?",
        ),
    ],
)
def test_input_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    code, _out, err = run(*args)
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_usage_error_exit_2() -> None:
    code, _, err = run("describe", "optimizer")
    assert code == 2 and "Missing argument" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("describe", "optimizer"),
            "Error: Missing argument 'NAME'. (see 'llmkit describe --help')",
        ),
        (("--bogus",), "Error: No such option '--bogus'. (see 'llmkit --help')"),
        (("nosuch",), "Error: No such command 'nosuch'. (see 'llmkit --help')"),
        (
            ("run", "--bogus", "p.yaml"),
            "Error: No such option '--bogus'. (see 'llmkit run --help')",
        ),
        (
            ("generate", "ckpt", "-p", "hi", "--dtype", "int3"),
            "Error: Invalid value for '--dtype': 'int3' is not one of",
        ),
        (("export", "hf"), "Error: Missing argument 'CKPT_DIR'. (see 'llmkit export hf --help')"),
    ],
)
def test_click_usage_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(cli, list(args), prog_name="llmkit")
    code, err = result.exit_code, result.stderr
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1, err


def _llmkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_real_subprocess_error_and_debug() -> None:
    proc = _llmkit("describe", "optimizer", "nope")
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown optimizer 'nope'")
    assert "Traceback" not in proc.stderr
    debug = _llmkit("--debug", "describe", "optimizer", "nope")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from llmkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "import llmkit; llmkit.components()\n"
        "assert 'torch' not in sys.modules, 'torch imported by listing components'\n"
        "for name in ('matplotlib', 'tensorboard', 'tqdm', 'torch.utils.tensorboard'):\n"
        "    assert name not in sys.modules, f'{name} imported by --help'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_example_plugin_discovered_for_real(example_plugin_dir: Path) -> None:
    env = {"PYTHONPATH": str(example_plugin_dir), "LLMKIT_PLUGINS": "llmkit-example"}
    proc = _llmkit("components", "metric", env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("jaccard "))
    assert row.split()[-1] == "example"
    plugins_out = _llmkit("plugins", env=env).stdout
    assert any(
        line.startswith("example ") and "llmkit-example" in line and "example-jaccard" in line
        for line in plugins_out.splitlines()
    )


def test_example_plugin_command_and_create(
    example_plugin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("the cat sat\na b\n")
    ref.write_text("the cat sat down\nc d\n")
    env = {"PYTHONPATH": str(example_plugin_dir), "LLMKIT_PLUGINS": "example"}
    proc = _llmkit("example-jaccard", str(hyp), str(ref), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "jaccard = 0.3750 over 2 lines"
    ref.write_text("only one line\n")
    bad = _llmkit("example-jaccard", str(hyp), str(ref), env=env)
    assert bad.returncode == 2 and "has 2 lines but" in bad.stderr

    from llmkit import plugins

    monkeypatch.syspath_prepend(str(example_plugin_dir))
    monkeypatch.setenv("LLMKIT_PLUGINS", "example")
    plugins.reset()
    import torch

    model = torch.nn.Linear(2, 1)
    opt = llmkit.create("optimizer", "signum", model.parameters(), lr=0.5, momentum=0.0)
    model(torch.ones(1, 2)).sum().backward()
    before = model.weight.detach().clone()
    opt.step()
    assert torch.allclose(model.weight, before - 0.5)


def test_broken_plugin_does_not_break_cli(tmp_path: Path) -> None:
    info = tmp_path / "brokenplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[llmkit]\nbroken = brokenplug_mod\n")
    (tmp_path / "brokenplug_mod.py").write_text("raise RuntimeError('this plugin is broken')\n")
    env = {"PYTHONPATH": str(tmp_path), "LLMKIT_PLUGINS": "broken"}
    assert _llmkit("--help", env=env).returncode == 0
    proc = _llmkit("plugins", env=env)
    assert proc.returncode == 0
    line = next(x for x in proc.stdout.splitlines() if x.startswith("broken "))
    assert "ERROR failed to load: RuntimeError: this plugin is broken" in line
    assert _llmkit("describe", "optimizer", "adamw", env=env).returncode == 0


def test_example_plugin_attention_in_a_model(
    example_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmkit import plugins

    monkeypatch.syspath_prepend(str(example_plugin_dir))
    monkeypatch.setenv("LLMKIT_PLUGINS", "example")
    plugins.reset()
    import torch

    torch.manual_seed(0)
    attn = llmkit.create("attention", "quiet", d_model=8, n_heads=2, causal=True)
    x = torch.randn(1, 5, 8)
    # The defining formula, written independently: softmax over the scores plus one zero logit.
    q, k, v = attn.qkv(x).split(8, dim=-1)
    q, k, v = (t.view(1, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) / 2.0
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    weights = scores.exp() / (1 + scores.exp().sum(-1, keepdim=True))
    expected = attn.out((weights @ v).transpose(1, 2).reshape(1, 5, 8))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)
    assert float(weights.detach().sum(-1).max()) < 1.0

    model = llmkit.create(
        "model", "gpt", vocab_size=40, d_model=16, n_layers=1, n_heads=2, attention="quiet"
    )
    ids = torch.randint(0, 40, (2, 6))
    full = model(ids)
    cache = model.new_cache(2)
    steps = [model(ids[:, i : i + 1], cache=cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge pages are a Linux setting")
@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_cli_turns_on_huge_pages_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    from llmkit.cli import ENV_THP, main

    if given is None:
        monkeypatch.delenv(ENV_THP, raising=False)
    else:
        monkeypatch.setenv(ENV_THP, given)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ[ENV_THP] == expected
