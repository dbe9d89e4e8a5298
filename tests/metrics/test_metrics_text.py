"""BLEU, chrF and TER equal sacrebleu's own CLI and API on the same data, streamed or merged."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.cli import cli
from llmkit.errors import UsageError

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "hello",
    "world",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    ".",
    ",",
    "!",
]


def _corpus(seed: int, n: int, refs: int) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and `refs` reference streams of random sentences sharing many words."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))

    hyps = [sentence() for _ in range(n)]
    streams = [[h if rng.random() < 0.2 else sentence() for h in hyps] for _ in range(refs)]
    hyps[0] = hyps[0].upper()  # case matters to some settings
    return hyps, streams


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_equal_to_sacrebleu_cli(tmp_path: Path) -> None:
    hyps, streams = _corpus(seed=1, n=60, refs=2)
    hyp = _write(tmp_path / "hyp.txt", hyps)
    refs = [_write(tmp_path / f"ref{i}.txt", s) for i, s in enumerate(streams)]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            *map(str, refs),
            "-i",
            str(hyp),
            "-m",
            "bleu",
            "chrf",
            "ter",
            "-w",
            "10",
            "-f",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    theirs = {r["name"]: r for r in json.loads(out)}
    result = CliRunner().invoke(
        cli, ["score", "-m", "bleu", "-m", "chrf", "-m", "ter", "--json", str(hyp), *map(str, refs)]
    )
    assert result.exit_code == 0, result.output
    ours = {r["name"]: r for r in json.loads(result.output)}
    for name in ("BLEU", "chrF2", "TER"):
        assert round(ours[name]["score"], 10) == theirs[name]["score"], name
        assert ours[name]["signature"] == theirs[name]["signature"], name


@pytest.mark.parametrize(
    ("name", "kwargs", "reference"),
    [
        ("bleu", {}, sacrebleu.metrics.BLEU()),
        (
            "bleu",
            {"lowercase": True, "tokenize": "intl"},
            sacrebleu.metrics.BLEU(lowercase=True, tokenize="intl"),
        ),
        (
            "bleu",
            {"smooth_method": "floor", "smooth_value": 0.1},
            sacrebleu.metrics.BLEU(smooth_method="floor", smooth_value=0.1),
        ),
        ("chrf", {}, sacrebleu.metrics.CHRF()),
        ("chrf", {"word_order": 2}, sacrebleu.metrics.CHRF(word_order=2)),
        ("ter", {}, sacrebleu.metrics.TER()),
        (
            "ter",
            {"case_sensitive": True, "normalized": True},
            sacrebleu.metrics.TER(case_sensitive=True, normalized=True),
        ),
    ],
)
def test_streamed_equals_sacrebleu_corpus_score(name: str, kwargs: dict, reference: object) -> None:
    hyps, streams = _corpus(seed=2, n=45, refs=2)
    theirs = reference.corpus_score(hyps, streams)  # type: ignore[attr-defined]
    metric = llmkit.create("metric", name, **kwargs)
    per_segment = [list(refs) for refs in zip(*streams, strict=True)]
    for lo in range(0, len(hyps), 7):
        metric.update(hyps[lo : lo + 7], per_segment[lo : lo + 7])
    ours = metric.compute()
    assert float(ours) == pytest.approx(theirs.score, abs=1e-12)
    assert ours.signature == str(reference.get_signature())  # type: ignore[attr-defined]


sentences = st.lists(st.sampled_from(WORDS), min_size=0, max_size=8).map(" ".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(st.tuples(sentences, sentences), min_size=1, max_size=12),
    cut=st.integers(0, 12),
    name=st.sampled_from(["bleu", "chrf", "ter"]),
)
def test_any_split_equals_sacrebleu(pairs: list[tuple[str, str]], cut: int, name: str) -> None:
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    reference = {"bleu": sacrebleu.metrics.BLEU, "chrf": sacrebleu.metrics.CHRF}.get(
        name, sacrebleu.metrics.TER
    )()
    theirs = reference.corpus_score(hyps, [refs]).score
    a, b = llmkit.create("metric", name), llmkit.create("metric", name)
    cut = min(cut, len(hyps))
    a.update(hyps[:cut], refs[:cut])
    b.update(hyps[cut:], refs[cut:])
    a.merge(b)
    assert float(a.compute()) == pytest.approx(theirs, abs=1e-9)


def test_shards_merge_and_variable_references() -> None:
    hyps, (r1, r2) = _corpus(seed=3, n=20, refs=2)
    refs = [[a, b] if i % 3 else [a] for i, (a, b) in enumerate(zip(r1, r2, strict=True))]
    theirs = sacrebleu.metrics.BLEU().corpus_score(
        hyps, [r1, [b if i % 3 else None for i, b in enumerate(r2)]]
    )
    a, b = llmkit.create("metric", "bleu"), llmkit.create("metric", "bleu")
    a.update(hyps[:8], refs[:8])
    b.update(hyps[8:], refs[8:])
    a.merge(json.loads(json.dumps(b.state())))
    result = a.compute()
    assert float(result) == pytest.approx(theirs.score, abs=1e-12)
    assert "nrefs:var" in str(result.signature)
    single = llmkit.create("metric", "chrf")
    single.update("the cat", "the cat")
    assert float(single.compute()) == pytest.approx(100.0)


def test_text_metric_errors() -> None:
    bleu = llmkit.create("metric", "bleu")
    with pytest.raises(UsageError, match="no segments"):
        bleu.compute()
    with pytest.raises(UsageError, match="2 predictions but 1 targets"):
        bleu.update(["a", "b"], ["a"])
    with pytest.raises(UsageError, match=r"predictions\[1\]: expected a string"):
        bleu.update(["a", 3], ["a", "b"])
    with pytest.raises(llmkit.RegistryError, match="tokenize"):
        llmkit.create("metric", "bleu", tokenize="moses")


def test_score_cli_text_and_errors(tmp_path: Path) -> None:
    hyp = _write(tmp_path / "hyp.txt", ["the cat sat on the mat", "hello world"])
    ref = _write(tmp_path / "ref.txt", ["the cat is on the mat", "hello world"])
    short = _write(tmp_path / "short.txt", ["only one line"])
    runner = CliRunner()
    result = runner.invoke(cli, ["score", "--metric", "bleu", str(hyp), str(ref)])
    assert result.exit_code == 0
    assert result.output.startswith("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    expected = sacrebleu.corpus_bleu(
        ["the cat sat on the mat", "hello world"], [["the cat is on the mat", "hello world"]]
    )
    assert f"= {expected.score:.1f} " in result.output
    bad = runner.invoke(cli, ["score", "-m", "bleu", str(hyp), str(short)])
    assert bad.exit_code == 2
    assert bad.output.strip() == (
        f"Error: {short}: has 1 lines but {hyp} has 2; files must be line-aligned"
    )
    missing = runner.invoke(cli, ["score", str(hyp), str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "nope.txt: no such file" in missing.output
    none = runner.invoke(cli, ["score", str(hyp)])
    assert none.exit_code == 2 and "at least one reference" in none.output


def test_score_cli_labels(tmp_path: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    golds = ["pos", "neg", "neg", "pos", "neu", "neu"]
    preds = ["pos", "neg", "pos", "pos", "neu", "neg"]
    hyp = _write(tmp_path / "pred.txt", preds)
    ref = _write(tmp_path / "gold.txt", golds)
    result = CliRunner().invoke(
        cli, ["score", "-m", "accuracy", "-m", "f1", "--json", str(hyp), str(ref)]
    )
    assert result.exit_code == 0, result.output
    acc, f1 = json.loads(result.output)
    assert acc["score"] == pytest.approx(accuracy_score(golds, preds))
    assert f1["score"] == pytest.approx(f1_score(golds, preds, average="macro"))
    text = CliRunner().invoke(
        cli, ["score", "-m", "f1", "--average", "weighted", str(hyp), str(ref)]
    )
    assert text.output.startswith("f1 = 0.") and "average=weighted" in text.output


def test_score_cli_confusion_matrix_per_class_and_exact_match(tmp_path: Path) -> None:
    from sklearn.metrics import confusion_matrix

    golds = ["pos", "neg", "neg", "pos", "neu", "neu"]
    preds = ["pos", "neg", "pos", "pos", "neu", "neg"]
    hyp = _write(tmp_path / "pred.txt", preds)
    ref = _write(tmp_path / "gold.txt", golds)
    runner = CliRunner()
    cm = runner.invoke(cli, ["score", "-m", "confusion_matrix", "--json", str(hyp), str(ref)])
    assert cm.exit_code == 0, cm.output
    data = json.loads(cm.output)
    assert data["labels"] == ["neg", "neu", "pos"]
    assert data["matrix"] == confusion_matrix(golds, preds).tolist()
    table = runner.invoke(cli, ["score", "-m", "recall", "--per-class", str(hyp), str(ref)])
    lines = table.output.splitlines()
    assert lines[1].split() == ["label", "precision", "recall", "f1", "support"]
    assert lines[2].split() == ["neg", "0.5000", "0.5000", "0.5000", "2"]
    alt = _write(tmp_path / "alt.txt", ["x", "neg", "pos", "y", "y", "neg"])
    em = runner.invoke(cli, ["score", "-m", "exact_match", "--json", str(hyp), str(ref), str(alt)])
    assert json.loads(em.output)["correct"] == 6  # lines 3 and 6 match only the second reference
    two = runner.invoke(cli, ["score", "-m", "f1", str(hyp), str(ref), str(alt)])
    assert two.exit_code == 2 and "exactly one reference" in two.output
