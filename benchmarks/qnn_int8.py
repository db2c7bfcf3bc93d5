"""What stops int8 EfficientViT on the Snapdragon NPU (issue 15): an op-by-op account.

For b0-seg and m0-cls, the QNN deploy form for int8 (fp16-safe attention, exact upsample, calibrated
attention floor) is quantised with onnxruntime's QNN QDQ recipe (uint8 activations per tensor, int8
per-channel weights, min/max on the calibration photos) in several ways: everything; the
convolutions only (edgekit's `mixed`); and each op type alone. Each QDQ model is run twice on the
held-out photos: by ONNX Runtime's CPU (the QDQ semantics) and compiled for the HTP (v69, SM8450)
and run on Qualcomm's simulator, every op on the HTP (CPU fallback disabled). Both are compared with
the PyTorch model: where the two agree, the HTP computes what the QDQ graph says, and the loss is the
quantisation recipe's; the per-op-type rows say which ops carry it. Random stand-in weights.

    python benchmarks/qnn_int8.py [--quick]    # writes results/qnn_int8.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit.calibration.images import image_batch
from edgekit.calibration.sources import calibration_set
from edgekit.deploy import make_deploy_form
from edgekit.errors import EdgekitError
from edgekit.metrics import compare
from edgekit.reference import run_images, source_model
from edgekit.registry import get_variant, parse_resolution
from edgekit.targets import get_target
from edgekit.targets.onnx import export_onnx, load_graph, op_histogram, simplify_onnx
from edgekit.targets.qnn.qdq import qdq
from edgekit.targets.qnn.runner import QNNRunner
from edgekit.targets.qnn.worker import compile_for

CASES = [("b0-seg", "256x512"), ("m0-cls", "224")]
DEVICE = "s8gen1"


def _quantise(src: Path, dst: Path, calibration: np.ndarray, op_types: list[str] | None) -> Path:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    from edgekit.targets.onnx import INPUT_NAME
    from edgekit.targets.qnn.qdq import _Calibration

    config = get_qnn_qdq_config(str(src), _Calibration(INPUT_NAME, calibration), activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types)
    quantize(str(src), str(dst), config)
    return dst


def _cpu(model: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in images])


def _row(label: str, model: Path, images, ref, task: str, work: Path, fp16: bool) -> dict:
    row = {"quantised": label}
    folder = work / label.replace(" ", "_").replace("(", "").replace(")", "")
    for side in ("cpu", "htp"):
        try:
            if side == "cpu":
                out = _cpu(model, images)
            else:
                compile_for(model, folder / DEVICE, DEVICE, fp16)
                out = QNNRunner(folder, DEVICE, fp16).run(images)
            c = compare(ref, out, task)
            row[side] = {"sqnr_db_median": c["sqnr_db_median"], "sqnr_db_min": c["sqnr_db_min"],
                         "agreement_min": c["agreement_min"]}
        except Exception as e:  # a graph ONNX Runtime or the HTP refuses is a finding, not a crash
            row[side] = {"error": str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}
    print(json.dumps(row), flush=True)
    return row


def bench_case(name: str, res: str, work: Path) -> dict:
    variant = get_variant(name)
    size = parse_resolution(res, variant)
    model, _ = source_model(variant, size, None)
    calib = calibration_set(variant, size, None, 8).data
    form = make_deploy_form(model, size, get_target("qnn"), "int8", calibration=calib).model
    src = simplify_onnx(export_onnx(form, size, work / "deploy.onnx"), work / "deploy.sim.onnx")
    images = image_batch(variant, size)
    ref = run_images(model, images)
    op_types = sorted(t for t in op_histogram(load_graph(src)) if t not in ("Reshape", "Transpose", "Slice"))
    rows = [_row("every op", qdq(src, work / "all.onnx", calib, "int8"), images, ref, variant.task, work, False),
            _row("convolutions (mixed)", qdq(src, work / "mixed.onnx", calib, "mixed"), images, ref, variant.task,
                 work, True)]
    for op in op_types:
        model_path = _quantise(src, work / f"only_{op}.onnx", calib, [op])
        rows.append(_row(f"{op} only", model_path, images, ref, variant.task, work, True))
    return {"variant": variant.name, "resolution": list(size), "device": DEVICE, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only m0-cls")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qnn_int8.json")
    args = parser.parse_args()
    report = {"recipe": "QDQ from onnxruntime's get_qnn_qdq_config: uint8 activations, int8 per-channel weights, "
                        "min/max on 8 calibration samples", "weights": "random stand-in", "cases": []}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in ([CASES[-1]] if args.quick else CASES):
            work = Path(tmp) / name
            work.mkdir()
            report["cases"].append(bench_case(name, res, work))
    report["seconds"] = round(time.time() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    try:
        main()
    except EdgekitError as e:
        raise SystemExit(f"error: {e}") from None
