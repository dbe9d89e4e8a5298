"""`llmkit import hf` shows a live bar of the tensors read on a terminal (a real pseudo-terminal),
none in a pipe or under --quiet, and the sharded weights it reads are the model's own."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from click.testing import CliRunner
from helpers import run_in_pty
from safetensors.torch import load_file, save_file

import llmkit
from llmkit.cli import cli
from llmkit.storage.hf import save_hf

BAR = re.compile(
    r"import: +100%\|.*\| *(\d+)/(\d+) \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(tensor/s|s/tensor)"
)


def sharded_hf_dir(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny Llama saved in the Hugging Face layout, its weights split over two shards."""
    torch.manual_seed(0)
    sizes = dict(vocab_size=64, max_positions=32, n_layers=2, n_heads=2, d_model=32, d_ff=64)
    model = llmkit.create("model", "llama", n_kv_heads=1, **sizes)
    save_hf(model, folder)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(weights)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: weights[k] for k in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder, model.state_dict()


def test_a_terminal_gets_a_bar_of_every_tensor_and_the_weights_are_the_models(
    tmp_path: Path,
) -> None:
    src, state = sharded_hf_dir(tmp_path / "hf")
    tensors = sum(len(load_file(str(shard))) for shard in src.glob("model-*.safetensors"))
    out = tmp_path / "ckpt"
    text = run_in_pty([sys.executable, "-m", "llmkit", "import", "hf", str(src), "-o", str(out)])
    found = BAR.search(text)
    assert found, text[-2000:]
    assert int(found.group(1)) == int(found.group(2)) == tensors  # both shards, every tensor
    assert "\r" in text  # redrawn in place
    imported = llmkit.load_model(out).state_dict()
    assert imported.keys() == state.keys()
    assert all(torch.equal(imported[k], state[k]) for k in state)


def test_a_pipe_and_quiet_get_no_bar(tmp_path: Path) -> None:
    src, _ = sharded_hf_dir(tmp_path / "hf")
    for flags, out in (([], tmp_path / "piped"), (["--quiet"], tmp_path / "quiet")):
        result = CliRunner().invoke(cli, [*flags, "import", "hf", str(src), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert not BAR.search(result.output) and "\r" not in result.output
        assert "import:" not in result.output
        assert (out / "config.json").is_file()
