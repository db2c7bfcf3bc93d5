"""The QNN conversion: the deploy form to ONNX, quantised as the precision asks, compiled for each
phone's HTP."""

from __future__ import annotations

from edgekit.targets.base import (
    Converted,
    ConvertJob,
)
from edgekit.targets.qnn.options import FOLDER, FP16_PRECISIONS, QDQ_PRECISIONS, SOURCE
from edgekit.targets.qnn.qdq import op_precisions, qdq
from edgekit.targets.qnn.runner import _soc
from edgekit.targets.qnn.w8a16 import _ops, _w8a16
from edgekit.targets.qnn.worker import COMPILED, _htp, compile_for


def _versions() -> dict:
    from importlib import metadata

    import onnxruntime_qnn

    return {"onnxruntime-qnn": metadata.version("onnxruntime-qnn"),
            "qnn_sdk": getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", None)}


COMPUTE = {
    "fp16": lambda _: "fp16",
    "int8": lambda _: "QDQ int8 (uint8 activations, int8 per-channel weights)",
    "mixed": lambda _: "QDQ int8 (uint8 activations, int8 per-channel weights) convolutions, the rest fp16",
    "w8a16": lambda r: (f"QDQ w8a16 (uint16 activations, ranges widened {r['activation_headroom']:g}x, int8 "
                        f"per-channel weights), {_ops(len(r['left_out']))} left out of the quantiser"),
}


def _convert(job: ConvertJob) -> Converted:
    import shutil

    from edgekit.targets.onnx import export_onnx, io_description, load_graph, op_histogram, simplify_onnx

    fp16 = job.precision in FP16_PRECISIONS
    folder = job.out / FOLDER
    folder.mkdir()
    job.progress("exporting the deploy form to ONNX")
    src = simplify_onnx(export_onnx(job.deploy, job.size, job.work / "deploy.onnx"), job.work / "deploy.sim.onnx")
    w8a16 = None
    if job.precision == "w8a16":
        src, w8a16 = _w8a16(job, src)
    elif job.precision in QDQ_PRECISIONS:
        job.progress(f"quantising for QNN ({job.precision}: QDQ, {len(job.calibration)} calibration samples)")
        src = qdq(src, job.work / "qdq.onnx", job.calibration, job.precision)
    shutil.copyfile(src, folder / SOURCE)
    devices = {}
    for device in job.options.device:
        htp = _htp(device)
        job.progress(f"compiling for {device} (Hexagon v{htp.arch}, QNN soc {htp.soc_model}) on the HTP backend")
        compiled = compile_for(folder / SOURCE, folder / device, device, fp16)
        binaries = sorted(p.name for p in compiled.parent.iterdir() if p.suffix == ".bin")
        devices[device] = {"soc": _soc(device), "soc_model": htp.soc_model, "htp_arch": htp.arch,
                           "model": f"{device}/{COMPILED}", "context_binaries": binaries,
                           "context_bytes": sum((compiled.parent / b).stat().st_size for b in binaries)}
    info = {**_versions(), "devices": devices, "compute": COMPUTE[job.precision](w8a16),
            "placement": "every op on the QNN HTP backend (CPU fallback disabled: a graph it cannot take fails "
                         "to compile)", "op_precisions": op_precisions(folder / SOURCE, "fp16" if fp16 else "fp32")}
    if w8a16 is not None:
        info["w8a16"] = w8a16
    return Converted(folder, op_histogram(load_graph(folder / SOURCE)), io_description(job.size), target_info=info,
                     torch_model=job.deploy)
