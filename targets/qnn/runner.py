"""Running a QNN artifact here: the compiled model on the HTP simulator (numerics, not latency), and
the checks verification adds for it (PyTorch's fp16 of the same graph beside the HTP's figure)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekit.devices import SOCS
from edgekit.errors import EdgekitError
from edgekit.targets.qnn.options import FP16_PRECISIONS, QDQ_PRECISIONS
from edgekit.targets.qnn.worker import COMPILED, _call_worker, _htp, _simulator_available


class QNNRunner:
    """The compiled model of one device run on the HTP simulator (x86): the NPU's numerics, not its
    latency. Takes NCHW float32 images, returns NCHW float32 outputs."""

    def __init__(self, folder: Path, device: str, fp16: bool):
        self.model = Path(folder) / device / COMPILED
        if not self.model.is_file():
            raise EdgekitError(f"{self.model} is missing: this artifact was not compiled for {device}")
        self.device, self.fp16 = device, fp16

    def run(self, images: np.ndarray, expected_nchw=None) -> np.ndarray:
        htp = _htp(self.device)
        with tempfile.TemporaryDirectory(prefix="edgekit-qnn-") as tmp:
            np.save(Path(tmp) / "in.npy", np.ascontiguousarray(images, dtype=np.float32))
            _call_worker(["run", str(self.model), str(Path(tmp) / "in.npy"), str(Path(tmp) / "out.npy"),
                          str(htp.soc_model), str(htp.arch), "1" if self.fp16 else "0"],
                         f"simulation of the {self.device} model")
            return np.load(Path(tmp) / "out.npy")


def _runner(model_file: Path, manifest, threads: int = 2) -> QNNRunner:
    _simulator_available()
    devices = manifest.target_options["device"]
    return QNNRunner(model_file, devices[0], manifest.precision in FP16_PRECISIONS)


def _soc(device: str) -> str:
    return SOCS[device].soc_models[0]


def _proxy(manifest, reference):
    """The deploy form that was compiled, rebuilt from the manifest (its rewrites are deterministic)."""
    from edgekit.deploy import make_deploy_form, upsample_of
    from edgekit.targets.base import options_from_manifest

    upsample = upsample_of([r["name"] for r in manifest.rewrites])
    options = options_from_manifest(manifest.spec, manifest.target_options)
    if manifest.precision in QDQ_PRECISIONS:
        from edgekit.calibration.sources import calibration_from_record
        from edgekit.registry import get_variant

        calib = calibration_from_record(get_variant(manifest.variant), manifest.size, manifest.calibration)
        return make_deploy_form(reference, manifest.size, manifest.spec, manifest.precision, upsample, calibration=calib.data,
                                options=options).model
    return make_deploy_form(reference, manifest.size, manifest.spec, manifest.precision, upsample, options=options).model


def _checks(model_file: Path, manifest, converted, images=None, expected=None) -> dict:
    """Every device's compiled model, not only the first: each run on the simulator against PyTorch;
    and for fp16, PyTorch's own fp16 of the same graph, so the HTP's cost beside it is visible."""
    from edgekit.metrics import compare, failures

    devices = manifest.target_options["device"]
    result = {"devices": {}, "passed": True}
    if images is None:
        return result
    if manifest.precision == "fp16" and converted is not None:
        import torch

        from edgekit.reference import run_images

        c = compare(expected, run_images(converted, images, torch.float16), manifest.task)
        result["pytorch_fp16"] = {"sqnr_db_median": c["sqnr_db_median"], "sqnr_db_min": c["sqnr_db_min"],
                                  "agreement_min": c["agreement_min"]}
    tol = manifest.spec.tolerance(manifest.precision)
    for device in devices[1:]:
        out = QNNRunner(model_file, device, manifest.precision in FP16_PRECISIONS).run(images)
        c = compare(expected, out, manifest.task)
        missed = failures(c, tol, manifest.task, hold_agreement=not manifest.random_weights)
        result["devices"][device] = {"sqnr_db_median": c["sqnr_db_median"], "sqnr_db_min": c["sqnr_db_min"],
                                     "agreement_min": c["agreement_min"], "failures": missed}
        result["passed"] = result["passed"] and not missed
    return result


def _check_lines(checks: dict) -> list[str]:
    lines = [f"{device}'s compiled model: SQNR median {d['sqnr_db_median']:.1f} dB, min {d['sqnr_db_min']:.1f} dB, "
             f"worst photo {d['agreement_min']:.2%} kept: "
             f"{'pass' if not d['failures'] else 'FAIL: ' + '; '.join(d['failures'])}"
             for device, d in checks.get("devices", {}).items()]
    if "pytorch_fp16" in checks:
        p = checks["pytorch_fp16"]
        lines.append(f"for scale, PyTorch's own fp16 of the same graph: SQNR median {p['sqnr_db_median']:.1f} dB, "
                     f"min {p['sqnr_db_min']:.1f} dB, worst photo {p['agreement_min']:.2%} kept (the HTP's fp16 "
                     "arithmetic costs the difference)")
    return lines
