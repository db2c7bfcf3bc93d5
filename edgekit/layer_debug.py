"""Where an artifact parts from PyTorch, layer by layer (`edgekit debug ARTIFACT`).

The artifact runs with its intermediate tensors exposed (each target's `taps`: TFLite's preserved
tensors, ONNX/QNN graph outputs added to a copy, ExecuTorch's debug outputs; the PyTorch-arithmetic
proxy where the host cannot run it), the deploy form it was converted from runs in PyTorch with a
hook on every module, and each artifact tensor is compared with the output of the module it stands
for, on held-out photos. Each row says how far it is (SQNR, max abs error) and why it may be
(fp16 range, int8 clipping, an int8 step too coarse for the tensor's per-channel spread); the
verdict names the first tensor below the target's tolerance and the largest single drop.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.metrics import sqnr_db

if TYPE_CHECKING:
    import torch.nn as nn

FP16_MAX = 65504.0
FP16_SMALLEST_NORMAL = 2.0**-14
FLUSH_SHARE = 0.05  # a tensor with this share of its values below fp16's smallest normal is flagged
NARROW_STEPS = 32  # int8: a median channel spanning fewer steps than this keeps under 5 bits
CLIP_SHARE = 0.001  # int8: a tensor with this share of its values outside the calibrated range is flagged
DEFAULT_PICTURES = Path("edgekit-debug")
CLEAN_MARGIN_DB = 20.0  # an input this far above the bar counts as clean: no drop is measured from higher


@dataclass(frozen=True)
class DebugOptions:
    artifact_dir: Path
    images: Path | None = None
    weights: Path | None = None
    allow_calibration_images: bool = False
    threads: int | None = None
    picture: Path | None = None  # default: edgekit-debug/<artifact folder name>.png
    draw: bool = True  # False: no picture (a failed export's own summary)


def row_bar(tolerance) -> float:
    """The SQNR a single tensor is held to: the target's per-image bar, or for an fp32 target held to a
    max relative error, that error as an SQNR (1e-4 -> 80 dB)."""
    if tolerance.sqnr_min_db is not None:
        return float(tolerance.sqnr_min_db)
    return -20 * math.log10(tolerance.max_rel or 1e-4)


def deploy_form_of(manifest, reference: nn.Module) -> nn.Module:
    """The deploy form an artifact was converted from, rebuilt from the rewrites its manifest records
    (the calibrated ones on the calibration set it records, which is deterministic)."""
    from edgekit.calibration.sources import calibration_from_record
    from edgekit.deploy import CALIBRATED_PASSES, make_deploy_form
    from edgekit.registry import get_variant

    names = [r["name"] for r in manifest.rewrites]
    calib = None
    if any(n in CALIBRATED_PASSES for n in names):
        calib = calibration_from_record(get_variant(manifest.variant), manifest.size, manifest.calibration)
    return make_deploy_form(reference, manifest.size, manifest.spec, manifest.precision, rewrites=names,
                            calibration=calib.data if calib is not None else None).model


def proxy_taps(manifest, proxy: nn.Module, names, why: str) -> object:
    """Taps of the torch model a target converted, run in the arithmetic the device computes in,
    where the host cannot run the artifact (CoreML off macOS)."""
    import torch

    from edgekit.targets.base import Tap, Taps
    from edgekit.verify import _proxy_arithmetic

    fp16, what = _proxy_arithmetic(manifest.spec, manifest.precision)
    model = proxy.to(torch.float16) if fp16 else proxy
    modules = dict(model.named_modules())
    taps = [Tap(t.module, type(modules[t.module.partition("#")[0]]).__name__, t.name) for t in names.ordered()
            if t.module.partition("#")[0] in modules]

    def run(image: np.ndarray) -> dict:
        return module_outputs(model, image, [t.name for t in taps], torch.float16 if fp16 else torch.float32)

    note = (f"{manifest.target}'s own intermediate tensors cannot be read here ({why}): the rows are its proxy's, "
            "run in PyTorch")
    return Taps(taps, run, f"{what}: the artifact itself did not run ({why})", notes=[note])


def module_outputs(model: nn.Module, image: np.ndarray, modules: list[str], dtype=None,
                   sources: dict | None = None) -> dict[str, np.ndarray]:
    """The outputs of `modules` (paths; "path#1" for a module's second call) of one forward pass on
    `image` (1, 3, H, W), as float32. With `sources` (a dict), also which of `modules` (or "image")
    each one's input is the output of, where it is one of them (found by tensor identity)."""
    import torch

    wanted = {m.partition("#")[0] for m in modules}
    calls: dict[str, list[np.ndarray]] = {}
    produced: dict[int, tuple[torch.Tensor, str]] = {}  # id -> (tensor kept alive, module key)
    handles = []

    def key(name: str, k: int) -> str:
        return name if k == 0 else f"{name}#{k}"

    def pre(_m, inp, name):
        if sources is not None and inp and isinstance(inp[0], torch.Tensor):
            found = produced.get(id(inp[0]))
            sources[key(name, len(calls.get(name, [])))] = found[1] if found and found[0] is inp[0] else None

    def post(_m, _inp, out, name):
        if isinstance(out, torch.Tensor):
            k = key(name, len(calls.get(name, [])))
            calls.setdefault(name, []).append(out.detach().float().numpy().copy())
            if sources is not None:
                produced[id(out)] = (out, k)

    for name, module in model.named_modules():
        if name in wanted:
            handles.append(module.register_forward_pre_hook(lambda m, i, name=name: pre(m, i, name)))
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: post(m, i, o, name)))
    x = torch.from_numpy(np.ascontiguousarray(image)).to(dtype or torch.float32)
    produced[id(x)] = (x, "image")
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return {key(name, k): out for name, outs in calls.items() for k, out in enumerate(outs)}


