"""CoreML (iPhone): deploy form -> torch.export -> coremltools mlprogram -> model.mlpackage.

The package takes an RGB image (a CVPixelBuffer in Swift): CoreML's ImageType applies one scalar
scale, so /255 happens there and the per-channel ImageNet mean/std is an exact per-channel affine
op at the start of the converted graph (folding it into the first conv would be wrong at the
zero-padded borders). Classifiers carry their labels (Xcode generates `classLabel`).

CoreML prediction runs only on macOS: on Linux the package is checked structurally (it loads, its
I/O and MIL ops are as expected) and the numbers say "needs macOS", never a pass.

`int8` (weights and activations, iOS 17+) is quantised on the torch side by coremltools'
LinearQuantizer and chooses its recipe at export time (edgekit.int8.torch_side.search_torch_model: full
int8, cross-layer equalised, the most costly residual blocks kept float), each recipe judged in
PyTorch on the quantised model coremltools then converts: the CoreML runtime's own int8 needs macOS,
so neither its numbers nor its speed are measured here, and the record says so.

The package, one job per file: `options` (precisions, flags, the int8 quantiser's facts), `convert`
(the conversion export runs), `checks` (what is checked off macOS, and the proxy), `runner` (Core ML's
predict, macOS), `app` (the iOS bundle and the Swift snippet); this file is the table entry.
"""

from __future__ import annotations

from edgekit.int8.recipe import Recipe
from edgekit.int8.search import check_search_calibration
from edgekit.targets.base import DeployPlan, Packaging, TargetSpec
from edgekit.targets.coreml.app import _bundle_io, _compile_mlmodelc, _snippet
from edgekit.targets.coreml.checks import _check_lines, _checks, _proxy
from edgekit.targets.coreml.convert import _convert
from edgekit.targets.coreml.options import MODEL_FILE, PRECISIONS, VERIFY, CoreMLOptions, _validate
from edgekit.targets.coreml.runner import _runner, _taps


def _describe(manifest) -> list[str]:
    recipe = manifest.target_info.get("int8")
    if not recipe:
        return []
    r = Recipe.from_json(recipe)
    return r.lines("blocks", r.quantiser["judged_by"])


SPEC = TargetSpec(
    name="coreml",
    summary="CoreML mlprogram for iPhone (fp16 by default; int8 weights; int8 activations from iOS 17)",
    model_file=MODEL_FILE,
    precisions=PRECISIONS,
    # CoreML's int8 models dequantise to fp16 compute: they get the fp16-safe attention too
    plan=DeployPlan(fp16_compute=("fp16", "int8-weights", "int8")),
    convert=_convert,
    tolerances=VERIFY,
    runner=_runner,
    runner_label="CoreML predict (macOS)",
    options=CoreMLOptions,
    validate=_validate,
    check_calibration=check_search_calibration,
    proxy=_proxy,
    taps=_taps,
    checks=_checks,
    describe=_describe,
    check_lines=_check_lines,
    packaging=Packaging("ios", _bundle_io, _snippet, _compile_mlmodelc),
    not_profiled="CoreML runs on an iPhone (Xcode's performance report); edgekit profiles Android phones",
    tools=("coremltools", "torch"),
    quiet_env={"TQDM_DISABLE": "1"},  # coremltools' progress bars
)
