"""How long `edgekit --help` takes, against peers measured in the same run.

The goal (issue 2) is an answer in well under a second, which holds only while the CLI imports no
heavy framework. Absolute times on shared machines are noisy, so the result is reported next to
two peers: a bare interpreter start and `import torch` (what a careless top-level import would add).

    python benchmarks/cli_startup.py [--runs 10] [--out benchmarks/results/cli_startup.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEERS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "edgekit --help": [sys.executable, "-m", "edgekit", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def time_command(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_startup.json")
    args = parser.parse_args()
    results = {name: statistics.median(time_command(cmd, args.runs)) for name, cmd in PEERS.items()}
    base = results["python -c pass"]
    report = {
        "runs": args.runs,
        "median_s": results,
        "help_over_bare_python": results["edgekit --help"] / base,
        "torch_import_over_help": results["python -c 'import torch'"] / results["edgekit --help"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, t in results.items():
        print(f"{name:28s} {t * 1000:8.1f} ms  ({t / base:5.1f}x bare python)")


if __name__ == "__main__":
    main()
