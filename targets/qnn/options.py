"""QNN's precisions, the artifact's files, its options and their checks, and what verification
holds each precision to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgekit.devices import htp_socs
from edgekit.errors import EdgekitError
from edgekit.targets.base import (
    FP16,
    INT8,
    NotRunnable,
    bias_correction_option,
    device_option,
)
from edgekit.targets.qnn.worker import _simulator_available

FOLDER = "model.qnn"


SOURCE = "source.onnx"


PRECISIONS = ("fp16", "int8", "mixed", "w8a16")


FP16_PRECISIONS = ("fp16", "mixed", "w8a16")  # what is not quantised runs in the HTP's fp16


QDQ_PRECISIONS = ("int8", "mixed", "w8a16")


@dataclass(frozen=True)
class QNNOptions:
    device: tuple = device_option(("s8gen1",), htp_socs(), "phones to compile for, comma-separated "
                                  "(s8gen1, s8gen2, s8gen3, s8elite)")
    bias_correction: str = bias_correction_option("on")


def _option_passes(options: QNNOptions, precision: str) -> tuple[str, ...]:
    """Bias correction for w8a16 only: its error is mostly its 8-bit weights' mean shift, which the
    pass removes; int8's is its activations' (docs/npu.md has the figures)."""
    return ("bias_correction",) if precision == "w8a16" and getattr(options, "bias_correction", "on") == "on" else ()


def _validate(precision: str, options: QNNOptions) -> None:
    try:
        _simulator_available()
    except NotRunnable as e:
        raise EdgekitError(f"the qnn target compiles with Qualcomm's HTP backend from onnxruntime-qnn: {e}") from None
    if len(set(options.device)) != len(options.device):
        raise EdgekitError(f"--device names a phone twice: {','.join(options.device)}")


# fp16 on the HTP: 35 dB on every photo (CPU fp16: 40), since the HTP's own fp16 arithmetic costs more than
# PyTorch's fp16 of the same graph (docs/npu.md); the report shows PyTorch's fp16 beside it.
VERIFY = {"fp16": dataclasses.replace(FP16, sqnr_min_db=35.0), "int8": INT8, "mixed": INT8, "w8a16": INT8}
