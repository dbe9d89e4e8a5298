"""Text generation: greedy, temperature, top-k and top-p sampling with a KV cache, streaming, and
beam search (for encoder-decoder and decoder-only models).

Decoder-only models follow the llmkit protocol: `model.new_cache(batch_size, max_length)` and
`model(ids, cache=cache) -> logits (B, T, V)`; encoder-decoder models add `encode(src, src_mask)`
and `decode(tgt, memory, src_mask=None, cache=None)`. A model without `new_cache` (or any module
returning `.logits`) still works, recomputing the whole sequence at each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from llmkit.tokenizers.base import Tokenizer

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen: temperature 0 is greedy; top-k/top-p trim the distribution."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UsageError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """True when decoding takes the argmax (temperature 0 or top-k 1)."""
        return self.temperature == 0 or self.top_k == 1


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Logits with everything below the k-th largest value (per row) set to -inf."""
    import torch

    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Logits outside the smallest set of tokens whose probability sums to >= p set to -inf."""
    import torch

    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # A token is dropped when the tokens ranked above it already reach p; the top one always stays.
    before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: Tensor, sampling: SamplingConfig, generator: torch.Generator | None = None
) -> Tensor:
    """Choose one token id per row of `logits` (B, V) -> (B,)."""
    import torch

    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k is not None:
        logits = top_k_filter(logits, sampling.top_k)
    if sampling.top_p is not None:
        logits = top_p_filter(logits, sampling.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def penalize_repetition(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """Logits (B, V) with the `seen` (B, V) tokens pushed down: x / penalty if x > 0 else x * penalty."""
    import torch

    logits = logits.float()
    pushed = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, pushed, logits)


def logits_of(output: Any) -> Tensor:
    """Logits from a model's output: a tensor, an object with `.logits`, or a tuple led by them."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, tuple | list):
        return output[0]
    return output


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's positions allow, if its config says (None = unbounded)."""
    config = getattr(model, "config", None)
    for name in (
        "max_positions",
        "max_seq_len",
        "block_size",
        "context_length",
        "max_len",
        "max_length",
        "n_positions",
        "max_position_embeddings",
    ):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def accepts(model: nn.Module, argument: str) -> bool:
    """True if the model's forward takes the keyword `argument` (e.g. position_ids)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return argument in params


def refuse_encoder(
    where: Any, config: dict[str, Any], doing: str = "does not generate text"
) -> None:
    """A UsageError if the checkpoint config at `where` is a bidirectional encoder's (its model
    declares itself an encoder, as BERT does).

    Such a model sees every position at once, so it neither generates text nor has a next-token
    perplexity; `llmkit generate` and `llmkit eval` (generation) refuse it with this one line.
    """
    from llmkit.models.traits import registered_traits
    from llmkit.plugins import get_host

    name = config.get("model")
    if not isinstance(name, str) or ("model", name) not in get_host().registry:
        return  # an unknown model: loading it says which plugin is missing
    if registered_traits(name).is_encoder:
        raise UsageError(f"{where}: a {name} checkpoint is an encoder and {doing}")


def decoder_start_id(tokenizer: Any, generation: dict[str, Any] | None = None) -> int | None:
    """The id an encoder-decoder model's decoder starts from, or None if nothing qualifies.

    The `bos_token_id` of the checkpoint's generation settings when it holds one; else the rule the
    seq2seq objective trains with by default (`Seq2SeqBatches`): the tokenizer's BOS token, else
    its PAD token, else its end token. `llmkit generate` and `llmkit eval` both decode from this.
    """
    from llmkit.tokenizers.base import BOS_TOKENS, PAD_TOKENS, SEPARATOR_TOKENS, find_special

    saved = (generation or {}).get("bos_token_id")
    if isinstance(saved, int) and not isinstance(saved, bool):
        return saved
    for names in (BOS_TOKENS, PAD_TOKENS, SEPARATOR_TOKENS):
        found = find_special(tokenizer, names)
        if found is not None:
            return found
    return None


def _last_only(model: nn.Module) -> dict[str, int]:
    """`logits_to_keep=1` if the model's forward accepts it: the prompt needs only its last logits."""
    return {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}


