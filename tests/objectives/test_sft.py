"""The sft objective: chat records, the assistant-only mask, packing that equals unpacked, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import llmkit
from llmkit.data.records import Record
from llmkit.errors import UsageError
from llmkit.objectives.chat import (
    check_messages,
    encode_conversation,
    messages_of,
    prompt_of,
)
from llmkit.objectives.sft import SFTBatches, conversations, fit_context, pack

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6."},
]


def byte_tok() -> object:
    return llmkit.create("tokenizer", "byte")


def test_record_kinds_and_prompt() -> None:
    pair = messages_of("Hi?", "Hello.", "f.jsonl:1")
    assert pair == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
    ]
    assert messages_of(json.dumps(CHAT), None, "f.jsonl:2") == CHAT
    before, reference = prompt_of(CHAT)
    assert before == CHAT[:4] and reference == "6."


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "hi"}], "f.jsonl:3: messages: no assistant turn"),
        (
            [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}],
            "f.jsonl:3: messages[0].role: unknown role 'bot'",
        ),
        ([{"role": "user"}], "f.jsonl:3: messages[0]: must be an object with role and content"),
        (
            [{"role": "assistant", "content": 4}],
            "f.jsonl:3: messages[0].content: must be text",
        ),
    ],
)
def test_bad_messages_name_file_line_and_field(messages: list, expected: str) -> None:
    with pytest.raises(UsageError) as err:
        check_messages(messages, "f.jsonl:3")
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_not_a_list_of_messages() -> None:
    with pytest.raises(UsageError, match=r"^f.jsonl:4: field 'messages' must be a list"):
        messages_of('{"role": "user"}', None, "f.jsonl:4")


def test_template_that_fails_to_render() -> None:
    bad = (
        "{{ raise_exception('nope') }}{% for m in messages %}{{ m.content | nofilter }}{% endfor %}"
    )
    with pytest.raises(UsageError, match=r"^f.jsonl:5: .*chat template"):
        encode_conversation(CHAT, bad, byte_tok(), "f.jsonl:5")
    undefined = "{{ messages[0].content.nomethod() }}"
    with pytest.raises(UsageError, match=r"^f.jsonl:5: "):
        encode_conversation(CHAT, undefined, byte_tok(), "f.jsonl:5")


def test_assistant_only_mask_scores_the_assistant_turns() -> None:
    tok = byte_tok()
    conv = encode_conversation(CHAT, None, tok, "x")
    scored = bytes(i for i, s in zip(conv.ids, conv.assistant, strict=True) if s)
    assert scored.decode() == "4<|im_end|>\n6.<|im_end|>\n"
    from llmkit.inference.generation import apply_chat_template

    whole = apply_chat_template(CHAT, None, add_generation_prompt=False)
    assert bytes(conv.ids).decode() == whole
    everything = encode_conversation(CHAT, None, tok, "x", assistant_only=False)
    assert all(everything.assistant) and everything.ids == conv.ids


def test_too_long_conversations_are_dropped_and_counted() -> None:
    tok = byte_tok()
    records = [
        Record(json.dumps(CHAT), source="f.jsonl:1"),
        Record("q" * 300, target="a", source="f.jsonl:2"),
    ]
    convs = conversations(records, None, tok, True)
    lines: list[str] = []
    kept, dropped = fit_context(convs, 200, lines.append)
    assert dropped == 1 and kept == [convs[0]]
    assert "dropped 1 of 2" in lines[0] and "f.jsonl:2" in lines[0]


def test_pack_keeps_order_and_window_size() -> None:
    assert pack([5, 5, 5, 9], 8) == [[0, 1], [2], [3]]  # inputs are length - 1
    assert pack([3, 3, 3, 3, 9], 8) == [[0, 1, 2, 3], [4]]
    rows = pack([4, 6, 2, 5, 3, 7], 10)
    assert [i for r in rows for i in r] == list(range(6))


def small(name: str, vocab: int) -> torch.nn.Module:
    extra = {"n_kv_heads": 1} if name == "llama" else {}
    torch.manual_seed(0)
    model = llmkit.create(
        "model", name, vocab_size=vocab, n_layers=2, n_heads=2, d_model=32, max_positions=512,
        **extra,
    )  # fmt: skip
    return model.eval()


@pytest.mark.parametrize("name", ["llama", "gpt"])
def test_packed_equals_unpacked(name: str) -> None:
    """Position resets + the block-diagonal mask give each packed conversation its own logits."""
    from llmkit.objectives.sft import SFT

    tok = byte_tok()
    records = [
        Record(json.dumps(CHAT), source="a:1"),
        Record("Name a colour.", target="Blue.", source="a:2"),
        Record("Count to three.", target="1, 2, 3", source="a:3"),
    ]
    convs = conversations(records, None, tok, True)
    context = sum(len(c.ids) - 1 for c in convs)
    packed = SFTBatches(convs, context, 1, shuffle=False, epochs=1)
    assert len(packed.rows) == 1
    single = SFTBatches(convs, context, 3, packing=False, shuffle=False, epochs=1)
    model = small(name, tok.vocab_size)
    objective = SFT()
    loss = llmkit.create("loss", "cross_entropy")
    with torch.no_grad():
        p_batch = next(iter(packed))
        p_logits, p_labels = objective.forward(model, p_batch)
        u_batch = next(iter(single))
        u_logits, u_labels = objective.forward(model, u_batch)
    at = 0
    for r, conv in enumerate(convs):
        n = len(conv.ids) - 1
        torch.testing.assert_close(p_logits[0, at : at + n], u_logits[r, :n], atol=1e-5, rtol=1e-5)
        assert torch.equal(p_labels[0, at : at + n], u_labels[r, :n])
        at += n
    torch.testing.assert_close(loss(p_logits, p_labels), loss(u_logits, u_labels))
    # Without the mask and resets the later conversations would see the earlier ones.
    with torch.no_grad():
        leaky = model(p_batch["input_ids"])
    n0 = len(convs[0].ids) - 1
    assert not torch.allclose(leaky[0, n0 : n0 + 3], u_logits[1, :3], atol=1e-4)


def test_batches_resume_and_held_out() -> None:
    from llmkit.objectives.base import TrainData
    from llmkit.objectives.sft import SFT

    tok = byte_tok()
    rows = [Record(f"Question {i}?", target=f"Answer {i}.", source=f"f:{i}") for i in range(12)]
    data = TrainData(tok, 96, 2, 128, 0, train_records=rows[:10], valid_records=rows[10:])
    prepared = SFT().batches(data)
    first = [next(prepared.train) for _ in range(3)]
    state = prepared.train.state_dict()  # type: ignore[attr-defined]
    after = next(prepared.train)
    again = SFT().batches(data).train
    again.load_state_dict(state)  # type: ignore[attr-defined]
    assert torch.equal(next(again)["input_ids"], after["input_ids"])
    assert first[0]["attention_mask"].dtype == torch.bool
    assert prepared.held_out is not None
    held = list(prepared.held_out())
    assert sum(int((b["labels"] != -100).sum()) for b in held) > 0
    assert next(iter(prepared.held_out()))["input_ids"].equal(held[0]["input_ids"])
    assert "<|im_start|>" in prepared.facts["generation"]["chat_template"]


def test_jsonl_reader_keeps_messages_as_json(tmp_path: Path) -> None:
    from llmkit.data.readers import JsonlReader

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": CHAT}) + "\n", encoding="utf-8")
    (record,) = list(JsonlReader([str(path)], field="messages"))
    assert json.loads(record.text or "") == CHAT and record.source == f"{path}:1"


def write_run(tmp_path: Path, rows: list[dict], steps: int = 2) -> Path:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pipeline = tmp_path / "sft.yaml"
    pipeline.write_text(
        f"output: {tmp_path / 'run'}\n"
        "tokenizer: {name: byte}\n"
        "data: {inputs: [chat.jsonl], format: jsonl, field: messages, validation: 0.2}\n"
        "train:\n  objective: {name: sft, max_new_tokens: 4}\n"
        "  model: {name: llama, n_layers: 1, n_heads: 2, n_kv_heads: 1, d_model: 16}\n"
        f"  context: 256\n  batch_size: 2\n  max_steps: {steps}\n  log_every: 1\n"
        "eval: {batches: 2}\n",
        encoding="utf-8",
    )
    return pipeline


def test_pipeline_trains_evaluates_and_refuses_bad_records(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from llmkit.cli import cli

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Q{i}?"},
                {"role": "assistant", "content": f"A{i}"},
            ]
        }
        for i in range(20)
    ]
    result = CliRunner().invoke(cli, ["run", str(write_run(tmp_path, rows))])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["metrics"]["loss"] > 0 and len(report["details"]["samples"]) >= 1
    bad = [*rows[:3], {"messages": [{"role": "user", "content": "no answer"}]}]
    (tmp_path / "bad").mkdir()
    result = CliRunner().invoke(cli, ["run", str(write_run(tmp_path / "bad", bad))])
    assert result.exit_code == 2
    assert "chat.jsonl:4: messages: no assistant turn" in result.output
    assert not (tmp_path / "bad" / "run" / "model").exists()
