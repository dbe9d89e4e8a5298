"""Write the synthetic instruction set of this example: small tasks answered in one fixed format.

Every answer is a one-line JSON object `{"answer": ...}`, a format SmolLM2-135M-Instruct does not
use on its own, so a tuned model that answers held-out questions that way has learned it. The
questions are generated here from fixed word lists (public domain facts, no external data); run
`python make_data.py` to rewrite data/chat.jsonl (messages) and data/pairs.jsonl (prompt/response).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    *("cat", "dog", "sun", "moon", "tree", "river", "stone", "cloud", "apple", "bread", "chair"),
    *("light", "green", "music", "paper", "glass", "table", "water", "candle", "garden"),
    *("window", "silver", "planet", "orange", "bottle"),
]
COLOURS = {"grass": "green", "snow": "white", "coal": "black", "the sky": "blue", "blood": "red"}


def task(rng: random.Random) -> tuple[str, object]:
    """One question and its answer."""
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randrange(2, 50), rng.randrange(2, 50)
        return f"What is {a} plus {b}?", a + b
    if kind == 1:
        word = rng.choice(WORDS)
        return f"Spell the word '{word}' backwards.", word[::-1]
    if kind == 2:
        word = rng.choice(WORDS)
        return f"Write '{word}' in capital letters.", word.upper()
    if kind == 3:
        word = rng.choice(WORDS)
        return f"How many letters are in the word '{word}'?", len(word)
    thing = rng.choice(sorted(COLOURS))
    return f"What colour is {thing}?", COLOURS[thing]


def main() -> None:
    """Write 400 conversations as messages and the same questions as prompt/response pairs."""
    rng = random.Random(0)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    chat, pairs = [], []
    for _ in range(400):
        question, answer = task(rng)
        reply = json.dumps({"answer": answer})
        chat.append({"messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": reply},
        ]})  # fmt: skip
        pairs.append({"prompt": question, "response": reply})
    for name, rows in (("chat.jsonl", chat), ("pairs.jsonl", pairs)):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (out / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