def alone(model: nn.Module, module: str, x: np.ndarray) -> np.ndarray:
    """One module (path, "#k" ignored) run by itself on `x`: what it computes from the artifact's own input."""
    import torch

    target = dict(model.named_modules())[module.partition("#")[0]]
    with torch.no_grad():
        return target(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


def _aligned(reference: np.ndarray, got: np.ndarray, layout: str) -> np.ndarray | None:
    """`got` in the reference's layout (NHWC feature maps undone), or None when it cannot be."""
    got = np.asarray(got, dtype=np.float32)
    if layout == "NHWC" and got.ndim == 4:
        got = got.transpose(0, 3, 1, 2)
    if got.shape == reference.shape:
        return got
    if got.size == reference.size and got.squeeze().shape == reference.squeeze().shape:
        return got.reshape(reference.shape)
    return None


def _image_figures(reference: np.ndarray, got: np.ndarray, quantization: dict | None) -> dict:
    ref = reference.astype(np.float64)
    magnitude = np.abs(ref)
    nonzero = magnitude > 0
    figures = {"sqnr_db": sqnr_db(ref, got), "max_abs_error": float(np.max(np.abs(got - ref))) if ref.size else 0.0,
               "fp16_overflow": float(np.mean(magnitude > FP16_MAX)),
               "fp16_flushed": float(np.mean(nonzero & (magnitude < FP16_SMALLEST_NORMAL)))}
    if quantization is not None:
        scale, zero = quantization["scale"], quantization["zero_point"]
        lo, hi = (quantization["qmin"] - zero) * scale, (quantization["qmax"] - zero) * scale
        figures["clipped"] = float(np.mean((ref < lo - scale / 2) | (ref > hi + scale / 2)))
        axes = tuple(i for i in range(ref.ndim) if i != 1) if ref.ndim >= 2 else None
        spans = (ref.max(axis=axes) - ref.min(axis=axes)) / scale if axes else np.array([np.ptp(ref) / scale])
        figures["median_channel_steps"] = float(np.median(spans))
    return figures


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _row(tap, graph_tensor, per_image: list[dict], fp16: bool) -> dict:
    sqnrs = [f["sqnr_db"] for f in per_image]
    alone = [f["alone_db"] for f in per_image]
    row = {"tensor": tap.name, "op": tap.op, "module": graph_tensor.module, "graph_tensor": graph_tensor.name,
           "block": graph_tensor.block, "shape": list(per_image[0]["shape"]),
           "sqnr_db_median": _median(sqnrs), "sqnr_db_min": min(sqnrs), "sqnr_db": sqnrs,
           "alone_db": _median(alone) if None not in alone else None,
           "max_abs_error": max(f["max_abs_error"] for f in per_image),
           "fp16_overflow": max(f["fp16_overflow"] for f in per_image),
           "fp16_flushed": max(f["fp16_flushed"] for f in per_image), "quantization": tap.quantization}
    flags = []
    if fp16 and row["fp16_overflow"] > 0:
        flags.append("fp16-overflow")
    if fp16 and row["fp16_flushed"] >= FLUSH_SHARE:
        flags.append("fp16-flush")
    if tap.quantization is not None:
        row["clipped"] = max(f["clipped"] for f in per_image)
        row["median_channel_steps"] = _median([f["median_channel_steps"] for f in per_image])
        if row["clipped"] >= CLIP_SHARE:
            flags.append("int8-clip" if tap.quantization["qmax"] <= 255 else "int16-clip")
        if row["median_channel_steps"] < NARROW_STEPS:
            flags.append("int8-spread" if tap.quantization["qmax"] <= 255 else "int16-spread")
    row["flags"] = flags
    return row


def _drops(rows: list[dict], names, bar: float) -> None:
    """Each row's drop: how far its SQNR falls below that of the tensors it is computed from (inputs
    cleaner than bar + CLEAN_MARGIN_DB count as that), median over the photos."""
    by_tensor = {r["graph_tensor"]: r for r in rows}
    cap = bar + CLEAN_MARGIN_DB

    def input_rows(tensor: str, seen: set) -> list[dict | None]:
        found: list[dict | None] = []
        for source in names.tensors[tensor].inputs if tensor in names.tensors else ():
            if source in by_tensor:
                found.append(by_tensor[source])
            elif source in names.tensors and source not in seen:
                seen.add(source)
                found += input_rows(source, seen)
            else:
                found.append(None)  # the image, exact
        return found

    for row in rows:
        inputs = input_rows(row["graph_tensor"], set())
        row["inputs"] = [r["module"] for r in inputs if r is not None]
        drops = []
        for i, own in enumerate(row["sqnr_db"]):
            clean = min([cap] + [r["sqnr_db"][i] for r in inputs if r is not None])
            drops.append(clean - min(own, cap))  # an exact tensor (inf) drops nothing
        row["drop_db"] = _median(drops)


def _verdict(rows: list[dict], bar: float) -> dict:
    """The first tensor below the bar, and the largest single drop: the layer whose own output is
    furthest from what PyTorch's module computes from the artifact's own input (the error it adds
    itself, however noisy its input already is), or where that cannot be run, whose SQNR falls most
    below its inputs'; none when that layer is within CLEAN_MARGIN_DB above the bar."""
    first = next((r for r in rows if r["sqnr_db_min"] < bar), None)
    clean = bar + CLEAN_MARGIN_DB  # a layer this close to PyTorch costs nothing worth naming

    def loss(r: dict) -> float:  # as an SQNR: alone where it ran, else the clean level less the drop
        return r["alone_db"] if r["alone_db"] is not None else clean - r["drop_db"]

    worst = min(rows, key=loss, default=None)
    if worst is not None and not loss(worst) < clean:
        worst = None
    brief = lambda r: None if r is None else {k: r[k] for k in ("module", "tensor", "op", "sqnr_db_min",  # noqa: E731
                                                                  "sqnr_db_median", "alone_db", "drop_db", "flags")}
    return {"bar_db": bar, "first_below": brief(first), "largest_drop": brief(worst)}


def debug_artifact(opts: DebugOptions, progress=lambda _m: None) -> dict:
    from edgekit.threads import torch_threads

    with torch_threads(opts.threads):
        return _debug(opts, progress)


def _debug(opts: DebugOptions, progress) -> dict:
    import time

    from edgekit.calibration.images import image_batch
    from edgekit.graph_names import graph_names
    from edgekit.registry import get_variant
    from edgekit.runtime import DEFAULT_THREADS
    from edgekit.targets.base import NotRunnable, TapJob
    from edgekit.targets.onnx import export_onnx, simplify_onnx
    from edgekit.verify import load_for_verification

    started = time.perf_counter()
    progress("loading the artifact and the PyTorch model it came from")
    manifest, reference, images = load_for_verification(Path(opts.artifact_dir), opts.images, opts.weights,
                                                        opts.allow_calibration_images)
    spec = manifest.spec
    if spec.taps is None:
        raise EdgekitError(f"{spec.name} artifacts expose no intermediate tensors to edgekit debug yet")
    batch = image_batch(get_variant(manifest.variant), manifest.size, list(images.paths))
    deploy = deploy_form_of(manifest, reference)
    with tempfile.TemporaryDirectory(prefix="edgekit-debug-") as tmp:
        work = Path(tmp)
        progress("exporting the deploy form to ONNX (the names that tie each tensor to its module)")
        onnx_path = simplify_onnx(export_onnx(deploy, manifest.size, work / "deploy.onnx"), work / "deploy.sim.onnx")
        names = graph_names(onnx_path, {n for n, _ in deploy.named_modules()})
        job = TapJob(manifest.model_path, manifest, deploy, onnx_path, names, opts.threads or DEFAULT_THREADS, work, progress)
        try:
            taps = spec.taps(job)
        except NotRunnable as e:
            if spec.proxy is None:
                raise EdgekitError(f"{spec.name}: {e}, and the target has no PyTorch proxy to debug instead") from e
            taps = proxy_taps(manifest, spec.proxy(manifest, reference), names, str(e))
        return _compare(manifest, deploy, names, taps, batch, images, opts, progress, started)


def _compare(manifest, deploy, names, taps, batch, images, opts, progress, started) -> dict:
    import time

    spec = manifest.spec
    tapped = [t for t in taps.taps if t.tensor in names.tensors]
    seen: set[str] = set()
    unique = []
    for t in tapped:  # one row per module output: the first artifact tensor that stands for it
        if t.tensor not in seen:
            seen.add(t.tensor)
            unique.append(t)
    unmatched = list(taps.unmatched) + [t.name for t in taps.taps if t.tensor not in names.tensors]
    figures: dict[str, list[dict]] = {t.name: [] for t in unique}
    misshapen: set[str] = set()  # produced, but not in the module's shape
    absent: set[str] = set()  # not produced on some photo (a module this run does not compute alone)
    modules = [names.tensors[t.tensor].module for t in unique]
    if taps.prepare is not None:
        taps.prepare(batch)
    for i, image in enumerate(batch):
        progress(f"photo {i + 1}/{len(batch)}: the artifact's {len(unique)} tensors and PyTorch's")
        got = taps.run(image[None])
        sources: dict[str, str | None] = {}
        ref = module_outputs(deploy, image[None], modules, sources=sources)
        artifact: dict[str, np.ndarray] = {"image": image[None]}  # by module, in PyTorch's layout
        for t in unique:
            module = names.tensors[t.tensor].module
            if t.name not in got or module not in ref:
                absent.add(t.name)
                continue
            aligned = _aligned(ref[module], got[t.name], t.layout)
            if aligned is None:
                misshapen.add(t.name)
                continue
            artifact[module] = aligned
            figures[t.name].append({**_image_figures(ref[module], aligned, t.quantization), "shape": ref[module].shape,
                                    "alone_db": None})
        for t in unique:  # each layer alone: PyTorch's module on the artifact's own input
            module = names.tensors[t.tensor].module
            source = sources.get(module)
            if t.name in misshapen or t.name in absent or source not in artifact or module not in artifact:
                continue
            figures[t.name][-1]["alone_db"] = sqnr_db(alone(deploy, module, artifact[source]), artifact[module])
    fp16 = manifest.precision in spec.plan.fp16_compute
    rows = [_row(t, names.tensors[t.tensor], figures[t.name], fp16) for t in unique
            if t.name not in misshapen and t.name not in absent and len(figures[t.name]) == len(batch)]
    rows.sort(key=lambda r: names.tensors[r["graph_tensor"]].order)
    bar = row_bar(spec.tolerance(manifest.precision))
    _drops(rows, names, bar)
    matched_tensors = {r["graph_tensor"] for r in rows}
    no_tensor = [t.module for t in names.ordered() if t.name not in matched_tensors]
    result = {
        "artifact_dir": str(opts.artifact_dir), "variant": manifest.variant, "target": manifest.target,
        "precision": manifest.precision, "ran": taps.ran, "reference": "PyTorch, the deploy form the artifact was "
        "converted from (module outputs by forward hooks)", "image_set": images.source,
        "images": [r["name"] for r in images.records], "notes": list(taps.notes),
        "fp16_flags": fp16, "rows": rows, **_verdict(rows, bar),
        "unmatched": {"artifact_tensors": sorted(set(unmatched) | misshapen),
                      "modules_without_tensor": no_tensor},
        "random_weights": manifest.random_weights, "seconds": round(time.perf_counter() - started, 1),
    }
    if manifest.random_weights:
        result["notes"].append("random stand-in weights: the rows show the conversion, not a trained model's")
    picture = opts.picture or DEFAULT_PICTURES / f"{Path(opts.artifact_dir).resolve().name}.png"
    if rows and opts.draw:
        from edgekit.debug_plot import plot

        plot(result, picture)
        result["picture"] = str(picture)
    return result


def one_line(result: dict) -> str:
    """The first and the worst layer in one line, for a FAILed verification or export."""
    first, worst = result.get("first_below"), result.get("largest_drop")
    parts = []
    if first is not None:
        parts.append(f"first below {result['bar_db']:g} dB: {first['module']} ({first['op']}, "
                     f"{first['sqnr_db_min']:.1f} dB)")
    if worst is not None:
        flags = f", {'/'.join(worst['flags'])}" if worst["flags"] else ""
        what = (f"{worst['alone_db']:.1f} dB alone" if worst["alone_db"] is not None
                else f"-{worst['drop_db']:.1f} dB from its inputs")
        parts.append(f"largest drop: {worst['module']} ({what}{flags})")
    return "; ".join(parts) if parts else "no layer below the bar"


def failure_layers(artifact_dir: Path, shown_dir: Path | None = None, threads: int | None = None,
                   progress=lambda _m: None, images: Path | None = None, weights: Path | None = None,
                   allow_calibration_images: bool = False) -> dict:
    """For a FAILed verification: the first and the worst layer in one line, and the command that shows
    every layer (`shown_dir`: the artifact's path to print, when it is being written elsewhere). A
    debugger that cannot run says why instead; the verdict stands either way."""
    command = f"edgekit debug {shown_dir or artifact_dir}"
    progress("verification failed: finding where the artifact parts from PyTorch (edgekit debug)")
    try:
        result = debug_artifact(DebugOptions(Path(artifact_dir), images, weights, allow_calibration_images, threads,
                                             draw=False))
    except Exception as e:  # noqa: BLE001 - a summary must not turn a verdict into a crash
        from edgekit.errors import first_line

        return {"line": f"the layer-by-layer run failed: {first_line(e)}", "command": command}
    return {"line": one_line(result), "first_below": result["first_below"], "largest_drop": result["largest_drop"],
            "command": command}


def verify_with_layers(artifact_dir: Path, verify_images: Path | None = None, weights: Path | None = None,
                       allow_calibration_images: bool = False, threads: int | None = None) -> dict:
    """`edgekit verify`: edgekit.verify.verify_artifact, and for a FAILed artifact its first and worst layer."""
    from edgekit.verify import verify_artifact

    result = verify_artifact(artifact_dir, verify_images, weights, allow_calibration_images, threads)
    if not result["verification"]["passed"]:
        result["verification"]["layers"] = failure_layers(Path(artifact_dir), threads=threads, images=verify_images,
                                                          weights=weights,
                                                          allow_calibration_images=allow_calibration_images)
    return result
