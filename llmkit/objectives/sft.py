"""Instruction tuning (`sft`): conversations rendered with the model's chat template, loss on the
assistant's tokens, several short conversations packed into one window.

Packing: each window holds whole conversations one after another; every token's position restarts
at 0 where its conversation starts (position resets), and a block-diagonal causal mask (a 4-D
boolean `attention_mask`, True where a query may attend a key) lets a token attend only to the
earlier tokens of its own conversation. A packed conversation's logits are therefore those it
gets alone in a window (tested), and no label crosses from one conversation into the next.

A conversation longer than the window (`train.context` tokens of input) is dropped and counted,
not truncated: cutting it from the left would lose the question an answer replies to, from the
right the answer itself. The count is logged; a run where every conversation is too long stops.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.data.batching import _EpochBatches, _hash_texts
from llmkit.errors import UsageError
from llmkit.objectives.base import (
    IGNORE_INDEX,
    LM_METRICS,
    Batch,
    EvalData,
    EvalSettings,
    Objective,
    Prepared,
    TrainData,
)
from llmkit.objectives.causal_lm import CausalLM
from llmkit.objectives.chat import (
    Conversation,
    encode_conversation,
    end_of_turn_ids,
    messages_of,
    model_template,
    prompt_of,
    render,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.data.records import Record
    from llmkit.models.traits import ModelTraits

SAMPLES = 5  # generated answers written next to their references by the evaluation


def conversations(
    records: Sequence[Record], template: str | None, tokenizer: Any, assistant_only: bool
) -> list[Conversation]:
    """Every record rendered and encoded; errors name the record's file and line."""
    out = []
    for i, record in enumerate(records):
        where = record.source or f"record {i + 1}"
        messages = messages_of(record.text, record.target, where)
        out.append(encode_conversation(messages, template, tokenizer, where, assistant_only))
    return out


def fit_context(
    convs: list[Conversation], context: int, log: Any = None
) -> tuple[list[Conversation], int]:
    """The conversations whose inputs fit `context` tokens, and how many were dropped (logged)."""
    kept = [c for c in convs if len(c.ids) - 1 <= context and any(c.assistant[1:])]
    dropped = len(convs) - len(kept)
    if dropped:
        first = next(c for c in convs if c not in kept)
        line = (
            f"sft: dropped {dropped} of {len(convs)} conversations longer than the context "
            f"({context} tokens) or with no scored token (first: {first.source}, "
            f"{len(first.ids)} tokens); raise train.context to keep them"
        )
        (log or (lambda s: print(s, file=sys.stderr)))(line)
    return kept, dropped


def pack(lengths: Sequence[int], context: int) -> list[list[int]]:
    """Rows of conversation indices, in order, each row's inputs (length - 1 each) <= `context`."""
    rows: list[list[int]] = []
    used = context + 1
    for i, n in enumerate(lengths):
        if used + n - 1 > context:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n - 1
    return rows


def document_mask(doc: Tensor) -> Tensor:
    """(B, 1, T, T) bool: a query sees keys of its own document at or before it (pads see
    themselves, so that no row of the mask is empty)."""
    import torch

    t = doc.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=doc.device).tril()
    same = doc[:, :, None] == doc[:, None, :]
    eye = torch.eye(t, dtype=torch.bool, device=doc.device)
    return ((same & causal) | eye)[:, None]


