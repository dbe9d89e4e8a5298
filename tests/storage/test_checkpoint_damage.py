"""Damaged checkpoints: every file of a step checkpoint, flipped, truncated, deleted or taken from
an older step, is named and skipped on resume; a damaged model/ is refused on load by name."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import llmkit
from llmkit.errors import UsageError
from llmkit.storage import train_state
from llmkit.storage.checkpoint import load_model, save_model
from llmkit.storage.lock import output_lock
from llmkit.storage.manifest import DamagedError, write_manifest
from llmkit.storage.tokenizer_files import load_checkpoint_tokenizer
from llmkit.tokenizers.simple import ByteTokenizer
from llmkit.train.distributed import Dist
from llmkit.train.trainer import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from trainer_helpers import FixedBatches, tiny_gpt

FILES = [
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "trainer_state.json",
    "tokenizer.json",
    "manifest.json",
]


def make_trainer(out: Path, lines: list[str]) -> Trainer:
    torch.manual_seed(0)
    model = tiny_gpt()
    optimizer = llmkit.create("optimizer", "adamw", model.parameters(), lr=1e-2)
    settings = TrainSettings(max_steps=4, log_every=2, checkpoint_every=2, keep_checkpoints=2)
    dist = Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return Trainer(
        model,
        "causal_lm",
        optimizer,
        None,
        llmkit.create("loss", "cross_entropy"),
        FixedBatches(),
        settings,
        out,
        dist,
        tokenizer=ByteTokenizer(),
        log=lines.append,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    make_trainer(out, []).fit()
    assert {p.name for p in (out / "checkpoints").iterdir()} >= {"step-0000002", "step-0000004"}
    return out


def damage(path: Path, how: str, older: Path) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        for i in range(8):
            data[len(data) // 2 + i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    else:
        shutil.copy(older / path.name, path)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "older"])
def test_each_damaged_file_is_named_and_skipped_on_resume(
    trained: Path, tmp_path: Path, how: str
) -> None:
    for name in FILES:
        out = tmp_path / f"{name}-{how}"
        shutil.copytree(trained, out)
        newest, older = out / "checkpoints" / "step-0000004", out / "checkpoints" / "step-0000002"
        same = (newest / name).read_bytes() == (older / name).read_bytes()
        damage(newest / name, how, older)
        lines: list[str] = []
        trainer = make_trainer(out, lines)
        assert trainer.resume()
        if how == "older" and same:  # the same bytes are no damage
            assert trainer.step == 4, name
            continue
        assert trainer.step == 2, (name, how, lines)
        skipped = [line for line in lines if line.startswith("resume: skipping")]
        assert len(skipped) == 1 and "step-0000004" in skipped[0], lines
        assert name in skipped[0] or "manifest.json" in skipped[0] or how == "older", skipped


def test_forged_step_values_are_refused(trained: Path, tmp_path: Path) -> None:
    for step in (-1, 3, 10**9, "4"):
        out = tmp_path / f"s{step}"
        shutil.copytree(trained, out)
        newest = out / "checkpoints" / "step-0000004"
        state = json.loads((newest / "trainer_state.json").read_text())
        state["step"] = step
        (newest / "trainer_state.json").write_text(json.dumps(state))
        write_manifest(newest, 4)  # even with a manifest that matches the edited file
        lines: list[str] = []
        trainer = make_trainer(out, lines)
        assert trainer.resume() and trainer.step == 2
        assert any("trainer_state.json: step" in line for line in lines), lines


def test_latest_outside_the_run_is_ignored_and_an_aside_copy_is_used(
    trained: Path, tmp_path: Path
) -> None:
    for hint in ("../../x", "/etc", "step-0000002/../../y"):
        out = tmp_path / f"h{len(hint)}"
        shutil.copytree(trained, out)
        (out / "checkpoints" / "latest").write_text(hint + "\n")
        lines: list[str] = []
        trainer = make_trainer(out, lines)
        assert trainer.resume() and trainer.step == 4
        assert sum("is not a step directory beside it" in line for line in lines) == 1
    out = tmp_path / "aside"
    shutil.copytree(trained, out)
    ckpts = out / "checkpoints"
    os.rename(ckpts / "step-0000004", ckpts / ".step-0000004.old.123")  # killed between renames
    trainer = make_trainer(out, [])
    assert trainer.resume() and trainer.step == 4
    train_state.tidy(ckpts)
    assert (ckpts / "step-0000004").is_dir() and not (ckpts / ".step-0000004.old.123").exists()
    assert train_state.find_resumable(ckpts) == ckpts / "step-0000004"


def saved(tmp_path: Path) -> Path:
    model_dir = tmp_path / "model"
    save_model(tiny_gpt(), model_dir, tokenizer=ByteTokenizer(), step=4)
    return model_dir


@pytest.mark.parametrize(
    "name", ["config.json", "model.safetensors", "tokenizer.json", "manifest.json"]
)
@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_model_is_refused_on_load(tmp_path: Path, name: str, how: str) -> None:
    model_dir = saved(tmp_path)
    damage(model_dir / name, how, model_dir)
    with pytest.raises(UsageError) as err:
        load_model(model_dir)
        load_checkpoint_tokenizer(model_dir)
    assert name in str(err.value) and "\n" not in str(err.value)


def test_no_verify_loads_edited_weights(tmp_path: Path) -> None:
    model_dir = saved(tmp_path)
    damage(model_dir / "model.safetensors", "flip", model_dir)
    with pytest.raises(DamagedError, match=r"model\.safetensors: damaged or edited"):
        load_model(model_dir)
    assert isinstance(load_model(model_dir, verify=False), torch.nn.Module)


def test_cli_refuses_damage_in_one_line_and_takes_no_verify(tmp_path: Path) -> None:
    from llmkit.cli import cli

    model_dir = saved(tmp_path)
    damage(model_dir / "model.safetensors", "flip", model_dir)
    runner = CliRunner()
    for args in (
        ["generate", str(model_dir), "-p", "ab", "-n", "2"],
        ["export", "hf", str(model_dir), "-o", str(tmp_path / "hf")],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "model.safetensors: damaged or edited" in result.output
        assert "Traceback" not in result.output
    args = ["export", "hf", str(model_dir), "-o", str(tmp_path / "hf"), "--no-verify"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_half_tokenizer_is_refused_by_eval(tmp_path: Path) -> None:
    from llmkit.pipeline.evaluate import _tokenizer

    model_dir = saved(tmp_path)
    damage(model_dir / "tokenizer.json", "truncate", model_dir)
    with pytest.raises(DamagedError, match=r"tokenizer\.json"):
        _tokenizer(model_dir, None)


def test_tokenizer_names_are_registry_names_never_import_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = saved(tmp_path)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    assert config["tokenizer"] == {"name": "byte", "file": "tokenizer.json"}
    monkeypatch.setattr(os, "system", lambda *a: pytest.fail("os.system was called"))
    for field in ({"class": "os:system"}, {"name": "os:system"}, {"name": "nope"}):
        config_path.write_text(
            json.dumps({**config, "tokenizer": {**field, "file": "tokenizer.json"}})
        )
        with pytest.raises(UsageError, match=r"is not a registered tokenizer \(registered: .*byte"):
            load_checkpoint_tokenizer(model_dir, verify=False)
    legacy = {"class": "llmkit.tokenizers.simple:ByteTokenizer", "file": "tokenizer.json"}
    config_path.write_text(json.dumps({**config, "tokenizer": legacy}))
    assert isinstance(load_checkpoint_tokenizer(model_dir, verify=False), ByteTokenizer)


def test_a_second_run_on_a_locked_output_stops(tmp_path: Path) -> None:
    from llmkit.pipeline import runner
    from llmkit.pipeline.config import load

    out = tmp_path / "out"
    pipe = tmp_path / "p.yaml"
    pipe.write_text(f"name: x\noutput: {out}\ntokenizer: {{name: byte}}\n")
    with output_lock(out):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(UsageError, match=r"another llmkit run \(pid \d+\) is using"):
            runner.run(load(pipe), tmp_path)
        assert sorted(p.name for p in out.iterdir()) == before
    runner.run(load(pipe), tmp_path)  # released: the next run goes ahead
