"""CoreML's precisions, I/O names, options and their checks, what verification holds each precision
to, and what its int8 quantiser does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekit.errors import EdgekitError
from edgekit.int8.search import validate_int8_search
from edgekit.targets.base import (
    FP16,
    INT8,
    Tolerance,
    int8_goal_option,
    keep_float_option,
    option,
    search_budget_option,
)

if TYPE_CHECKING:
    pass


INPUT_NAME = "image"


OUTPUT_NAME = "logits"


IOS_TARGETS = (16, 17, 18)


MODEL_FILE = "model.mlpackage"
PRECISIONS = ("fp16", "fp32", "int8-weights", "int8")


# Linux can only compare the torch model that was converted with the trained one; the package's own
# numbers need macOS, where they are held to the same bars.
VERIFY = {"fp16": FP16, "fp32": Tolerance(sqnr_min_db=60.0, pixel_agreement=0.999), "int8-weights": INT8,
          "int8": INT8}


@dataclass(frozen=True)
class CoreMLOptions:
    ios: int = option(16, "--ios", "CoreML minimum iOS: 16 | 17 | 18 (int8 activations need 17)", IOS_TARGETS, int)
    input: str = option("image", "--input", "CoreML input: image (CVPixelBuffer) | tensor (normalised float)",
                        ("image", "tensor"))
    keep_float: int | None = keep_float_option()
    int8_goal: str = int8_goal_option()
    search_budget: float = search_budget_option()


NO_INT16_HERE = "coremltools quantises activations to 8 bits only (its 16-bit path is fp16: --precision fp16)"


JUDGED_IN_TORCH = ("each recipe judged in PyTorch on coremltools' quantised model (what it converts to CoreML's "
                   "int8 ops); the CoreML runtime's own int8 runs on macOS/iOS only: its numbers and speed are not "
                   "measured here")


QUANTISER = {"activations": "int8 per tensor, symmetric (coremltools LinearQuantizer)",
             "weights": "int8 per channel, symmetric", "judged_by": JUDGED_IN_TORCH}


def _validate(precision: str, options: CoreMLOptions) -> None:
    validate_int8_search(precision, options)
    if precision == "int8" and options.ios < 17:
        raise EdgekitError("--precision int8 quantises activations, which CoreML runs from iOS 17: add --ios 17")