def positions_from_mask(mask: Tensor) -> Tensor:
    """Position ids (B, T) for a left-padded 1/0 mask: 0 at each row's first token, 0 on padding."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    import torch

    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _as_ids(input_ids: Tensor | Sequence[int] | Sequence[Sequence[int]], device: Any) -> Tensor:
    import torch

    ids = torch.as_tensor(input_ids, dtype=torch.long, device=device)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise UsageError(
            f"input_ids must be a non-empty (batch, time) array, got {tuple(ids.shape)}"
        )
    return ids


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def stream(
    model: nn.Module,
    input_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token_ids: Iterable[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    repetition_penalty: float = 1.0,
    attention_mask: Tensor | None = None,
) -> Iterator[Tensor]:
    """Yield the next token ids (B,) one step at a time until every row stopped or the budget ends.

    A row that produced a stop token keeps yielding that stop token, so rows stay aligned.
    `repetition_penalty` > 1 makes every token already in the row (prompt included) less likely,
    as in CTRL and Hugging Face: positive logits are divided by it, negative ones multiplied.
    `attention_mask` (B, T), 1 for tokens and 0 for left padding, lets prompts of different lengths
    share a batch (see `pad_left`); it grows by one column per step.
    """
    import torch

    sampling = SamplingConfig(temperature, top_k, top_p)
    if repetition_penalty <= 0:
        raise UsageError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")
    if max_new_tokens < 0:
        raise UsageError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = model_device(model)
    ids = _as_ids(input_ids, device)
    limit = context_length(model)
    if limit is not None and ids.shape[1] >= limit:
        raise UsageError(
            f"the prompt has {ids.shape[1]} tokens; the model's context is {limit} tokens"
        )
    if limit is not None:
        max_new_tokens = min(max_new_tokens, limit - ids.shape[1])
    stops = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long, device=device)
    generator = _generator(seed, device)
    cached = use_cache and hasattr(model, "new_cache")
    mask_kw: dict[str, Tensor] = {}
    if attention_mask is not None:
        mask = torch.as_tensor(attention_mask, device=device).long()
        if mask.shape != ids.shape:
            raise UsageError(
                f"attention_mask has shape {tuple(mask.shape)}; the prompt is {tuple(ids.shape)}"
            )
        mask_kw = {"attention_mask": mask}
        if accepts(model, "position_ids"):
            mask_kw["position_ids"] = positions_from_mask(mask)
    was_training = model.training
    model.eval()
    batch = ids.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    finished_with = torch.full((batch,), -1, dtype=torch.long, device=device)
    try:
        # inference mode only around the model, never across a yield (it is thread-wide state)
        with torch.inference_mode():
            if cached:
                cache = model.new_cache(  # type: ignore[operator]
                    batch_size=batch, max_length=ids.shape[1] + max_new_tokens
                )
                logits = logits_of(model(ids, cache=cache, **_last_only(model), **mask_kw))[:, -1]
            else:
                seq = ids
                logits = logits_of(model(seq, **mask_kw))[:, -1]
        seen = None
        if repetition_penalty != 1.0:
            real = mask_kw["attention_mask"] if mask_kw else torch.ones_like(ids)  # not padding
            counts = torch.zeros(batch, logits.shape[-1], dtype=torch.long, device=device)
            seen = counts.scatter_add_(1, ids.clamp(max=logits.shape[-1] - 1), real) > 0
        for step in range(max_new_tokens):
            with torch.inference_mode():
                if seen is not None:
                    logits = penalize_repetition(logits, seen, repetition_penalty)
                token = next_token(logits, sampling, generator)
                if seen is not None:
                    seen.scatter_(1, token[:, None], True)
                if stops.numel():
                    token = torch.where(done, finished_with, token)
                    newly = ~done & torch.isin(token, stops)
                    finished_with = torch.where(newly, token, finished_with)
                    done = done | newly
            yield token
            if step == max_new_tokens - 1 or (stops.numel() and bool(done.all())):
                break
            with torch.inference_mode():
                if mask_kw:
                    mask = mask_kw["attention_mask"]
                    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                    mask_kw["attention_mask"] = mask
                    if "position_ids" in mask_kw:
                        pos = positions_from_mask(mask)
                        mask_kw["position_ids"] = pos[:, -1:] if cached else pos
                if cached:
                    logits = logits_of(model(token[:, None], cache=cache, **mask_kw))[:, -1]
                else:
                    seq = torch.cat([seq, token[:, None]], dim=1)
                    logits = logits_of(model(seq, **mask_kw))[:, -1]
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token_ids: Iterable[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    repetition_penalty: float = 1.0,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Prompt plus generated ids, (B, T + new); stopped rows are padded with their stop token."""
    import torch

    ids = _as_ids(input_ids, model_device(model))
    new = list(
        stream(
            model,
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_token_ids=stop_token_ids,
            seed=seed,
            use_cache=use_cache,
            repetition_penalty=repetition_penalty,
            attention_mask=attention_mask,
        )
    )
    if not new:
        return ids
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1)


