"""A stand-in for ONNX Runtime's `onnxruntime_perf_test` built for Android with the QNN EP, pushed to
the virtual adb device in place of the arm64 binary.

It takes the real program's flags (-m times -r N -I -x T -e qnn -i "backend_path|DIR/libQnnHtp.so"
MODEL), checks what the phone would need (the QNN libraries in LD_LIBRARY_PATH/ADSP_LIBRARY_PATH, the
context binary next to the EPContext model), runs that model on Qualcomm's HTP simulator (the same
files a phone would load), and prints what performance_runner.cc prints. Its timings are the
simulator's: the tests check the plumbing and the parsing, not a latency.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = dict(zip(argv[:-1:], argv[1:]))
    model = Path(argv[-1])
    runs = int(args.get("-r", "1000"))
    provider = dict(kv.split("|", 1) for kv in args.get("-i", "").split())
    lib_dir = Path(os.environ.get("LD_LIBRARY_PATH", "/nonexistent"))
    for name in ("libQnnHtp.so", "libQnnSystem.so"):
        if not (lib_dir / name).is_file():
            print(f"[E:onnxruntime:, qnn_backend_manager.cc:1] Unable to load backend. error: {name}: cannot open "
                  "shared object file: No such file or directory", flush=True)
            return 1
    if not model.is_file() or not list(model.parent.glob("*_qnn.bin")):
        print(f"[E:onnxruntime:, inference_session.cc:1] Load model from {model} failed: no context binary",
              flush=True)
        return 1
    import subprocess

    import onnxruntime as ort

    from edgekit.android_harness.profiles import profile_for
    from edgekit.targets.qnn.worker import _session_options

    # the real HTP library knows the SoC it runs on; this stand-in asks the (virtual) phone
    soc_name = subprocess.run(["getprop", "ro.soc.model"], capture_output=True, text=True).stdout.strip()
    htp = profile_for({"ro.soc.model": soc_name}).htp
    soc, arch = htp.soc_model, htp.arch
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(model), _session_options(soc, arch, fp16=True))
    created = time.perf_counter() - t0
    assert provider.get("backend_path", "").endswith("libQnnHtp.so")
    from edgekit.android_harness.host_perf_test import print_report, time_runs

    first, times, total = time_runs(session, runs)
    print_report(created, first, times, total, "\nAvg CPU usage: 12 %\nPeak working set size: 180224000 bytes")
    return 0


def write_launcher(path, python: str | None = None) -> None:
    from edgekit.android_harness.launcher import write_launcher as write

    write(path, "perf_test_standin", python, str(Path(__file__).resolve().parent))
