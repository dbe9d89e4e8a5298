"""`llmkit eval` and the evaluation library on tiny models built here: LM, classification, generation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from metrics_helpers import validation_shards
from sklearn import metrics as skm
from torch import nn

import llmkit
from llmkit.cli import cli
from llmkit.errors import UsageError
from llmkit.evaluation import core
from llmkit.plots.confusion import save_confusion_png

VOCAB = 40


def _tiny_gpt(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return llmkit.create(
        "model", "gpt", vocab_size=VOCAB, max_positions=32, n_layers=1, n_heads=2, d_model=16
    )


def _shards(path: Path, tokens: np.ndarray) -> Path:
    """A prepared data directory holding `tokens` as the validation split (one document)."""
    return validation_shards(path, tokens, VOCAB)


def _read_png(path: Path) -> np.ndarray:
    """The PNG's pixels as 8-bit RGB, decoded by matplotlib."""
    from matplotlib.image import imread

    return (np.asarray(imread(path))[:, :, :3] * 255).round().astype(np.uint8)


def test_eval_lm_cli_equals_independent_perplexity(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, 200)
    data = _shards(tmp_path / "data", tokens)
    a, b = _tiny_gpt(0), _tiny_gpt(1)
    llmkit.save_model(a, tmp_path / "a")
    llmkit.save_model(b, tmp_path / "b")
    out = tmp_path / "res.json"
    result = CliRunner().invoke(
        cli,
        ["eval", str(tmp_path / "a"), "--data", str(data), "--context", "16",
         "--batch-size", "2", "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    # independently: windows of 16 inputs every 16 tokens; every token but the first is scored
    stream = np.concatenate([tokens, [0]])  # the writer appends EOS
    nll, count = 0.0, 0
    a.eval()
    with torch.no_grad():
        for start in range(0, len(stream) - 1, 16):
            x = torch.as_tensor(stream[start : start + 17], dtype=torch.long)[None]
            logits = a(x[:, :-1]).double()
            nll += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
            count += x.shape[1] - 1
    assert saved["details"]["tokens"] == count == len(stream) - 1
    assert saved["metrics"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert "perplexity" in result.output and saved["model"] == str(tmp_path / "a")

    both = CliRunner().invoke(
        cli,
        ["eval", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--data", str(data),
         "--context", "16", "--device", "cpu", "--json"],
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    runs = json.loads(both.output)["runs"]
    assert runs[0]["metrics"]["perplexity"] == pytest.approx(saved["metrics"]["perplexity"])
    assert runs[1]["metrics"]["perplexity"] != runs[0]["metrics"]["perplexity"]

    table = CliRunner().invoke(cli, ["eval", str(out), "--compare", str(out)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    model = tmp_path / "a"  # the models the results came from name the columns
    assert lines[-6:-4] == [f"A: {model}", f"B: {model}"]  # the side-by-side table ends the output
    assert lines[-4].split() == ["metric", "A", "B", "B", "-", "A"]
    assert lines[-3].split()[0] == "perplexity" and lines[-3].split()[-1] == "0.0000"


def test_eval_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["eval", str(tmp_path / "nope"), "--data", str(tmp_path)])
    assert missing.exit_code == 2 and "checkpoint directory not found" in missing.output
    llmkit.save_model(_tiny_gpt(0), tmp_path / "ckpt")
    no_data = runner.invoke(cli, ["eval", str(tmp_path / "ckpt")])
    assert no_data.exit_code == 2 and "--data is required" in no_data.output
    bad = runner.invoke(
        cli, ["eval", str(tmp_path / "ckpt"), "--data", str(tmp_path), "--device", "cpu"]
    )
    assert bad.exit_code == 2 and "manifest" in bad.output
    notok = runner.invoke(
        cli,
        ["eval", str(tmp_path / "ckpt"), "--task", "generation", "--data", "x.jsonl",
         "--device", "cpu"],
    )  # fmt: skip
    assert notok.exit_code == 2 and "carries no tokenizer" in notok.output


def test_evaluate_lm_library_accepts_blocks_and_token_bytes() -> None:
    model = _tiny_gpt(3)
    g = torch.Generator().manual_seed(0)
    blocks = [torch.randint(0, VOCAB, (2, 9), generator=g) for _ in range(3)]
    token_bytes = [0] + [2] * (VOCAB - 1)
    result = core.evaluate_lm(model, blocks, token_bytes=token_bytes)
    with torch.no_grad():
        logits = torch.cat([model(b[:, :-1]) for b in blocks]).double()
    targets = torch.cat([b[:, 1:] for b in blocks])
    nll = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="none")
    keep = targets.reshape(-1) != 0
    assert result["metrics"]["perplexity"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)
    expected_bpb = nll[keep].sum().item() / (math.log(2) * 2 * int(keep.sum()))
    assert result["metrics"]["bits_per_byte"] == pytest.approx(expected_bpb, rel=1e-5)
    with pytest.raises(UsageError, match="no batches"):
        core.evaluate_lm(model, [])


def test_evaluate_classification_equals_sklearn_and_renders(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 50).tolist()
    pred = [g if rng.random() < 0.7 else int(rng.integers(0, 3)) for g in gold]
    names = ["negative", "neutral", "positive", "unused"]
    result = core.evaluate_classification(pred, gold, names)
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(
            skm.f1_score(gold, pred, average=avg, labels=[0, 1, 2, 3], zero_division=0)
        )
    cm = result["details"]["confusion_matrix"]
    assert cm["labels"] == names
    np.testing.assert_array_equal(
        cm["matrix"], skm.confusion_matrix(gold, pred, labels=[0, 1, 2, 3])
    )
    text = core.format_results(result)
    assert "negative" in text and "confusion matrix" in text and "f1_macro" in text
    png = _read_png(save_confusion_png(tmp_path / "cm.png", names, cm["matrix"]))
    assert png.shape[0] >= 400 and png.shape[1] >= 400
    assert (png < 40).all(axis=2).sum() > 200  # labels and counts were drawn
    assert ((png[:, :, 0] < 100) & (png[:, :, 2] > 150)).sum() > 1000  # dark-blue cells
    (tmp_path / "cm.png").unlink()
    path = core.write_results(tmp_path / "r.json", result)
    assert core.load_results(path)["metrics"] == pytest.approx(m)
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


class ByteTokenizer:
    """Bytes 0-255 plus <|endoftext|> (256): enough of the Tokenizer protocol for these tests."""

    vocab_size = 257
    special_tokens: ClassVar[dict[str, int]] = {"<|endoftext|>": 256}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Any) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class FirstByteClassifier(nn.Module):
    """Predicts class (first byte % 3): a model with a classification head."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def classify(
        self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.one_hot(ids[:, 0] % 3, 3).float() * self.scale


class Echo(nn.Module):
    """A causal LM that always predicts the byte 'b' (vocab 257): deterministic generation."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(257))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*ids.shape, 257), -10.0) + self.bias
        logits[..., ord("b")] = 10.0
        return logits


def test_classify_with_head_and_by_label_likelihood() -> None:
    tok = ByteTokenizer()
    texts = ["a", "b", "c", "abc"]  # bytes 97, 98, 99 -> classes 1, 2, 0
    assert core.classify(FirstByteClassifier(), tok, texts, ["x", "y", "z"]) == [1, 2, 0, 1]
    # a plain LM that loves 'b' picks the label that is made of b's
    assert core.classify(Echo(), tok, texts, ["cat", "bb", "dog"]) == [1, 1, 1, 1]


def test_label_scoring_batch_equals_one_sequence_at_a_time() -> None:
    """Right-padded option batches give each option's exact log-probability."""
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "gpt", vocab_size=257, max_positions=32, n_layers=1, n_heads=2, d_model=16
    ).eval()
    prompt = list(b"a long prompt that must be cut on the left")
    options = [list(b" yes"), list(b" no"), list(b" maybe not")]
    scores = core._option_logprobs(model, prompt, options, 32, "cpu")
    for option, score in zip(options, scores, strict=True):
        ids = prompt[-(32 - len(option)) :] + option
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], dim=-1)
        expected = sum(logp[len(ids) - len(option) - 1 + j, t].item() for j, t in enumerate(option))
        assert score == pytest.approx(expected, abs=1e-4)


