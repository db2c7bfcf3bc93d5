"""QNN (Snapdragon NPU): the deploy form compiled offline for a phone's Hexagon Tensor Processor with
ONNX Runtime's QNN execution provider (PyPI `onnxruntime-qnn`: Qualcomm's HTP backend and its x86
simulator, a plugin EP for onnxruntime), and verified on that simulator.

Per device (`--device s8gen1,s8gen3`; the device profiles name the SoC id and HTP arch), the
artifact's `model.qnn/` folder holds `<device>/model.onnx` (an EPContext model: what an app loads
through ONNX Runtime's QNN EP) and `<device>/model_qnn.bin` (the QNN context binary it points to),
plus `source.onnx`, the uncompiled graph they came from. Every op runs on the HTP: CPU fallback is
disabled, so a graph the HTP cannot take fails to compile (the bicubic Resize is one: the deploy form
uses the exact upsample).

Precisions: `fp16` (the HTP's fp16 with the fp16-safe attention); `int8` (QDQ from onnxruntime's
quantizer for QNN: uint8 activations per tensor, int8 weights per channel, min/max on the calibration
set: the recipe that fails for EfficientViT, reported, not hidden); `mixed` (convolutions QDQ int8,
everything else fp16); `w8a16` (what Qualcomm AI Hub ships: uint16 activations per tensor, int8
weights per channel, nodes left out of the quantiser until the HTP computes what the QDQ graph says).

The simulator gives the HTP's numerics, not its latency: latency needs the phone (`edgekit profile
--device s8gen1` with ONNX Runtime's `onnxruntime_perf_test` for Android).

The package, one job per file: `options` (precisions, files, flags), `worker` (the process that loads
Qualcomm's libraries), `qdq` (quantisation), `w8a16` (the node search), `convert` (the conversion
export runs), `runner` (the simulator and verification's checks), `phone` (the perf test and the
Android snippet); this file is the table entry.
"""

from __future__ import annotations

from edgekit.targets.base import DeployPlan, Packaging, TargetSpec, float_io
from edgekit.targets.qnn.convert import _convert
from edgekit.targets.qnn.options import (
    FOLDER,
    FP16_PRECISIONS,
    PRECISIONS,
    QDQ_PRECISIONS,
    VERIFY,
    QNNOptions,
    _option_passes,
    _validate,
)
from edgekit.targets.qnn.phone import HARNESS, _app_files, _snippet
from edgekit.targets.qnn.runner import _check_lines, _checks, _proxy, _runner
from edgekit.targets.qnn.taps import _taps
from edgekit.targets.qnn.w8a16 import ATTENTION, DYNAMIC_MATMUL, FOUND, _ops
from edgekit.targets.qnn.worker import _QUIET


def _describe(manifest) -> list[str]:
    info = manifest.target_info
    devices = ", ".join(f"{name} ({d['soc']}, Hexagon v{d['htp_arch']}, {d['context_bytes'] / 1e6:.1f} MB context)"
                        for name, d in info["devices"].items())
    lines = [f"compiled for {devices} with QNN SDK {info.get('qnn_sdk')}; {info['compute']}"]
    if "w8a16" in info:
        lines += _w8a16_lines(info["w8a16"])
    return lines + ["verified on Qualcomm's x86 HTP simulator: the HTP's numerics, not its latency (that needs "
                    "the phone)"]


def _w8a16_lines(record: dict) -> list[str]:
    left_out = record["left_out"]
    attention = [k for k in left_out if k["why"] == ATTENTION]
    matmuls = [k for k in left_out if k["why"] == DYNAMIC_MATMUL]
    found = [k for k in left_out if k["why"] == FOUND]
    lines = [f"left out of the quantiser: the {len(attention)} nodes of the attention blocks ({ATTENTION})"] \
        if attention else []
    if matmuls:
        lines.append(f"left out of the quantiser: {len(matmuls)} MatMuls of two activations "
                     f"({DYNAMIC_MATMUL.split(': ', 1)[1]})")
    if found:
        lines.append("left out of the quantiser, found by bisection (the HTP computed the graph unlike the QDQ "
                     "graph with them in it): " + ", ".join(f"{k['node']} ({k['op']})" for k in found))
    own = record["qdq_vs_float_db"]
    lines.append(f"the QDQ graph itself against the float graph (ONNX Runtime's CPU, calibration samples): "
                 f"{' / '.join(f'{x:.1f}' for x in own)} dB" + (
                     f"; with the attention blocks left out {' / '.join(f'{x:.1f}' for x in without)} dB"
                     if (without := record.get("qdq_vs_float_db_attention_left_out")) else ""))
    if record["agreed"] is None:
        return lines + [f"below {record['qdq_broken_db']:g} dB there already: the HTP was not searched for nodes to "
                        "leave out"]
    tried = "; ".join(f"{_ops(r['left_out'])} left out: {r['db']:.1f} dB" for r in record["agreement"])
    verdict = "agrees with" if record["agreed"] else "still differs from"
    lines.append(f"the HTP ({record['agreement_device']}) {verdict} the QDQ graph on ONNX Runtime's CPU, on "
                 f"calibration samples (bar {record['agreement_bar_db']:g} dB; {record['trials']} compiles): {tried}")
    return lines


SPEC = TargetSpec(
    name="qnn",
    summary="Snapdragon NPU (Hexagon HTP): compiled offline per phone, verified on Qualcomm's x86 simulator",
    model_file=FOLDER,
    precisions=PRECISIONS,
    # the HTP runs neither bicubic nor (for fp16) the raw attention: exact upsample, fp16-safe attention
    plan=DeployPlan(fp16_compute=FP16_PRECISIONS, int8_activations=QDQ_PRECISIONS),
    convert=_convert,
    tolerances=VERIFY,
    runner=_runner,
    runner_label="Qualcomm's HTP simulator (onnxruntime-qnn, x86)",
    runner_note="an x86 simulation of the NPU's arithmetic, not its speed: slow (seconds per image at Cityscapes sizes)",
    options=QNNOptions,
    validate=_validate,
    proxy=_proxy,
    taps=_taps,
    checks=_checks,
    check_lines=_check_lines,
    packaging=Packaging("android", float_io, _snippet, app_files=_app_files),
    harness=HARNESS,
    quiet_env=_QUIET,
    tools=("onnx", "onnxsim", "onnxruntime", "onnxruntime-qnn"),
    describe=_describe,
    option_passes=_option_passes,
)
