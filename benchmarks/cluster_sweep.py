"""The same 8-cell sweep locally, on a Dask cluster of 1 worker and of 2 workers, on this machine.

Cells: b0-seg and m0-cls x ONNX and TFLite fp32 x 64x128 and 128x256, profiled on the host (2 runs). Each
configuration starts from an empty output folder; the scheduler and the workers are real processes
(`dask scheduler`, `edgekit worker`) started before the clock. Recorded: wall time of each sweep and the
cluster's overhead per cell against the local sweep (scheduling, the artifact's trip as bytes, the
client's atomic writes). Both workers share this machine's 2 cores, so 2 workers here show overhead and
scheduling, not the speed-up of 2 machines.

    python benchmarks/cluster_sweep.py        # results/cluster_sweep.json
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.cluster import sweep_cluster
from edgekit.sweep import SweepOptions, sweep

RESULTS = Path(__file__).parent / "results" / "cluster_sweep.json"
GRID = dict(variants=("b0-seg", "m0-cls"), targets=("onnx", "tflite"), resolutions=("64x128", "128x256"), runs=2,
            warmup=0)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _on_cluster(workers: int, out: Path) -> float:
    port = _port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(port),
                               "--dashboard-address", f":{_port()}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(3)
        procs += [subprocess.Popen([sys.executable, "-m", "edgekit", "worker", address, "--name", f"w{i}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
                  for i in range(workers)]
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(workers, timeout=120)
        t0 = time.perf_counter()
        result = sweep_cluster(SweepOptions(**GRID, output=out, cluster=address))
        seconds = time.perf_counter() - t0
        assert all(r["status"] == "ok" for r in result["rows"]), [r["status"] for r in result["rows"]]
        return seconds
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()


def main() -> None:
    record = {"cells": 8, "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in GRID.items()},
              "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = sweep(SweepOptions(**GRID, output=Path(tmp) / "local"))
        record["local_s"] = round(time.perf_counter() - t0, 1)
        assert all(r["status"] == "ok" for r in result["rows"])
        record["one_worker_s"] = round(_on_cluster(1, Path(tmp) / "one"), 1)
        record["two_workers_s"] = round(_on_cluster(2, Path(tmp) / "two"), 1)
    record["overhead_per_cell_s"] = round((record["one_worker_s"] - record["local_s"]) / 8, 1)
    print(json.dumps(record))
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
