"""WordPiece benchmark: llmkit vs Hugging Face `tokenizers`, side by side, as ratios.

Corpus: real English prose available offline (Vim's help files and Python's pydoc topics).
Measures training a vocabulary (WordPieceTrainer vs ours, same corpus and settings) and encoding
with the same vocabulary on one thread and in batch (all cores). Checks the ids are identical.

    python benches/wordpiece.py [--vocab-size 30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Callable
from pydoc_data.topics import topics


def corpus() -> list[str]:
    """Paragraph-sized texts of real English: Vim's help files and Python's pydoc topics."""
    texts: list[str] = []
    for path in sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt")):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.extend(p for p in f.read().split("\n\n") if p.strip())
    texts.extend(topics.values())
    return texts


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` runs (seconds)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from llmkit.tokenizers.wordpiece import DEFAULT_SPECIAL_TOKENS, WordPieceTokenizer

    texts = corpus()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {len(texts)} texts, {mb:.1f} MB; cores: {os.cpu_count()}")

    def hf_train() -> Tokenizer:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=args.vocab_size,
            special_tokens=list(DEFAULT_SPECIAL_TOKENS),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return tok

    hf = hf_train()
    t_hf = best(hf_train, args.repeat)
    t_ours = best(
        lambda: WordPieceTokenizer.train(iter(texts), vocab_size=args.vocab_size), args.repeat
    )
    print(
        f"train {args.vocab_size}: tokenizers {t_hf:.2f} s, llmkit {t_ours:.2f} s "
        f"-> {t_hf / t_ours:.1f}x"
    )

    vocab = hf.get_vocab()
    ours = WordPieceTokenizer(sorted(vocab, key=vocab.__getitem__))
    hf.add_special_tokens(list(DEFAULT_SPECIAL_TOKENS))
    expected = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert ours.encode_batch(texts) == expected, "ids differ from tokenizers"
    print(f"ids identical on {sum(map(len, expected))} tokens")

    def one_thread_hf() -> None:
        for t in texts:
            hf.encode(t, add_special_tokens=False)

    def one_thread_ours() -> None:
        for t in texts:
            ours.encode(t)

    whole = "\n\n".join(texts)
    rows = [
        ("encode, one thread", one_thread_hf, one_thread_ours),
        (
            "encode the corpus as one text",
            lambda: hf.encode(whole, add_special_tokens=False),
            lambda: ours.encode(whole),
        ),
        (
            "encode_batch, all cores",
            lambda: hf.encode_batch(texts, add_special_tokens=False),
            lambda: ours.encode_batch(texts),
        ),
    ]
    for name, f_hf, f_ours in rows:
        a, b = best(f_hf, args.repeat), best(f_ours, args.repeat)
        print(f"{name}: tokenizers {mb / a:.1f} MB/s, llmkit {mb / b:.1f} MB/s -> {a / b:.1f}x")


if __name__ == "__main__":
    main()