def pad_left(
    prompts: Sequence[Sequence[int]], pad_id: int = 0, model: nn.Module | None = None
) -> tuple[Tensor, Tensor]:
    """(ids, attention_mask), both (B, longest), for prompts of different lengths, padded on the left.

    Left padding keeps every row's last token in the last column; `stream`/`generate` derive each
    row's positions from the mask (`position_ids`). A `model` whose forward takes no
    `position_ids` but has absolute positions (learned, sinusoidal) would see shifted positions,
    so with such a model it is a UsageError.
    """
    import torch

    if not prompts or any(len(p) == 0 for p in prompts):
        raise UsageError("pad_left needs at least one prompt and no empty prompt")
    position = getattr(getattr(model, "config", None), "position", None)
    lengths = {len(p) for p in prompts}
    if (
        model is not None
        and len(lengths) > 1
        and position not in (None, "rope", "alibi", "none")
        and not accepts(model, "position_ids")
    ):
        raise UsageError(
            f"prompts of different lengths cannot share a batch with position={position!r} "
            "(absolute positions would shift); generate them one by one"
        )
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids, mask


def first_stop(text: str, stop_strings: Sequence[str]) -> int:
    """Index of the earliest stop string in `text`, or -1."""
    return min((i for i in (text.find(s) for s in stop_strings if s) if i >= 0), default=-1)


def _holdback(text: str, stop_strings: Sequence[str]) -> int:
    """How many trailing characters of `text` could still grow into a stop string."""
    keep = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    return keep


def stream_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str | Sequence[int],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    stop_token_ids: Iterable[int] = (),
    seed: int | None = None,
    repetition_penalty: float = 1.0,
) -> Iterator[str]:
    """Yield pieces of generated text as tokens arrive, ending before any stop string or token.

    Pieces never split a UTF-8 character and never show the start of a stop string.
    """
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    ids = (
        encode_prompt(tokenizer, prompt, vocab_size=vocab)
        if isinstance(prompt, str)
        else list(prompt)
    )
    if not ids:
        raise UsageError("the prompt is empty after tokenization; give some text")
    stop_ids = set(stop_token_ids)
    stop_strings = [s for s in stop if s]
    generated: list[int] = []
    shown = 0
    text = ""
    for token in stream(
        model,
        [ids],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_token_ids=stop_ids,
        seed=seed,
        repetition_penalty=repetition_penalty,
    ):
        tok = int(token[0])
        if tok in stop_ids:
            break
        generated.append(tok)
        text = tokenizer.decode(generated)
        cut = first_stop(text, stop_strings)
        if cut >= 0:
            if cut > shown:
                yield text[shown:cut]
            return
        if text.endswith("\ufffd"):
            continue
        end = len(text) - _holdback(text, stop_strings)
        if end > shown:
            yield text[shown:end]
            shown = end
    if len(text) > shown:
        yield text[shown:].rstrip("\ufffd") if text.endswith("\ufffd") else text[shown:]


def generate_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str | Sequence[int],
    **options: Any,
) -> str:
    """The text generated after `prompt` (options as in `stream_text`)."""
    return "".join(stream_text(model, tokenizer, prompt, **options))


