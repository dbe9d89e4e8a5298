"""The distill objective: its loss against a hand computation, the tokenizer refusal, a short run."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

import llmkit
from llmkit.errors import UsageError
from llmkit.objectives.distill import Distill


class Fixed(torch.nn.Module):
    """A teacher whose logits are given."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits, requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits


@pytest.mark.parametrize(("alpha", "temperature"), [(0.5, 2.0), (0.2, 1.0), (0.0, 3.0)])
def test_loss_equals_hand_computation(alpha: float, temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 8, generator=g)
    teacher = torch.randn(2, 3, 8, generator=g)
    targets = torch.tensor([[1, 2, -100], [4, -100, 7]])
    objective = Distill(alpha=alpha, temperature=temperature)
    objective.teacher = Fixed(teacher)
    ce_loss = llmkit.create("loss", "cross_entropy")
    got = objective.score(ce_loss, student, targets, {"input_ids": targets.clamp(min=0)})
    keep = targets != -100
    ce = F.cross_entropy(student[keep], targets[keep])
    kl = F.kl_div(
        F.log_softmax(student[keep] / temperature, -1),
        F.log_softmax(teacher[keep] / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    expected = alpha * ce + (1 - alpha) * temperature**2 * kl
    torch.testing.assert_close(got, expected)


def save_tiny(directory: Path, tokenizer: object, vocab: int) -> None:
    from llmkit.storage.checkpoint import save_model

    torch.manual_seed(0)
    model = llmkit.create(
        "model", "llama", vocab_size=vocab, n_layers=1, n_heads=2, n_kv_heads=1, d_model=16
    )
    save_model(model, directory, tokenizer=tokenizer)


class Other:
    """A student tokenizer with another vocabulary."""

    vocab_size = 100
    special_tokens: ClassVar[dict[str, int]] = {}

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 100 for c in text]


def test_teacher_with_another_tokenizer_is_refused(tmp_path: Path) -> None:
    teacher_tok = llmkit.create("tokenizer", "byte")
    save_tiny(tmp_path / "teacher", teacher_tok, teacher_tok.vocab_size)
    student_tok = Other()
    with pytest.raises(UsageError) as err:
        Distill().load_teacher(tmp_path / "teacher", student_tok)
    line = str(err.value)
    assert "\n" not in line and str(tmp_path / "teacher") in line
    assert "teacher's tokenizer" in line and "student's" in line


def test_bad_parameters() -> None:
    with pytest.raises(UsageError, match="alpha"):
        Distill(alpha=1.5)
    with pytest.raises(UsageError, match="temperature"):
        Distill(temperature=0)
