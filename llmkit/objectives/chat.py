"""Conversations for instruction tuning: records -> messages -> a chat template -> ids and a loss mask.

A record is either `{"messages": [{"role", "content"}, ...]}` (read with `field: messages`; the
JSONL reader keeps the list as JSON text) or `{"prompt", "response"}` (read with `field: prompt`,
`target_field: response`), which is one user turn and one assistant turn. Conversations are
rendered with the model's own Jinja chat template (a checkpoint's `generation.chat_template`,
which `llmkit import gguf` and `llmkit import hf` keep) or ChatML where the model has none, in
Jinja's immutable sandbox, through the same `apply_chat_template` that `llmkit generate --chat`
uses, so training and chatting see the same text.

Which tokens an assistant wrote is found by rendering growing prefixes of the conversation: the
text an assistant turn adds after the template's generation prompt (its content and end-of-turn
marker) is scored, everything else (system, user, the template's own headers) is not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass
class Conversation:
    """A rendered conversation: token ids, which of them an assistant turn wrote, its origin."""

    ids: list[int]
    assistant: list[bool]
    source: str


def messages_of(text: str | None, target: str | None, where: str) -> list[Message]:
    """The checked messages of one record: a JSON list of messages, or a prompt and a response.

    Errors name `where` (file:line) and the field: a missing or empty field, a message without
    role or content, an unknown role, a conversation without an assistant turn.
    """
    if target is not None:
        if not text:
            raise UsageError(f"{where}: field 'prompt' is missing or empty")
        return [{"role": "user", "content": text}, {"role": "assistant", "content": target}]
    if not text:
        raise UsageError(
            f"{where}: field 'messages' is missing; give messages (data.field: messages) or a "
            "prompt and a response (data.field: prompt, data.target_field: response)"
        )
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, list):
        raise UsageError(
            f"{where}: field 'messages' must be a list of {{role, content}} objects; for "
            "prompt/response records set data.target_field: response"
        )
    return check_messages(raw, where)


def check_messages(raw: Sequence[Any], where: str) -> list[Message]:
    """`raw` as messages, each with a known role and text content, at least one assistant's."""
    out: list[Message] = []
    for i, message in enumerate(raw):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise UsageError(f"{where}: messages[{i}]: must be an object with role and content")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise UsageError(
                f"{where}: messages[{i}].role: unknown role {role!r}; use one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise UsageError(f"{where}: messages[{i}].content: must be text, got {content!r}")
        out.append({"role": str(role), "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise UsageError(
            f"{where}: messages: no assistant turn, so nothing to learn; add one or drop the record"
        )
    return out


def render(messages: Sequence[Message], template: str | None, add_generation_prompt: bool) -> str:
    """The template's text of `messages` (ChatML when `template` is None)."""
    from llmkit.inference.generation import apply_chat_template

    return apply_chat_template(messages, template, add_generation_prompt=add_generation_prompt)


def encode_conversation(
    messages: Sequence[Message],
    template: str | None,
    tokenizer: Any,
    where: str,
    assistant_only: bool = True,
) -> Conversation:
    """Ids of the rendered conversation and, per id, whether it is scored.

    With `assistant_only` the scored ids are those each assistant turn adds after the generation
    prompt; without it every id is. A template that fails to render, or whose rendering of a
    shorter conversation is not a prefix of the longer one's, is an error naming `where`.
    """
    from llmkit.inference.generation import encode_prompt

    pieces: list[tuple[str, bool]] = []
    done = ""

    def extend(text: str, scored: bool, what: str) -> None:
        nonlocal done
        if not text.startswith(done):
            raise UsageError(
                f"{where}: the chat template renders {what} so that it does not extend the "
                "conversation before it; llmkit cannot tell the assistant's tokens apart"
            )
        if len(text) > len(done):
            pieces.append((text[len(done) :], scored))
        done = text

    try:
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                extend(render(messages[:i], template, True), False, f"messages[{i}]'s prompt")
                extend(render(messages[: i + 1], template, False), True, f"messages[{i}]")
            else:
                extend(render(messages[: i + 1], template, False), False, f"messages[{i}]")
    except UsageError as exc:
        if str(exc).startswith(where):
            raise
        raise UsageError(f"{where}: {exc}") from None
    except Exception as exc:  # a template's own error (a raise_exception call, a bad filter)
        raise UsageError(
            f"{where}: chat template cannot be rendered ({type(exc).__name__}: {exc})"
        ) from None
    ids: list[int] = []
    scored: list[bool] = []
    for text, is_assistant in pieces:
        piece = encode_prompt(tokenizer, text)
        ids += piece
        scored += [is_assistant or not assistant_only] * len(piece)
    return Conversation(ids, scored, where)


def prompt_of(messages: Sequence[Message]) -> tuple[list[Message], str]:
    """The conversation before its last assistant turn, and that turn's content (the reference)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return list(messages[:last]), messages[last]["content"]


def model_template(directory: str | Path | None) -> str | None:
    """The chat template stored with a checkpoint (None: it has none, ChatML is used)."""
    if directory is None or not (Path(directory) / "config.json").is_file():
        return None
    from llmkit.storage.checkpoint import load_generation_config

    template = load_generation_config(directory).get("chat_template")
    return template if isinstance(template, str) and template else None


def end_of_turn_ids(tokenizer: Any, generation: Mapping[str, Any]) -> set[int]:
    """Ids that end an assistant turn: the checkpoint's eos ids and ChatML's `<|im_end|>`."""
    stops: set[int] = set()
    eos = generation.get("eos_token_id")
    stops.update([eos] if isinstance(eos, int) else (eos or []))
    special = getattr(tokenizer, "special_tokens", {}) or {}
    if "<|im_end|>" in special:
        stops.add(special["<|im_end|>"])
    return stops
