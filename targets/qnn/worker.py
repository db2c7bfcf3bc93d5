"""The worker process: everything that loads Qualcomm's libraries (compiling for the HTP, running the
HTP simulator) runs here, `python -m edgekit.targets.qnn.worker`, so a crash inside them is a
one-line error, not a dead edgekit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgekit.devices import SOCS
from edgekit.errors import EdgekitError
from edgekit.targets.base import (
    NotRunnable,
)

EP_NAME = "QNNExecutionProvider"


_QUIET = {"ORT_LOG_SEVERITY_LEVEL": "3"}  # ONNX Runtime's own log lines


COMPILED = "model.onnx"  # per device; its context binary is model_qnn.bin next to it


WORKER_TIMEOUT = 1800


def _htp(device: str):
    return SOCS[device].htp


# ---- the worker: everything that loads Qualcomm's libraries runs here, in its own process ----------
def _register():
    import onnxruntime as ort
    import onnxruntime_qnn

    if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
    return [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]


def _session_options(soc_model: int, arch: int, fp16: bool, compile_to: Path | None = None):
    import onnxruntime as ort
    import onnxruntime_qnn

    options = ort.SessionOptions()
    options.log_severity_level = 3
    provider = {"backend_path": onnxruntime_qnn.get_qnn_htp_path(), "htp_arch": str(arch),
                "soc_model": str(soc_model)}
    if fp16:
        provider["enable_htp_fp16_precision"] = "1"
    options.add_provider_for_devices(_register(), provider)
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if compile_to is not None:
        options.add_session_config_entry("ep.context_enable", "1")
        options.add_session_config_entry("ep.context_file_path", str(compile_to))
        options.add_session_config_entry("ep.context_embed_mode", "0")
    return options


def _worker(argv: list[str]) -> int:
    """`compile SRC OUT.onnx SOC ARCH FP16`, `run MODEL IN.npy OUT.npy SOC ARCH FP16`, or `run-all` with
    OUT.npz: every output of the model, per image ("<image>:<output index>"), for the debugger."""
    import onnxruntime as ort

    command, *args = argv
    if command == "compile":
        src, out, soc, arch, fp16 = args
        ort.InferenceSession(src, _session_options(int(soc), int(arch), fp16 == "1", Path(out)))
        return 0
    if command == "run-all":
        model, inp, out, soc, arch, fp16 = args
        session = ort.InferenceSession(model, _session_options(int(soc), int(arch), fp16 == "1"))
        name = session.get_inputs()[0].name
        outputs = {f"{i}:{k}": value for i, x in enumerate(np.load(inp))
                   for k, value in enumerate(session.run(None, {name: x[None]}))}
        np.savez(out, **outputs)
        return 0
    model, inp, out, soc, arch, fp16 = args
    session = ort.InferenceSession(model, _session_options(int(soc), int(arch), fp16 == "1"))
    name = session.get_inputs()[0].name
    images = np.load(inp)
    np.save(out, np.concatenate([session.run(None, {name: x[None]})[0] for x in images]).astype(np.float32))
    return 0


def _call_worker(args: list[str], what: str) -> None:
    from edgekit.logs import QUIET_ENV, show

    done = subprocess.run([sys.executable, "-m", "edgekit.targets.qnn.worker", *args], capture_output=True, text=True,
                          errors="replace", timeout=WORKER_TIMEOUT, env={**os.environ, **QUIET_ENV, **_QUIET})
    show(f"QNN {args[0]}", done.stdout + done.stderr)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        cause = next((line for line in reversed(lines) if "Error" in line or "error" in line or "FAIL" in line),
                     lines[-1] if lines else "no output")
        if done.returncode < 0:
            cause = f"the QNN HTP library crashed (signal {-done.returncode})"
        raise EdgekitError(f"QNN {what} failed: {cause[:300]}", log=done.stdout + done.stderr)


def compile_for(src: Path, out_dir: Path, device: str, fp16: bool) -> Path:
    htp = _htp(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    _call_worker(["compile", str(src), str(out_dir / COMPILED), str(htp.soc_model), str(htp.arch),
                  "1" if fp16 else "0"], f"compile for {device} (v{htp.arch})")
    return out_dir / COMPILED


def _simulator_available() -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise NotRunnable("Qualcomm's HTP simulator in onnxruntime-qnn runs on Linux x86-64 only")
    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        raise NotRunnable("onnxruntime-qnn is not installed (pip install onnxruntime-qnn)") from None


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
