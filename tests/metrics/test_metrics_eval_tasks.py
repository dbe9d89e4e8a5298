"""The masked-LM and seq2seq evaluations, the decoder start token `generate` and `eval` share, and
evaluating in one process inside a distributed job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from metrics_helpers import validation_shards

import llmkit
from llmkit.cli import cli
from llmkit.data.batching import Seq2SeqBatches
from llmkit.errors import UsageError
from llmkit.evaluation import core
from llmkit.evaluation.windows import masked_lm_windows
from llmkit.inference.generation import decoder_start_id
from llmkit.tokenizers.simple import ByteTokenizer

VOCAB = 40
MASK = 39  # the tokenizer's [MASK] id; 0 is the shards' EOS


class Specials:
    """Just what masked_lm_windows reads of a tokenizer: its special tokens."""

    special_tokens: dict[str, int] = {"[MASK]": MASK}  # noqa: RUF012


def _shards(path: Path, tokens: np.ndarray) -> Any:
    """Token shards holding `tokens` as the validation split."""
    from llmkit.data.shards import TokenShards

    return TokenShards(validation_shards(path, tokens, VOCAB), "validation")


def _bert(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return llmkit.create(
        "model", "bert", vocab_size=VOCAB, max_positions=32, n_layers=1, n_heads=2, d_model=16
    ).eval()


def _stack(batches: Any) -> tuple[list[list[int]], list[list[int]]]:
    """The rows of every batch, as (inputs, labels) lists."""
    inputs: list[list[int]] = []
    labels: list[list[int]] = []
    for batch in batches:
        assert batch["attention_mask"].shape == batch["input_ids"].shape
        inputs += batch["input_ids"].tolist()
        labels += batch["labels"].tolist()
    return inputs, labels


def test_masked_lm_windows_cover_the_split_and_mask_as_training_does(tmp_path: Path) -> None:
    tokens = np.random.default_rng(0).integers(1, MASK, 997)
    shards = _shards(tmp_path / "data", tokens)
    stream = np.concatenate([tokens, [0]]).tolist()  # 998 tokens: 31 windows of 32, one of 6
    inputs, labels = _stack(masked_lm_windows(shards, 32, 4, Specials(), seed=1))
    assert [len(row) for row in inputs] == [32] * 31 + [6]
    masked = 0
    for i, (row, gold) in enumerate(zip(inputs, labels, strict=True)):
        original = stream[32 * i : 32 * i + 32]
        for x, y, t in zip(row, gold, original, strict=True):
            if y == -100:
                assert x == t  # an unmasked token is left as it is
            else:
                assert y == t and t != 0  # the label is the original; EOS is never masked
                masked += 1
    assert 0.1 < masked / (len(stream) - 1) < 0.2  # about 15%
    assert sum(x == MASK for row in inputs for x in row) > 0.7 * masked  # mostly [MASK]

    # The masks depend on the seed and the window, not on the batch size or the rank split.
    assert _stack(masked_lm_windows(shards, 32, 7, Specials(), seed=1)) == (inputs, labels)
    split = [_stack(masked_lm_windows(shards, 32, 4, Specials(), 1, r, 3)) for r in range(3)]
    by_window = {}
    for r, (rows, golds) in enumerate(split):
        full = [i for i in range(r, 32, 3) if i < 31] + [i for i in range(r, 32, 3) if i == 31]
        by_window.update({i: (x, y) for i, x, y in zip(full, rows, golds, strict=True)})
    assert [by_window[i] for i in range(32)] == list(zip(inputs, labels, strict=True))
    assert _stack(masked_lm_windows(shards, 32, 4, Specials(), seed=2))[1] != labels

    with pytest.raises(UsageError, match="no mask token"):
        masked_lm_windows(shards, 32, 4, ByteTokenizer(["<|endoftext|>"]))


def test_evaluate_masked_lm_scores_the_masked_tokens() -> None:
    model = _bert()
    ids = torch.randint(1, MASK, (3, 20), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, ::4] = ids[:, ::4]
    masked = ids.clone()
    masked[:, ::4] = MASK
    batches = [
        {"input_ids": masked[:2], "labels": labels[:2]},
        {"input_ids": masked[2:], "labels": labels[2:], "attention_mask": torch.ones(1, 20)},
    ]
    result = core.evaluate_masked_lm(model, batches)
    with torch.no_grad():
        logits = model(masked).double()
    nll = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
    at = labels != -100
    assert result["task"] == "masked_lm" and result["details"]["masked_tokens"] == 15
    assert result["metrics"]["nll"] == pytest.approx(float(nll), rel=1e-5)
    assert result["metrics"]["perplexity"] == pytest.approx(float(nll.exp()), rel=1e-5)
    accuracy = float((logits.argmax(-1)[at] == labels[at]).double().mean())
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy)
    with pytest.raises(UsageError, match="no masked tokens"):
        core.evaluate_masked_lm(model, [{"input_ids": ids, "labels": torch.full_like(ids, -100)}])


def test_evaluate_seq2seq_is_the_teacher_forced_loss() -> None:
    tok = ByteTokenizer(["<|endoftext|>"])
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "transformer", vocab_size=tok.vocab_size, n_encoder_layers=1,
        n_decoder_layers=1, n_heads=2, d_model=16, dropout=0.0,
    ).eval()  # fmt: skip
    pairs = [("abc", "xy"), ("hello", "world!"), ("q", "r")]
    result = core.evaluate_seq2seq(model, Seq2SeqBatches(pairs, tok, 2, shuffle=False))
    nll, count = 0.0, 0
    with torch.no_grad():
        for src, tgt in pairs:
            s, t = tok.encode(src), tok.encode(tgt)
            logits = model(torch.tensor([s]), torch.tensor([[256, *t]])).double()
            nll += F.cross_entropy(logits[0], torch.tensor([*t, 256]), reduction="sum").item()
            count += len(t) + 1
    assert result["details"]["tokens"] == count
    assert result["metrics"]["nll"] == pytest.approx(nll / count, rel=1e-5)


def test_decoder_start_id_is_the_start_token_training_uses() -> None:
    def tok(*specials: str) -> ByteTokenizer:
        return ByteTokenizer(list(specials))

    # Saved settings win; else the tokenizer's BOS, else PAD, else its end token, else nothing.
    assert decoder_start_id(tok("<s>", "</s>"), {"bos_token_id": 7}) == 7
    assert decoder_start_id(tok("<s>", "</s>"), {"bos_token_id": True}) == 256
    assert decoder_start_id(tok("</s>", "<pad>", "<s>")) == 258
    assert decoder_start_id(tok("</s>", "<pad>")) == 257
    assert decoder_start_id(tok("<|endoftext|>")) == 256
    assert decoder_start_id(tok()) is None
    for specials in (["<s>", "</s>"], ["</s>", "<pad>"], ["<|endoftext|>"], ["[SEP]", "[CLS]"]):
        trained = Seq2SeqBatches([("a", "b")], tok(*specials), 1).bos_id
        assert decoder_start_id(tok(*specials)) == trained


def test_generate_and_eval_start_an_unannotated_seq2seq_checkpoint_alike(tmp_path: Path) -> None:
    """A checkpoint without `bos_token_id` (as a trainer checkpoint) decodes from the token
    training used; `generate` and `eval --task generation` give the same greedy output."""
    from llmkit.inference.generation import beam_search

    tok = ByteTokenizer(["<|endoftext|>"])
    torch.manual_seed(3)
    model = llmkit.create(
        "model", "transformer", vocab_size=tok.vocab_size, n_encoder_layers=1,
        n_decoder_layers=1, n_heads=2, d_model=16, dropout=0.0,
    ).eval()  # fmt: skip
    llmkit.save_model(model, tmp_path / "s2s", tokenizer=tok)
    saved = json.loads((tmp_path / "s2s" / "config.json").read_text())["generation"]
    assert "bos_token_id" not in saved
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", str(tmp_path / "s2s"), "-p", "abc", "-n", "4"])
    assert result.exit_code == 0, result.output
    [[best]] = beam_search(
        model, [tok.encode("abc")], beam_size=4, max_new_tokens=4, bos_token_id=256,
        eos_token_id=256,
    )  # fmt: skip
    assert result.output == tok.decode(best.tokens) + "\n"

    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"prompt": "abc", "reference": "x"}) + "\n")
    preds = tmp_path / "p.txt"
    args = ["--data", str(data), "--max-new-tokens", "4", "--predictions-out", str(preds)]
    evaluated = runner.invoke(cli, ["eval", str(tmp_path / "s2s"), "--task", "generation", *args])
    assert evaluated.exit_code == 0, evaluated.output
    one_beam = runner.invoke(cli, ["generate", str(tmp_path / "s2s"), "-p", "abc", "-n", "4",
                                   "--beams", "1"])  # fmt: skip
    assert preds.read_text() == " ".join(one_beam.output.strip().splitlines()) + "\n"

    for task in ("lm", "classification"):  # nothing to score without a decoder-only LM
        scored = runner.invoke(cli, ["eval", str(tmp_path / "s2s"), "--task", task, *args[:2]])
        assert scored.exit_code == 2 and "Traceback" not in scored.output
        assert scored.stderr.strip() == (
            f"Error: {tmp_path / 's2s'}: a transformer checkpoint is an encoder-decoder, which "
            f"--task {task} cannot score (it needs a decoder-only LM); use --task generation"
        )

    bare = ByteTokenizer()  # no BOS, PAD or end token: nothing to start from
    llmkit.save_model(model, tmp_path / "bare", tokenizer=bare)
    refused = runner.invoke(cli, ["generate", str(tmp_path / "bare"), "-p", "abc"])
    assert refused.exit_code == 2 and "needs a decoder start token" in refused.output


def test_eval_masked_lm_cli_and_its_refusals(tmp_path: Path) -> None:
    tok = ByteTokenizer(["<|endoftext|>", "[MASK]"])
    shards = tmp_path / "data"
    _shards(shards, np.random.default_rng(0).integers(1, 200, 300))
    torch.manual_seed(0)
    bert = llmkit.create(
        "model", "bert", vocab_size=tok.vocab_size, max_positions=32, n_layers=1, n_heads=2,
        d_model=16,
    )  # fmt: skip
    llmkit.save_model(bert, tmp_path / "bert", tokenizer=tok)
    runner = CliRunner()
    base = ["eval", str(tmp_path / "bert"), "--data", str(shards), "--device", "cpu"]
    result = runner.invoke(cli, [*base, "--task", "masked_lm", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["task"] == "masked_lm" and report["details"]["context"] == 32
    assert set(report["metrics"]) == {"perplexity", "nll", "bits_per_token", "accuracy"}

    def refused(args: list[str]) -> str:
        out = runner.invoke(cli, args)
        assert out.exit_code == 2 and "Traceback" not in out.output, out.output
        error = out.stderr.strip()
        assert error.startswith("Error: ") and "\n" not in error
        return str(error)

    assert "--task masked_lm" in refused(base)  # no causal perplexity of an encoder
    assert "--predictions-out" in refused([*base, "--task", "masked_lm", "--predictions-out", "x"])
    llmkit.save_model(
        llmkit.create("model", "gpt", vocab_size=tok.vocab_size, n_layers=1, n_heads=2, d_model=16),
        tmp_path / "gpt",
        tokenizer=tok,
    )
    error = refused(["eval", str(tmp_path / "gpt"), "--data", str(shards), "--task", "masked_lm"])
    assert error.startswith(f"Error: {tmp_path / 'gpt'}: a gpt checkpoint has no masked-LM head")
    llmkit.save_model(bert, tmp_path / "nomask", tokenizer=ByteTokenizer(["<|endoftext|>"]))
    error = refused(
        ["eval", str(tmp_path / "nomask"), "--data", str(shards), "--task", "masked_lm"]
    )
    assert error.startswith(f"Error: {tmp_path / 'nomask'}: the tokenizer has no mask token")


def test_this_process_only_counts_without_summing_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmkit.metrics.base import CountingMetric, Metric

    def sync(self: Any, process_group: Any = None) -> None:
        raise AssertionError("synced across ranks")

    monkeypatch.setattr(Metric, "sync", sync)
    monkeypatch.setattr(CountingMetric, "sync", sync)
    model = _bert()
    batch = {"input_ids": torch.full((1, 8), MASK), "labels": torch.arange(8)[None] + 1}
    with core.this_process_only():
        assert core.evaluate_masked_lm(model, [batch])["details"]["masked_tokens"] == 8
        assert core.evaluate_classification([0, 1], [0, 0])["metrics"]["accuracy"] == 0.5
    with pytest.raises(AssertionError, match="synced"):
        core.evaluate_masked_lm(model, [batch])
