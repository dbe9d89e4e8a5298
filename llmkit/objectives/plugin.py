"""Built-in objectives, registered through the same hook as a third party's."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl

OBJECTIVES = {
    "causal_lm": ("causal_lm:CausalLM", "Next-token prediction over token-shard windows"),
    "masked_lm": ("masked_lm:MaskedLM", "BERT-style masked-token prediction (mask_rate 0.15)"),
    "seq2seq": ("seq2seq:Seq2Seq", "Teacher-forced target prediction for encoder-decoders"),
    "classification": ("classification:Classification", "A label per text via a classify head"),
    "sft": ("sft:SFT", "Instruction tuning on chat records, loss on assistant turns, packed"),
    "distill": ("distill:Distill", "Next-token CE plus KL to a teacher checkpoint's logits"),
}


@hookimpl
def register_objectives(register: Register) -> None:
    """Register causal_lm, masked_lm, seq2seq, classification, sft and distill."""
    for name, (target, summary) in OBJECTIVES.items():
        register(name, f"llmkit.objectives.{target}", summary=summary)
