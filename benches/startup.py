"""Start-up time of `import llmkit` and `llmkit --help` against bare `python -c pass`, in one run.

Usage: python benches/startup.py [--repeat 15]
Each command runs in a fresh interpreter; we report the median wall time and the overhead over bare
Python (goal: `llmkit --help` within 0.3 s of bare start-up), and check that torch was not imported.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import llmkit": [sys.executable, "-c", "import llmkit"],
    "llmkit --help": [sys.executable, "-m", "llmkit", "--help"],
    "llmkit components": [sys.executable, "-m", "llmkit", "components"],
}
TORCH_CHECK = (
    "import sys\nfrom llmkit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    "print('torch' in sys.modules)"
)


def median_time(cmd: list[str], repeat: int) -> float:
    """Median wall time of `cmd` over `repeat` runs (after one warm-up run)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Measure and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("llmkit"):
        COMMANDS["llmkit --help (console script)"] = [shutil.which("llmkit") or "", "--help"]
    results = {name: median_time(cmd, args.repeat) for name, cmd in COMMANDS.items()}
    base = results["python -c pass"]
    print("| command | median wall time | overhead over bare python |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| `{name}` | {seconds * 1000:.0f} ms | +{(seconds - base) * 1000:.0f} ms |")
    torch_loaded = subprocess.run(
        [sys.executable, "-c", TORCH_CHECK], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"\ntorch imported by `llmkit --help`: {torch_loaded}")


if __name__ == "__main__":
    main()
