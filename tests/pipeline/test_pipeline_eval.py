"""The pipeline's eval stage on small real data: every objective, every requested metric, and
`validate` refusing a metric the objective cannot report before anything trains."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from sklearn import metrics as skm

import llmkit
from llmkit.cli import cli

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "data" / "python-reference.txt"


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return str(result.stdout)


def one_line_error(*args: object) -> str:
    """The stderr line of a command that must fail as a usage error (exit 2, no traceback)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = str(result.stderr).strip()
    assert error.startswith("Error: ") and "\n" not in error, error
    return error


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def copy_pairs(path: Path, n: int = 120) -> Path:
    """Sources of three letters, targets the same letters upper-cased: a task a tiny model learns."""
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        src = " ".join(rng.choice("abcd") for _ in range(3))
        lines.append(json.dumps({"text": src, "target": src.upper()}))
    return write(path, "\n".join(lines) + "\n")


def reviews(path: Path) -> Path:
    rows = ["text,label"]
    for i in range(30):
        rows.append(f"the film was wonderful and moving {i},good")
        rows.append(f"a dull and tedious mess {i},bad")
        if i % 3 == 0:
            rows.append(f"it was fine I suppose {i},meh")
    return write(path, "\n".join(rows) + "\n")


def seq2seq_pipeline(tmp_path: Path, steps: int = 150) -> Path:
    data = copy_pairs(tmp_path / "pairs.jsonl")
    return write(
        tmp_path / "s2s.yaml",
        f"""
output: {tmp_path / "s2s"}
tokenizer: {{name: byte}}
data: {{inputs: [{data}], format: jsonl, target_field: target, validation: 0.2}}
train:
  objective: seq2seq
  model: {{name: transformer, d_model: 32, n_encoder_layers: 1, n_decoder_layers: 1, n_heads: 2,
           max_positions: 32, dropout: 0.0}}
  optimizer: {{name: adamw, lr: 1.0e-2}}
  batch_size: 16
  max_length: 16
  max_steps: {steps}
  log_every: 50
eval:
  metrics: [perplexity, exact_match, chrf]
""",
    )


def classification_pipeline(tmp_path: Path) -> Path:
    return write(
        tmp_path / "cls.yaml",
        f"""
output: {tmp_path / "cls"}
tokenizer: {{name: byte}}
data: {{inputs: [{reviews(tmp_path / "reviews.csv")}], format: csv, field: text,
        label_field: label, validation: 0.3, clean: [missing]}}
train:
  objective: classification
  model: {{name: bert, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 64}}
  optimizer: {{name: adamw, lr: 2.0e-3}}
  batch_size: 16
  max_length: 48
  max_steps: 6
  log_every: 6
eval:
  metrics: [accuracy, f1, recall_macro]
""",
    )


def masked_lm_pipeline(tmp_path: Path) -> Path:
    return write(
        tmp_path / "mlm.yaml",
        f"""
output: {tmp_path / "mlm"}
tokenizer: {{name: byte, special_tokens: ["<|endoftext|>", "[MASK]"]}}
data: {{inputs: [{CORPUS}], unit: paragraph, validation: 0.05}}
train:
  objective: masked_lm
  model: {{name: bert, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32}}
  batch_size: 8
  context: 32
  max_steps: 3
  log_every: 3
eval:
  batches: 1000
""",
    )


@pytest.mark.slow
def test_seq2seq_model_of_a_pipeline_generates_and_is_evaluated(tmp_path: Path) -> None:
    from llmkit.data.batching import Seq2SeqBatches
    from llmkit.inference.generation import decoder_start_id
    from llmkit.storage.checkpoint import load_generation_config

    pipe = seq2seq_pipeline(tmp_path)
    log = ok("run", pipe)
    model_dir = tmp_path / "s2s" / "model"
    scores = json.loads((tmp_path / "s2s" / "eval.json").read_text())
    assert list(scores["metrics"]) == ["perplexity", "exact_match", "chrf"], log
    assert scores["metrics"]["exact_match"] == 1.0 and scores["metrics"]["perplexity"] < 1.1
    assert (
        scores["details"]["examples"][0]["hypothesis"]
        == scores["details"]["examples"][0]["source"].upper()
    )

    # The start token generate and eval decode from is the one training put before the targets.
    tok = llmkit.load_tokenizer(model_dir)
    trained = Seq2SeqBatches([("a", "b")], tok, 1).bos_id
    assert load_generation_config(model_dir)["bos_token_id"] == trained  # saved by the pipeline
    assert decoder_start_id(tok, load_generation_config(model_dir)) == trained
    assert ok("generate", model_dir, "-p", "a b c", "-n", 8) == "A B C\n"

    prompts = write(
        tmp_path / "t.jsonl",
        "".join(
            json.dumps({"prompt": p, "reference": p.upper()}) + "\n" for p in ["d c b", "b b a"]
        ),
    )
    preds = tmp_path / "preds.txt"
    ok("eval", model_dir, "--task", "generation", "--data", prompts, "--predictions-out", preds)
    greedy = [ok("generate", model_dir, "-p", p, "--beams", 1).strip() for p in ["d c b", "b b a"]]
    assert preds.read_text().splitlines() == greedy == ["D C B", "B B A"]


