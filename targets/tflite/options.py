"""TFLite's precisions, input layouts, options and their checks, and what verification holds each precision to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgekit.errors import EdgekitError
from edgekit.int8.search import validate_int8_search
from edgekit.targets.base import (
    FP16,
    FP32_EXACT,
    INT8,
    bias_correction_option,
    int8_goal_option,
    keep_float_option,
    option,
    search_budget_option,
)


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8 = "int8"


class Layout(str, Enum):
    NHWC = "nhwc"
    NCHW = "nchw"


# What verification holds each precision to, against the PyTorch model, on held-out photos.
# fp32: PyTorch's own rounding (verify raises max_rel to twice PyTorch-fp32's distance from float64
# where that is larger); fp16 and int8: SQNR on every photo and, for segmentation, pixel classes kept.
VERIFY = {
    Precision.FP32.value: FP32_EXACT,
    Precision.FP16.value: FP16,
    Precision.INT8_DYNAMIC.value: INT8,
    Precision.INT8.value: INT8,
}


@dataclass(frozen=True)
class TFLiteOptions:
    layout: str = option("nhwc", "--layout", "input layout: nhwc (camera order) | nchw", ("nhwc", "nchw"))
    io: str = option("float", "--io", "input/output type: float | int8 (needs --precision int8)", ("float", "int8"))
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()
    equalize: str = option("off", "--equalize", "int8: cross-layer equalisation before calibration, on every conv "
                           "pair a scale passes exactly (nothing or a ReLU between) | off",
                           ("off", "on"))
    bias_correction: str = bias_correction_option("off")


def _search_settings(options: TFLiteOptions):
    from edgekit.int8.search import parse_goal

    return parse_goal(options.int8_goal), options.search_budget


def _validate(precision: str, options: TFLiteOptions) -> None:
    if options.io == "int8" and precision != Precision.INT8.value:
        raise EdgekitError("--io int8 needs --precision int8 (integer inputs exist only in a full-integer model)")
    validate_int8_search(precision, options)
    if options.equalize == "on" and precision != Precision.INT8.value:
        raise EdgekitError("--equalize needs --precision int8 (it balances ranges for int8 activations)")
    if options.bias_correction == "on" and precision != Precision.INT8.value:
        raise EdgekitError("--bias-correction on needs --precision int8 (it corrects for int8 weights)")
    if options.bias_correction == "on" and options.keep_float is None:
        raise EdgekitError("--bias-correction on needs --keep-float N: the int8 recipe search judges against the "
                           "float graph, which bias correction shifts on purpose")


def _option_passes(options: TFLiteOptions, precision: str) -> tuple[str, ...]:
    if precision != "int8":
        return ()
    return tuple(name for name, flag in (("cross_layer_equalization", "equalize"), ("bias_correction", "bias_correction"))
                 if getattr(options, flag, "off") == "on")