def encode_prompt(
    tokenizer: Tokenizer, text: str, special: bool = True, vocab_size: int | None = None
) -> list[int]:
    """Ids of `text`; with `special`, special-token texts in it (e.g. `<|im_start|>`) become their ids.

    Ids at or past `vocab_size` that stand for a single character (bytes a model's vocabulary
    lacks) are dropped; any other such id means the tokenizer does not belong to the model.
    """
    import re

    specials = tokenizer.special_tokens if special else {}
    ids: list[int] = []
    if specials:
        pattern = (
            "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
        )
        for i, piece in enumerate(re.split(pattern, text)):
            if i % 2:
                ids.append(specials[piece])
            elif piece:
                ids.extend(tokenizer.encode(piece))
    else:
        ids = tokenizer.encode(text)
    if vocab_size is not None and any(i >= vocab_size for i in ids):
        words = [i for i in ids if i >= vocab_size and len(tokenizer.decode([i])) > 1]
        if words:
            raise UsageError(
                f"the tokenizer gives id {words[0]} ({tokenizer.decode([words[0]])!r}) but the "
                f"model has {vocab_size} ids: the tokenizer does not belong to this model"
            )
        ids = [i for i in ids if i < vocab_size]
    return ids


def apply_chat_template(
    messages: Sequence[dict[str, str]],
    template: str | None = None,
    add_generation_prompt: bool = True,
    **variables: Any,
) -> str:
    """Render chat `messages` ({'role', 'content'}) with a Jinja chat template (ChatML by default).

    The template runs in Jinja's immutable sandbox (as in Hugging Face): it comes from a file.
    """
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise UsageError(f"chat message {i} must be a dict with 'role' and 'content'")
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    try:
        return env.from_string(template or CHATML_TEMPLATE).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as exc:
        raise UsageError(f"chat template cannot be rendered: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Beam search


@dataclass
class Hypothesis:
    """A finished beam: generated ids (no start/stop token) and its length-normalised score."""

    tokens: list[int]
    score: float


def beam_search(
    model: nn.Module,
    input_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    *,
    beam_size: int = 4,
    max_new_tokens: int = 64,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    length_penalty: float = 1.0,
    src_mask: Tensor | None = None,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """The `n_best` highest-scoring continuations for each row, best first.

    For an encoder-decoder model `input_ids` is the source and decoding starts from `bos_token_id`;
    for a decoder-only model `input_ids` is the prompt. Scores are summed log-probabilities divided
    by length ** `length_penalty`. Beams are expanded in one batch of size B * beam_size, and the KV
    cache follows the surviving beams through `cache.reorder`.
    """
    import torch

    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise UsageError(
            f"need beam_size >= n_best >= 1, got beam_size={beam_size} n_best={n_best}"
        )
    device = model_device(model)
    src = _as_ids(input_ids, device)
    batch, k = src.shape[0], beam_size
    seq2seq = hasattr(model, "encode") and hasattr(model, "decode")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            step_fn, prefix = _beam_stepper(
                model, src, k, max_new_tokens, bos_token_id, src_mask, seq2seq
            )
            return _beam_loop(
                step_fn,
                prefix,
                batch,
                k,
                max_new_tokens,
                eos_token_id,
                length_penalty,
                n_best,
                device,
            )
    finally:
        model.train(was_training)


def _beam_stepper(
    model: nn.Module,
    src: Tensor,
    k: int,
    max_new_tokens: int,
    bos_token_id: int | None,
    src_mask: Tensor | None,
    seq2seq: bool,
) -> tuple[Callable[[Tensor, Tensor | None], Tensor], Tensor]:
    """A step (new tokens (N, t), beam order or None) -> next log-probs (N, V), and the prefix."""
    import torch

    batch = src.shape[0]
    if seq2seq:
        if bos_token_id is None:
            raise UsageError("beam search for an encoder-decoder model needs bos_token_id")
        memory = model.encode(src, src_mask)  # type: ignore[operator]
        memory = memory.repeat_interleave(k, dim=0)
        mask = src_mask.repeat_interleave(k, dim=0) if src_mask is not None else None
        prefix = torch.full((batch * k, 1), bos_token_id, dtype=torch.long, device=src.device)
        cache = model.new_cache(batch * k, max_new_tokens + 1)  # type: ignore[operator]

        def step(tokens: Tensor, order: Tensor | None) -> Tensor:
            if order is not None:
                cache.reorder(order)
            logits = logits_of(model.decode(tokens, memory, mask, cache=cache))  # type: ignore[operator]
            return torch.log_softmax(logits[:, -1].float(), dim=-1)

        return step, prefix

    prefix = src.repeat_interleave(k, dim=0)
    if hasattr(model, "new_cache"):
        cache = model.new_cache(batch * k, src.shape[1] + max_new_tokens)  # type: ignore[operator]

        def step(tokens: Tensor, order: Tensor | None) -> Tensor:
            if order is not None:
                cache.reorder(order)
            logits = logits_of(model(tokens, cache=cache))
            return torch.log_softmax(logits[:, -1].float(), dim=-1)

        return step, prefix

    state = {"seq": prefix[:, :0]}

    def step_nocache(tokens: Tensor, order: Tensor | None) -> Tensor:
        seq = state["seq"] if order is None else state["seq"][order]
        state["seq"] = torch.cat([seq, tokens], dim=1)
        return torch.log_softmax(logits_of(model(state["seq"]))[:, -1].float(), dim=-1)

    return step_nocache, prefix


def _beam_loop(
    step: Callable[[Tensor, Tensor | None], Tensor],
    prefix: Tensor,
    batch: int,
    k: int,
    max_new_tokens: int,
    eos: int | None,
    length_penalty: float,
    n_best: int,
    device: torch.device,
) -> list[list[Hypothesis]]:
    import torch

    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not repeat it
    tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    logp = step(prefix, None)
    vocab = logp.shape[-1]

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** length_penalty)

    for t in range(max_new_tokens):
        total = (scores.view(-1, 1) + logp).view(batch, k * vocab)
        top_scores, top_idx = total.topk(min(2 * k, k * vocab), dim=-1)
        next_scores = torch.full((batch, k), float("-inf"), device=device)
        next_tokens = torch.zeros((batch, k), dtype=torch.long, device=device)
        next_beams = torch.zeros((batch, k), dtype=torch.long, device=device)
        top_scores_l, top_idx_l = top_scores.tolist(), top_idx.tolist()
        for b in range(batch):
            if done[b]:
                next_beams[b] = torch.arange(k, device=device)
                continue
            slot = 0
            for rank, (score, idx) in enumerate(zip(top_scores_l[b], top_idx_l[b], strict=True)):
                if score == float("-inf"):
                    break
                beam, token = divmod(idx, vocab)
                if eos is not None and token == eos:
                    if rank < k:
                        seq = tokens[b * k + beam].tolist()
                        finished[b].append(Hypothesis(seq, norm(score, len(seq) + 1)))
                    continue
                next_scores[b, slot], next_tokens[b, slot], next_beams[b, slot] = score, token, beam
                slot += 1
                if slot == k:
                    break
            if len(finished[b]) >= k:
                best_live = norm(float(next_scores[b].max()), t + 1)
                worst_kept = sorted(h.score for h in finished[b])[-k]
                done[b] = best_live <= worst_kept
        if all(done):
            break
        order = (next_beams + torch.arange(batch, device=device)[:, None] * k).view(-1)
        tokens = torch.cat([tokens[order], next_tokens.view(-1, 1)], dim=1)
        scores = next_scores
        if t == max_new_tokens - 1:
            break
        logp = step(next_tokens.view(-1, 1), order)

    results = []
    for b in range(batch):
        hyps = list(finished[b])
        if not done[b]:
            for j in range(k):
                score = float(scores[b, j])
                if score > float("-inf"):
                    seq = tokens[b * k + j].tolist()
                    hyps.append(Hypothesis(seq, norm(score, len(seq))))
        hyps.sort(key=lambda h: h.score, reverse=True)
        results.append(hyps[:n_best])
    return results