def test_classification_eval_writes_every_requested_metric(tmp_path: Path) -> None:
    from llmkit.evaluation import core
    from llmkit.pipeline import config, stages

    pipe = classification_pipeline(tmp_path)
    log = ok("run", pipe)
    out = tmp_path / "cls"
    scores = json.loads((out / "eval.json").read_text())
    keys = ["accuracy", "f1_macro", "f1_micro", "f1_weighted", "recall_macro"]
    assert list(scores["metrics"]) == keys, log
    assert "eval: accuracy" in log and "f1_weighted" in log
    assert scores["details"]["confusion_matrix"]["labels"] == ["bad", "good", "meh"]

    # The same numbers from the model's own predictions on the held-out records, by sklearn.
    cfg = config.load(pipe)
    _, valid = stages.read_records(cfg, tmp_path)
    labels = json.loads((out / "model" / "labels.json").read_text())
    model, tok = llmkit.load_model(out / "model"), llmkit.load_tokenizer(out / "model")
    pred = core.classify(model, tok, [str(r.text) for r in valid], labels, max_length=48)
    gold = [labels.index(str(r.label)) for r in valid]
    m = scores["metrics"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred))
    for average in ("macro", "micro", "weighted"):
        f1 = skm.f1_score(gold, pred, average=average, labels=[0, 1, 2], zero_division=0)
        assert m[f"f1_{average}"] == pytest.approx(f1)
    recall = skm.recall_score(gold, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert m["recall_macro"] == pytest.approx(recall)

    # Without a metrics list the objective's defaults: accuracy and every P/R/F1 average.
    ok("run", pipe, "~eval.metrics", "--stage", "eval")
    defaults = json.loads((out / "eval.json").read_text())["metrics"]
    assert list(defaults) == ["accuracy"] + [
        f"{name}_{average}"
        for name in ("precision", "recall", "f1")
        for average in ("macro", "micro", "weighted")
    ]
    assert defaults["f1_macro"] == m["f1_macro"]
    ok("run", pipe, "eval.metrics=[confusion_matrix]", "--stage", "eval")
    only_matrix = json.loads((out / "eval.json").read_text())
    assert only_matrix["metrics"] == {} and only_matrix["details"]["confusion_matrix"]


@pytest.mark.parametrize(
    ("objective", "metric", "says"),
    [
        ("classification", "perplexity", "'perplexity' is not reported for objective classif"),
        ("classification", "f1_macr", "unknown metric 'f1_macr'; did you mean 'f1_macro'?"),
        ("causal_lm", "f1", "'f1' is not reported for objective causal_lm (only for classif"),
        ("causal_lm", "perplexty", "unknown metric 'perplexty'; did you mean 'perplexity'?"),
        ("masked_lm", "bleu", "'bleu' is not reported for objective masked_lm (only for seq2seq)"),
        ("masked_lm", "bits_per_byte", "objective masked_lm reports: perplexity, nll, bits_per"),
        ("seq2seq", "accuracy", "'accuracy' is not reported for objective seq2seq"),
        ("causal_lm", "confusion_matrix", "only for classification"),
    ],
)
def test_validate_refuses_a_metric_the_objective_cannot_report(
    tmp_path: Path, objective: str, metric: str, says: str
) -> None:
    model = "transformer" if objective == "seq2seq" else "bert"
    if objective == "causal_lm":
        model = "gpt"
    pipe = write(
        tmp_path / "p.yaml",
        f"""
output: {tmp_path / "out"}
tokenizer: {{name: byte}}
data: {{inputs: [x.txt]}}
train: {{objective: {objective}, model: {{name: {model}, d_model: 16, n_heads: 2}}, max_steps: 2}}
eval: {{metrics: [{metric}]}}
""",
    )
    error = one_line_error("validate", pipe)
    assert error.startswith(f"Error: {pipe}: eval.metrics: "), error
    assert says in error
    assert one_line_error("run", pipe) == error  # before any stage: nothing is written
    assert not (tmp_path / "out").exists()


def test_validate_refuses_evaluating_an_encoder_trained_as_a_causal_lm(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("some text\n")  # validate checks that inputs exist
    pipe = write(
        tmp_path / "p.yaml",
        f"""
output: {tmp_path / "out"}
tokenizer: {{name: byte}}
data: {{inputs: [x.txt]}}
train: {{model: {{name: bert, d_model: 16, n_heads: 2}}, max_steps: 2}}
eval: {{}}
""",
    )
    error = one_line_error("validate", pipe)
    assert error.startswith(f"Error: {pipe}: train.objective: causal_lm with model bert, a bidi")
    assert "use objective masked_lm" in error
    assert "eval: perplexity, accuracy" in ok("validate", pipe, "train.objective=masked_lm")


def test_validate_lists_the_metrics_each_objective_reports(tmp_path: Path) -> None:
    pipe = classification_pipeline(tmp_path)
    assert "eval: accuracy, f1, recall_macro" in ok("validate", pipe)
    assert "eval: accuracy, precision, recall, f1\n" in ok("validate", pipe, "~eval.metrics")
    mlm = masked_lm_pipeline(tmp_path)
    assert "eval: perplexity, accuracy\n" in ok("validate", mlm)
    assert "eval: accuracy\n" in ok("validate", mlm, "eval.metrics=[accuracy]")


def test_masked_lm_pipeline_is_evaluated_like_llmkit_eval_masked_lm(tmp_path: Path) -> None:
    pipe = masked_lm_pipeline(tmp_path)
    log = ok("run", pipe)
    out = tmp_path / "mlm"
    scores = json.loads((out / "eval.json").read_text())
    assert list(scores["metrics"]) == ["perplexity", "accuracy"], log
    assert 1 < scores["metrics"]["perplexity"] < 300 and 0 <= scores["metrics"]["accuracy"] <= 1
    assert scores["details"]["masked_tokens"] > 100

    # `llmkit eval --task masked_lm` on the same split, context and seed, another batch size.
    res = tmp_path / "res.json"
    ok("eval", out / "model", "--task", "masked_lm", "--data", out / "data", "--context", 32,
       "--batch-size", 3, "--seed", 0, "--device", "cpu", "-o", res)  # fmt: skip
    same = json.loads(res.read_text())
    assert same["metrics"]["perplexity"] == pytest.approx(scores["metrics"]["perplexity"])
    assert same["metrics"]["accuracy"] == scores["metrics"]["accuracy"]
    assert same["details"]["masked_tokens"] == scores["details"]["masked_tokens"]

    # A causal perplexity of a bidirectional encoder means nothing: refused, pointing to masked_lm.
    error = one_line_error("eval", out / "model", "--data", out / "data")
    assert error == (
        f"Error: {out / 'model'}: a bert checkpoint is an encoder and has no next-token "
        "perplexity; evaluate its masked-LM head with --task masked_lm"
    )
    assert "does not generate text" in one_line_error(
        "eval", out / "model", "--task", "generation", "--data", tmp_path / "x.jsonl"
    )


def causal_lm_pipeline(tmp_path: Path) -> Path:
    return write(
        tmp_path / "clm.yaml",
        f"""
output: {tmp_path / "clm"}
tokenizer: {{name: byte}}
data: {{inputs: [{CORPUS}], unit: paragraph, validation: 0.05}}
train:
  model: {{name: gpt, d_model: 32, n_layers: 1, n_heads: 2, max_positions: 32}}
  batch_size: 8
  context: 32
  max_steps: 3
  log_every: 3
eval:
  batches: 7
  metrics: [perplexity, bits_per_byte]
""",
    )


def held_out_jsonl(tmp_path: Path, pipe: Path, fields: tuple[str, str]) -> Path:
    """The pipeline's own validation records, as `llmkit eval` reads them (JSONL)."""
    from llmkit.pipeline import config, stages

    _, valid = stages.read_records(config.load(pipe), tmp_path)
    rows = [json.dumps({"text": r.text, fields[1]: getattr(r, fields[0])}) for r in valid]
    return write(tmp_path / "held_out.jsonl", "\n".join(rows) + "\n")


@pytest.mark.parametrize("objective", ["causal_lm", "masked_lm", "classification", "seq2seq"])
def test_llmkit_eval_equals_the_eval_stage_to_the_last_digit(
    tmp_path: Path, objective: str
) -> None:
    # One evaluation per objective: `llmkit eval --task OBJECTIVE` with the pipeline's settings
    # reports exactly what the eval stage wrote to eval.json (same windows, same batches).
    if objective == "causal_lm":
        pipe, out, data = causal_lm_pipeline(tmp_path), tmp_path / "clm", tmp_path / "clm" / "data"
        args = ["--context", 32, "--batch-size", 8, "--max-batches", 7]
        args += ["--metric", "perplexity", "--metric", "bits_per_byte"]
    elif objective == "masked_lm":
        pipe, out, data = masked_lm_pipeline(tmp_path), tmp_path / "mlm", tmp_path / "mlm" / "data"
        args = ["--context", 32, "--batch-size", 8, "--max-batches", 1000, "--seed", 0]
    elif objective == "classification":
        pipe, out = classification_pipeline(tmp_path), tmp_path / "cls"
        data = held_out_jsonl(tmp_path, pipe, ("label", "label"))
        args = ["--batch-size", 16, "--max-length", 48]
        args += ["--metric", "accuracy", "--metric", "f1", "--metric", "recall_macro"]
    else:
        pipe, out = seq2seq_pipeline(tmp_path, steps=4), tmp_path / "s2s"
        data = held_out_jsonl(tmp_path, pipe, ("target", "target"))
        args = ["--batch-size", 16, "--max-length", 16, "--reference-field", "target"]
        args += ["--metric", "perplexity", "--metric", "exact_match", "--metric", "chrf"]
    # masked_lm with another mask rate: `llmkit eval` reads it from the model's objective.json
    overrides = (
        ["train.objective={name: masked_lm, mask_rate: 0.3}"] if objective == "masked_lm" else []
    )
    ok("run", pipe, *overrides)
    stage = json.loads((out / "eval.json").read_text())["metrics"]
    res = tmp_path / "res.json"
    ok("eval", out / "model", "--task", objective, "--data", data, "--device", "cpu", "-o", res,
       *args)  # fmt: skip
    cli_metrics = json.loads(res.read_text())["metrics"]
    assert stage == {k: cli_metrics[k] for k in stage}
    if objective == "masked_lm":
        assert json.loads(res.read_text())["details"]["masking"] == "30%, seed 0"
    if objective == "causal_lm":  # the old task name is an alias
        ok("eval", out / "model", "--task", "lm", "--data", data, "--device", "cpu", "-o", res,
           *args)  # fmt: skip
        assert json.loads(res.read_text())["metrics"] == cli_metrics


def test_validate_refuses_what_run_would_refuse_after_its_data_stages(tmp_path: Path) -> None:
    # A loss that cannot score (logits, targets), and a classifier fine-tuned from a decoder,
    # fail `validate` (and `run`) before any stage, naming the field.
    pipe = causal_lm_pipeline(tmp_path)
    error = one_line_error("validate", pipe, "train.loss.name=kl_div")
    assert error.startswith(f"Error: {pipe}: train.loss: kl_div cannot score objective causal_lm")
    assert not (tmp_path / "clm").exists()
    error = one_line_error("run", pipe, "train.loss.name=kl_div")
    assert "train.loss: kl_div" in error and not (tmp_path / "clm" / "data").exists()
    ok("run", pipe, "~eval")
    decoder = tmp_path / "clm" / "model"
    # A decoder grows a classification head (issue 16), so only a model that cannot is refused.
    ok(
        "validate", pipe, "~train.model", f"train.init_from={decoder}",
        "train.objective=classification", "~eval",
    )  # fmt: skip
    error = one_line_error(
        "validate", pipe, "train.model={name: transformer, d_model: 32, n_heads: 2}",
        "train.objective=classification",
        "~eval",
    )  # fmt: skip
    assert error == (
        f"Error: {pipe}: train.objective: classification with model transformer, has no "
        "classify head; use a model with one (bert, gpt, llama)"
    )