def test_generation_decodes_and_scores_like_sacrebleu() -> None:
    hyps = core.generate_texts(Echo(), ByteTokenizer(), ["x", "y"], max_new_tokens=4)
    assert hyps == ["bbbb", "bbbb"]
    refs = [["bbbb", "b b"], ["bb bb"]]
    result = core.evaluate_generation(hyps, refs)
    streams = [["bbbb", "bb bb"], ["b b", None]]
    assert result["metrics"]["bleu"] == pytest.approx(
        sacrebleu.metrics.BLEU().corpus_score(hyps, streams).score
    )
    assert result["metrics"]["chrf"] == pytest.approx(
        sacrebleu.metrics.CHRF().corpus_score(hyps, streams).score
    )
    assert result["details"]["signatures"]["ter"].startswith("nrefs:var|case:lc|tok:tercom")


TOKENIZER_MODULE = """
import json
from pathlib import Path


class SavedByteTokenizer:
    vocab_size = 257
    special_tokens = {"<|endoftext|>": 256}

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, path):
        Path(path).write_text(json.dumps({"kind": "bytes"}))

    @classmethod
    def load(cls, path):
        assert json.loads(Path(path).read_text()) == {"kind": "bytes"}
        return cls()
"""


def test_eval_cli_classification_and_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evaltok_bytes.py").write_text(TOKENIZER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import evaltok_bytes

    llmkit.register("tokenizer", "evaltok_bytes", "evaltok_bytes:SavedByteTokenizer")
    torch.manual_seed(0)
    model = llmkit.create(
        "model", "gpt", vocab_size=257, max_positions=64, n_layers=1, n_heads=2, d_model=16
    )
    ckpt = llmkit.save_model(model, tmp_path / "ckpt", tokenizer=evaltok_bytes.SavedByteTokenizer())
    texts = ["good film", "bad film", "great", "awful", "fine", "meh"]
    gold = ["pos", "neg", "pos", "neg", "pos", "neg"]
    data = tmp_path / "cls.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "label": g}) + "\n" for t, g in zip(texts, gold, strict=True)
        )
    )
    png = tmp_path / "cm.png"
    result = CliRunner().invoke(
        cli,
        ["eval", str(ckpt), "--task", "classification", "--data", str(data), "--device", "cpu",
         "--png", str(png), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    names = ["neg", "pos"]
    tok = llmkit.load_tokenizer(ckpt)
    preds = core.classify(llmkit.load_model(ckpt), tok, texts, names)
    expected = core.evaluate_classification(preds, [names.index(g) for g in gold], names)
    assert got["metrics"] == pytest.approx(expected["metrics"])
    assert got["details"]["confusion_matrix"]["labels"] == names
    assert _read_png(png).shape[0] >= 400

    (ckpt / "labels.json").write_text('["pos", "neg"]')  # as `llmkit run` stores the label order
    ordered = CliRunner().invoke(
        cli,
        ["eval", str(ckpt), "--task", "classification", "--data", str(data), "--device", "cpu",
         "--limit", "2", "--json"],
    )  # fmt: skip
    assert json.loads(ordered.output)["details"]["confusion_matrix"]["labels"] == ["pos", "neg"]
    with pytest.raises(UsageError, match="predictions hold 5, not a class index"):
        core.evaluate_classification([0, 5], [0, 1], ["a", "b"])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    err = CliRunner().invoke(
        cli, ["eval", str(ckpt), "--task", "classification", "--data", str(bad), "--device", "cpu"]
    )
    assert err.exit_code == 2 and f"{bad}:1: no field 'label'" in err.output

    gen = tmp_path / "gen.jsonl"
    rows = [("Q: 1+1?", "2"), ("Say hi", ["hi", "hello"]), ("Name a colour", "red")]
    gen.write_text("".join(json.dumps({"prompt": p, "reference": r}) + "\n" for p, r in rows))
    out = CliRunner().invoke(
        cli,
        ["eval", str(ckpt), "--task", "generation", "--data", str(gen), "--device", "cpu",
         "--max-new-tokens", "6", "--json", "--predictions-out", str(tmp_path / "hyp.txt")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    res = json.loads(out.output)
    hyps = [e["hypothesis"] for e in res["details"]["examples"]]
    assert len(hyps) == 3
    assert (tmp_path / "hyp.txt").read_text(encoding="utf-8").split("\n")[:3] == hyps
    assert res["metrics"]["exact_match"] == sum(
        h in ([r] if isinstance(r, str) else r) for h, (_, r) in zip(hyps, rows, strict=True)
    ) / len(rows)
    streams = [["2", "hi", "red"], [None, "hello", None]]
    assert res["metrics"]["bleu"] == pytest.approx(
        sacrebleu.metrics.BLEU().corpus_score(hyps, streams).score
    )
    assert res["details"]["decoding"]["temperature"] == 0.0


def test_generation_by_beam_search_and_with_an_encoder_decoder() -> None:
    tok = ByteTokenizer()
    assert core.generate_texts(Echo(), tok, ["x", ""], max_new_tokens=3, beams=2) == ["bbb"] * 2
    torch.manual_seed(0)
    seq2seq = llmkit.create(
        "model",
        "transformer",
        vocab_size=257,
        max_positions=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_heads=2,
        d_model=16,
        d_ff=32,
        dropout=0.0,
    )
    outs = core.generate_texts(seq2seq, tok, ["hello", "world"], max_new_tokens=5, stop=())
    assert len(outs) == 2 and all(isinstance(o, str) and len(o.encode()) <= 5 * 3 for o in outs)
    again = core.generate_texts(seq2seq, tok, ["hello", "world"], max_new_tokens=5, stop=())
    assert outs == again  # beam search is deterministic


@pytest.mark.parametrize(("context", "stride", "batch"), [(16, 16, 2), (16, 5, 3), (8, 1, 4)])
def test_lm_windows_score_every_token_once_with_context(
    tmp_path: Path, context: int, stride: int, batch: int
) -> None:
    from llmkit.data.shards import TokenShards
    from llmkit.evaluation.windows import lm_windows

    tokens = np.arange(1, 60)  # token value = its position + 1; EOS (0) appended: all distinct
    shards = TokenShards(_shards(tmp_path / "d", tokens), "validation")
    stream = shards.window(0, len(shards))
    seen: list[int] = []
    for inputs, targets in lm_windows(shards, context, batch, stride=stride):
        assert inputs.shape == targets.shape and inputs.shape[1] <= context
        for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
            start = next(
                s for s in range(len(stream)) if list(stream[s : s + len(row_in)]) == row_in
            )
            for j, t in enumerate(row_t):
                if t == -100:
                    continue
                absolute = start + j + 1
                assert stream[absolute] == t
                assert j + 1 >= min(absolute, context - stride + 1)  # tokens of context it sees
                seen.append(absolute)
    assert sorted(seen) == list(range(1, len(stream)))
    with pytest.raises(UsageError, match="--stride 17"):
        next(lm_windows(shards, 16, 1, stride=17))


def test_greedy_generation_batches_give_the_one_by_one_outputs() -> None:
    from llmkit.inference.generation import generate_text

    torch.manual_seed(3)
    model = llmkit.create(
        "model", "gpt", vocab_size=257, max_positions=48, n_layers=1, n_heads=2, d_model=16
    ).eval()
    tok = ByteTokenizer()
    prompts = ["a", "the longest prompt of all of them", "mid size", "", "xy"]
    alone = []
    for p in prompts:
        ids = list(tok.encode(p))[-(48 - 12) :] or [
            256
        ]  # an empty prompt starts from the end token
        text = generate_text(model, tok, ids, max_new_tokens=12, stop_token_ids=[256])
        alone.append(core._cut(text, ["\n"]).strip())
    assert len(set(alone)) > 2
    for size in (1, 2, 16):
        got = core.generate_texts(model, tok, prompts, max_new_tokens=12, batch_size=size)
        assert got == alone, size