class SFTBatches(_EpochBatches):
    """Windows of packed conversations: ``input_ids``, ``labels``, ``position_ids`` and a 4-D
    ``attention_mask``; the packing is fixed by the seed, windows are shuffled per epoch.

    Args:
        convs: Encoded conversations (each fits `context` + 1 tokens).
        context: Input tokens per window.
        batch_size: Windows per batch.
        pad_id: Id of padding (never scored, never attended to by real tokens).
        packing: Pack several conversations per window; without it one per window.
        shuffle: Shuffle the conversations before packing and the windows every epoch.
        seed: Seed of both shuffles.
        rank: This process's rank (default: torch.distributed's, else 0).
        world_size: Number of processes.
        epochs: Passes over the windows (None: endless).
    """

    def __init__(
        self,
        convs: Sequence[Conversation],
        context: int,
        batch_size: int,
        pad_id: int = 0,
        packing: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = None,
    ) -> None:
        from llmkit.data.batching import _rng

        if not convs:
            raise UsageError("sft: no conversations to batch")
        order = list(range(len(convs)))
        if shuffle:
            order = [int(i) for i in _rng(seed, 0, 7).permutation(len(convs))]
        self.convs = [convs[i] for i in order]
        self.context = context
        self.pad_id = pad_id
        self.packing = packing
        lengths = [len(c.ids) for c in self.convs]
        self.rows = pack(lengths, context) if packing else [[i] for i in range(len(lengths))]
        self._fp = _hash_texts(json.dumps(c.ids) + json.dumps(c.assistant) for c in self.convs)
        super().__init__(len(self.rows), batch_size, shuffle, seed, rank, world_size, epochs, False)

    def _fingerprint(self) -> str:
        return f"{self._fp}:{self.context}:{self.packing}"

    def window(self, row: Sequence[int]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(input ids, labels, position ids, document ids) of one window, unpadded."""
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        docs: list[int] = []
        for d, i in enumerate(row):
            conv = self.convs[i]
            n = len(conv.ids) - 1
            ids += conv.ids[:-1]
            labels += [
                t if s else IGNORE_INDEX
                for t, s in zip(conv.ids[1:], conv.assistant[1:], strict=True)
            ]
            positions += range(n)
            docs += [d] * n
        return ids, labels, positions, docs

    def batch(self, rows: Sequence[Sequence[int]]) -> Batch:
        """The tensors of a batch of windows, padded on the right to the longest."""
        import torch

        windows = [self.window(r) for r in rows]
        width = max(len(w[0]) for w in windows)
        b = len(windows)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((b, width), dtype=torch.long)
        docs = torch.full((b, width), -1, dtype=torch.long)
        for r, (i, lab, pos, doc) in enumerate(windows):
            n = len(i)
            ids[r, :n] = torch.tensor(i)
            labels[r, :n] = torch.tensor(lab)
            positions[r, :n] = torch.tensor(pos)
            docs[r, :n] = torch.tensor(doc)
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": positions,
            "attention_mask": document_mask(docs),
        }

    def __next__(self) -> Batch:
        idx = self._indices(self.step)
        self.step += 1
        return self.batch([self.rows[int(i)] for i in idx])


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's padding id (else its end-of-text id, else 0): never scored either way."""
    from llmkit.tokenizers.base import PAD_TOKENS, SEPARATOR_TOKENS, find_special

    pad = find_special(tokenizer, PAD_TOKENS)
    if pad is None:
        pad = find_special(tokenizer, SEPARATOR_TOKENS)
    return 0 if pad is None else int(pad)


class SFT(Objective):
    """Supervised fine-tuning on conversations: next-token loss on the assistant's turns only.

    Args:
        assistant_only: Score only the tokens of assistant turns (False: every token).
        packing: Pack several conversations into one window (per-document masks and positions).
        max_new_tokens: Longest generated answer the evaluation writes next to its reference.
    """

    name: ClassVar[str] = "sft"
    reads = "records"
    record_fields = ("text",)
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {**LM_METRICS, "loss": ("loss",)}
    default_metrics = ("loss", "perplexity")

    def __init__(
        self, assistant_only: bool = True, packing: bool = True, max_new_tokens: int = 64
    ) -> None:
        self.assistant_only = assistant_only
        self.packing = packing
        self.max_new_tokens = max_new_tokens

    def check_model(self, traits: ModelTraits) -> str | None:
        """A decoder, as for causal_lm."""
        return CausalLM.check_model(self, traits)  # type: ignore[arg-type]

    def batches(self, data: TrainData) -> Prepared:
        """Packed windows of the training conversations; the held-out ones in order."""
        from llmkit.inference.generation import CHATML_TEMPLATE
        from llmkit.storage.checkpoint import load_generation_config

        init_from = data.init_from
        template = model_template(init_from)
        generation: dict[str, Any] = {}
        if init_from is not None and (init_from / "config.json").is_file():
            generation = dict(load_generation_config(init_from))
        generation["chat_template"] = template or CHATML_TEMPLATE
        pad = pad_id_of(data.tokenizer)

        def make(records: list[Record], train: bool) -> SFTBatches:
            convs = conversations(records, template, data.tokenizer, self.assistant_only)
            kept, _ = fit_context(convs, data.context)
            if not kept:
                raise UsageError(
                    f"sft: every {'training' if train else 'validation'} conversation is longer "
                    f"than the context ({data.context} tokens); raise train.context"
                )
            return SFTBatches(
                kept,
                data.context,
                data.batch_size,
                pad_id=pad,
                packing=self.packing,
                shuffle=train,
                seed=data.seed,
                rank=None if train else 0,
                world_size=None if train else 1,
                epochs=None if train else 1,
            )

        train = make(data.train_records, True)
        valid = make(data.valid_records, False) if data.valid_records else None

        def held_out() -> Iterator[Batch]:
            assert valid is not None
            valid.step = 0
            return valid

        return Prepared(train, held_out if valid else None, {"generation": generation})

    def generation_config(self, prepared: Prepared) -> dict[str, Any] | None:
        """The base model's generation settings and the chat template training rendered with."""
        generation: dict[str, Any] | None = prepared.facts.get("generation")
        return generation

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Logits of packed windows (per-document positions and masks) and their labels."""
        logits = model(
            batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            position_ids=batch.get("position_ids"),
        )
        return logits, batch["labels"]

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Held-out loss (and perplexity) on the assistant tokens, and greedy answers to the first
        few held-out prompts next to their references (`details.samples`)."""
        from llmkit.evaluation import core
        from llmkit.evaluation.windows import model_context
        from llmkit.inference.batch import generate_texts_batched
        from llmkit.storage.checkpoint import load_generation_config

        records = data.records or []
        if not records:
            raise UsageError("sft: no held-out conversations to evaluate")
        template = model_template(settings.model_dir)
        context = model_context(model, settings.context)
        convs = conversations(records, template, tokenizer, self.assistant_only)
        kept, dropped = fit_context(convs, context)
        if not kept:
            raise UsageError(
                f"sft: every held-out conversation is longer than the context ({context} tokens)"
            )
        batches = SFTBatches(
            kept, context, settings.batch_size, pad_id_of(tokenizer), packing=False,
            shuffle=False, rank=0, world_size=1, epochs=1,
        )  # fmt: skip
        plain = ({"input_ids": b["input_ids"], "labels": b["labels"]} for b in batches)
        result = core.evaluate_lm(model, plain, max_batches=settings.max_batches)
        result["task"] = self.name
        result["metrics"]["loss"] = result["metrics"]["nll"]
        result["details"].update(conversations=len(kept), dropped=dropped, context=context)
        generation = (
            load_generation_config(settings.model_dir)
            if settings.model_dir is not None and (settings.model_dir / "config.json").is_file()
            else {}
        )
        rows = [messages_of(r.text, r.target, r.source) for r in records[:SAMPLES]]
        prompts = [render(prompt_of(m)[0], template, True) for m in rows]
        answers = generate_texts_batched(
            model,
            tokenizer,
            prompts,
            batch_size=settings.batch_size,
            max_new_tokens=self.max_new_tokens,
            stop_token_ids=end_of_turn_ids(tokenizer, generation),
        )
        result["details"]["samples"] = [
            {"prompt": prompt_of(m)[0][-1]["content"] if prompt_of(m)[0] else "",
             "reference": prompt_of(m)[1], "answer": a.strip()}
            for m, a in zip(rows, answers, strict=True)
        ]  # fmt: skip
        return result
