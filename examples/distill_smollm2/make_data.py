"""Write data/python_reference.txt: 40 texts of Python's language reference, present with every
CPython as `pydoc_data.topics` (Python Software Foundation licence)."""

from __future__ import annotations

import pydoc_data.topics
from pathlib import Path


def main() -> None:
    """Write the first 40 topics, one paragraph block each."""
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    texts = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:40]]
    (out / "python_reference.txt").write_text("\n\n".join(texts), encoding="utf-8")


if __name__ == "__main__":
    main()
