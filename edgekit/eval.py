"""`edgekit eval`: what a conversion costs in the user's own metric (mIoU, top-1) on their labelled data.

An artifact runs through its target's host runner (CoreML off macOS: its proxy, said so; QNN:
Qualcomm's simulator, slow), and the PyTorch model it was exported from runs on the same images, fed
the same tensors; both are scored as the authors' evaluation scores (edgekit.datasets,
edgekit.accuracy), and the difference artifact minus PyTorch gets a 95% interval from a paired
bootstrap over images (seeded). Images are streamed one at a time: only each image's per-class counts
(or top-k hits) are kept. PyTorch's scores are cached beside the artifacts, keyed by the weights'
sha256, the variant, the resolution and the dataset's fingerprint, so the next artifact of the same
model skips them; the cache is written in one rename, so an interrupted run leaves no half-written
file. `edgekit eval VARIANT` scores the PyTorch model alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

Progress = Callable[[str], None]
CACHE_DIR = ".edgekit-cache"
CACHE_VERSION = 1  # bump when preprocessing or scoring changes
STAND_IN_METRIC_NOTE = ("no checkpoint was given, so the absolute metric means nothing (the classes are random); "
                        "the difference from PyTorch still measures what the conversion costs")
STAND_IN_MODEL_NOTE = "no checkpoint was given, so the metric means nothing (the classes are random)"


@dataclass(frozen=True)
class EvalOptions:
    model: Path | str  # an artifact directory, or a variant name (the PyTorch model alone)
    data: Path
    format: str = "auto"  # auto | cityscapes | ade20k | imagenet
    limit: int | None = None  # the first N images (sorted)
    weights: Path | None = None  # the variant's checkpoint; for an artifact, its checkpoint if it moved
    resolution: str | None = None  # the PyTorch model's input (variant only; an artifact has its own)
    threads: int | None = None
    save_predictions: Path | None = None  # a new folder for the (first) model's predictions, in the set's format


@dataclass
class _Model:
    """One side of the comparison: something that maps an input batch to logits. `upscale`: a whole
    (3, H, W) image to its super-resolved (3, sH, sW), for a side that is not a fixed-input model
    (bicubic); a model's is its `run` over tiles."""

    run: Callable[[np.ndarray], np.ndarray] | None
    upscale: Callable[[np.ndarray], np.ndarray] | None = None


def _bicubic_side(scale: int) -> _Model:
    from edgekit.sr_data import bicubic

    return _Model(None, lambda x: bicubic(x.transpose(1, 2, 0) * 255, scale).transpose(2, 0, 1) / 255)


def _sr_row(variant, size, sample, models, rows, keep, journal, i) -> bool:
    """Score one SR image for each model (True when its size differed from the input: tiled or padded)."""
    from edgekit.sr_data import load_pair, scores, to_pixels
    from edgekit.tiling import run_tiled

    scale = variant.scale
    lr, hr = load_pair(sample.image, sample.label, scale)
    x = np.ascontiguousarray((lr / 255).astype(np.float32).transpose(2, 0, 1))
    for k, (model, out) in enumerate(zip(models, rows)):
        if k == 0 and journal is not None and i < journal.resumed:
            out.append(journal.rows[i])
            continue
        image = model.upscale(x) if model.upscale is not None else run_tiled(model.run, x, size, scale)
        pixels = to_pixels(image)
        out.append(scores(pixels, hr, scale))
        if keep is not None and k == 0:
            keep(sample, pixels)
        if k == 0 and journal is not None:
            journal.add(out[-1])
    return lr.shape[:2] != tuple(size)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _score_set(variant, size, data, models: list[_Model], progress: Progress,
               keep: Callable | None = None, journal: Journal | None = None) -> tuple[list[np.ndarray], int]:
    """(per-image scores of each model over the set, photos whose size differed from the input),
    streamed one image at a time; `keep(sample, prediction)` receives the first model's class map
    (segmentation) or logits (classification). `journal`: the first model's scores so far (an
    interrupted run's), which it is not run again for; the others still run on those images."""
    from edgekit.accuracy import class_map, segmentation_counts, topk_hits
    from edgekit.calibration.images import load_rgb
    from edgekit.datasets import eval_input, load_label

    rows: list[list[np.ndarray]] = [[] for _ in models]
    started, n, resized = time.perf_counter(), len(data.samples), 0
    for i, sample in enumerate(data.samples):
        if variant.task == "sr":
            resized += _sr_row(variant, size, sample, models, rows, keep, journal, i)
            _progress(progress, started, i, n, sample)
            continue
        photo = load_rgb(sample.image)
        label = load_label(sample, data.format, photo.size) if variant.task == "seg" else sample.label
        resized += photo.size != (size[1], size[0])
        x = eval_input(photo, variant, size)[None]
        for k, (model, out) in enumerate(zip(models, rows)):
            if k == 0 and journal is not None and i < journal.resumed:
                out.append(journal.rows[i])
                continue
            logits = model.run(x)[0]
            prediction = class_map(logits, photo.size) if variant.task == "seg" else logits
            if variant.task == "seg":
                out.append(segmentation_counts(prediction, label, variant.num_classes))
            else:
                out.append(topk_hits(logits, label))
            if keep is not None and k == 0:
                keep(sample, prediction)
            if k == 0 and journal is not None:
                journal.add(out[-1])
        _progress(progress, started, i, n, sample)
    return [np.stack(r) for r in rows], resized


def _progress(progress: Progress, started: float, i: int, n: int, sample) -> None:
    done = i + 1
    rate = (time.perf_counter() - started) / done
    progress(f"[{done}/{n}] {sample.name}: {rate:.2f} s/image" + (f", about {_eta(rate * (n - done))} left"
                                                                 if done < n else ""))


def task_scorer(variant, size, data) -> Callable[[Callable], object]:
    """`score(run)`: the task metric's per-image scores (edgekit.accuracy.Scores) of `run(x, expected)`
    (an NCHW batch and the NCHW logits shape it must return, a runner's `run`) over `data`, the same
    preprocessing and scoring as `edgekit eval` (what an int8 recipe search judges by when the user
    gives a labelled set)."""
    from edgekit.accuracy import Scores

    expected = variant.logits_shape(size)

    def score(run):
        rows, _ = _score_set(variant, size, data, [_Model(lambda x: run(x, expected))], lambda _m: None)
        return Scores(variant.task, rows[0])

    return score


def _cache_key(variant, size, source: dict, data) -> str:
    from edgekit.reference import stand_in_kind

    kind = stand_in_kind(source)
    weights = source.get("sha256") or f"stand-in seed {(source.get('stand_in') or {}).get('seed')}" + (
        f" {kind}" if kind != "plain" else "")  # plain keeps the key the caches were written under
    key = {"version": CACHE_VERSION, "weights": weights, "variant": variant.name, "size": list(size),
           "data": data.fingerprint(), "images": [s.name for s in data.samples]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    try:
        with np.load(path) as f:
            scores = f["per_image"]
    except (OSError, KeyError, ValueError):
        return None
    return scores if len(scores) == n else None


def _write_cache(path: Path, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, per_image=scores)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class Journal:
    """Per-image scores of a long run (on a phone), saved as they come, so that an interrupted run
    resumes where it stopped: the file is rewritten in one rename every few images, keyed by what
    produced the scores (artifact, phone, runner, delegate, data), and removed once the run completes."""

    EVERY = 8  # images between saves

    def __init__(self, path: Path, key: str, n: int):
        self.path, self.key = Path(path), key
        self.rows: list[np.ndarray] = []
        try:
            with np.load(self.path) as f:
                if str(f["key"]) == key and len(f["per_image"]) <= n:
                    self.rows = list(f["per_image"])
        except (OSError, KeyError, ValueError):
            pass
        self.resumed = len(self.rows)

    def add(self, row: np.ndarray) -> None:
        self.rows.append(row)
        if len(self.rows) % self.EVERY == 0:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, key=np.array(self.key), per_image=np.stack(self.rows))
            tmp.replace(self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def done(self) -> None:
        self.path.unlink(missing_ok=True)

    def interrupted(self) -> None:
        if len(self.rows) > self.resumed:
            self._save()


def _check_new_folder(folder: Path | None) -> None:
    from edgekit.artifacts import check_writable

    if folder is None:
        return
    if Path(folder).exists():
        raise EdgekitError(f"{folder} exists: --save-predictions writes a new folder (remove it or choose another)")
    check_writable(Path(folder).parent)


@contextlib.contextmanager
def _predictions_folder(folder: Path | None, fmt: str):
    """A `keep` callback writing predictions into a temporary sibling of `folder`, renamed into place
    only when the whole set was scored (never replacing an existing folder); None without a folder."""
    from edgekit.artifacts import atomic_directory
    from edgekit.datasets import write_prediction

    if folder is None:
        yield None
        return
    folder = Path(folder)
    _check_new_folder(folder)
    with atomic_directory(folder, overwrite=False) as tmp:
        yield lambda sample, prediction: write_prediction(tmp, fmt, sample, prediction)


def _report(variant, data, sides: dict, secondary, runner: str, random_weights: bool, resized: int, size) -> dict:
    from edgekit.accuracy import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, Scores, paired_bootstrap
    from edgekit.datasets import preprocessing_note
    from edgekit.labels import class_names

    names = class_names(variant)
    scored = {k: (Scores(variant.task, v) if v is not None else None) for k, v in sides.items()}
    if variant.task != "sr":
        scored.pop("bicubic", None)
    art, ref = scored["artifact"], scored["pytorch"]
    side = {k: (None if s is None else {"value": s.value(), "per_class": s.per_class(names)})
            for k, s in scored.items()}
    delta = ci = None
    if art is not None:
        delta = art.value() - ref.value()
        ci = list(paired_bootstrap(art, ref))
    name = (art or ref).secondary()[0]
    h, w = size
    return {
        "task": variant.task, "dataset": data.format, "images": len(data.samples),
        "metric": (art or ref).metric,
        "artifact": side["artifact"], "pytorch": side["pytorch"], "bicubic": side.get("bicubic"), "delta": delta,
        "delta_ci95": ci, "runner": runner,
        "secondary": {"metric": name, **{k: (None if s is None else s.secondary()[1]) for k, s in scored.items()}},
        "data": str(data.root), "fingerprint": data.fingerprint(), "labels": data.note, "variant": variant.name,
        "resolution": [h, w],
        "preprocessing": preprocessing_note(variant, size),
        "resized": resized,  # photos whose size differed from the model's input
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED, "over": "images, paired"},
        "random_weights": random_weights,
        "note": None if not random_weights else STAND_IN_METRIC_NOTE if art is not None else STAND_IN_MODEL_NOTE,
        **secondary,
    }


def _reference(variant, size, checkpoint: Path | None, stand_in: str = "plain"):
    from edgekit.reference import run_images, source_model

    model, source = source_model(variant, size, checkpoint, stand_in)
    model.eval()
    return _Model(lambda x: run_images(model, x)), source


def evaluate_artifact(manifest, data, progress: Progress = lambda _m: None, weights: Path | None = None,
                      threads: int | None = None, reference=None, save_predictions: Path | None = None,
                      runner=None, journal_key: str | None = None) -> dict:
    """The artifact and the PyTorch model it came from, scored on `data` (an edgekit.datasets.Dataset).
    `reference`: the PyTorch model already built (export passes its own). `runner`: what runs the
    artifact instead of its host runner (a phone: edgekit.ondevice), with a `label`; `journal_key`:
    what identifies that run, so an interrupted one resumes (see Journal)."""
    from edgekit.datasets import check_matches
    from edgekit.reference import run_images
    from edgekit.registry import get_variant
    from edgekit.runtime import DEFAULT_THREADS, open_runner
    from edgekit.targets.base import NotRunnable
    from edgekit.verify import ProxyRunner, _checked_weights

    variant = get_variant(manifest.variant)
    check_matches(data, variant)
    size = manifest.size
    checkpoint = _checked_weights(manifest, weights)
    expected = variant.logits_shape(size)
    proxy = None
    if runner is not None:
        ran = runner.label
    else:
        try:
            runner = open_runner(manifest, threads or DEFAULT_THREADS)
            ran = f"the artifact, run by {manifest.spec.runner_label}"
            if manifest.spec.runner_note:
                ran += f": {manifest.spec.runner_note}"
        except NotRunnable as e:
            if manifest.spec.proxy is None:
                raise
            runner, proxy = ProxyRunner(manifest, str(e), checkpoint), str(e)
            ran = runner.label
    artifact = _Model(lambda x: runner.run(x, expected))
    cache = Path(manifest.artifact_dir).resolve().parent / CACHE_DIR / \
        f"eval-{_cache_key(variant, size, manifest.source, data)[:24]}.npz"
    cached = _read_cache(cache, len(data.samples))
    models = [artifact]
    if cached is None:
        if reference is None:
            from edgekit.reference import stand_in_kind

            reference, _ = _reference(variant, size, checkpoint, stand_in_kind(manifest.source))
        elif not isinstance(reference, _Model):
            torch_model = reference
            reference = _Model(lambda x: run_images(torch_model, x))
        models.append(reference)
    journal = None
    if journal_key is not None and save_predictions is None:  # a resumed run would miss the saved predictions
        key = hashlib.sha256(f"{journal_key}|{manifest.sha256}|{_cache_key(variant, size, manifest.source, data)}"
                             .encode()).hexdigest()
        journal = Journal(cache.with_name(f"journal-{key[:24]}.npz"), key, len(data.samples))
        if journal.resumed:
            progress(f"resuming: {journal.resumed} of {len(data.samples)} images were scored by an interrupted run")
    progress(f"evaluating {manifest.target} {manifest.precision} on {len(data.samples)} {data.format} images"
             + (" (PyTorch's scores from the cache)" if cached is not None else " and PyTorch on the same images"))
    if variant.task == "sr":
        models.append(_bicubic_side(variant.scale))
    try:
        with _predictions_folder(save_predictions, data.format) as keep:
            scores, resized = _score_set(variant, size, data, models, progress, keep, journal)
    except BaseException:
        if journal is not None:
            journal.interrupted()
        raise
    if journal is not None:
        journal.done()
    bicubic = scores.pop() if variant.task == "sr" else None
    if cached is None:
        _write_cache(cache, scores[1])
    extra = {"artifact_dir": manifest.artifact_dir, "target": manifest.target, "precision": manifest.precision,
             "proxy": proxy, "pytorch_cached": cached is not None,
             "resumed_images": journal.resumed if journal is not None else 0}
    return _report(variant, data, {"artifact": scores[0], "pytorch": cached if cached is not None else scores[1],
                                   "bicubic": bicubic}, extra, ran, manifest.random_weights, resized, size)


def evaluate(opts: EvalOptions, progress: Progress = lambda _m: None) -> dict:
    """`edgekit eval`: an artifact directory against its PyTorch model, or a variant's PyTorch model alone."""
    from edgekit.threads import check_threads, torch_threads

    check_threads(opts.threads)
    with torch_threads(opts.threads):
        return _evaluate(opts, progress)


def _evaluate(opts: EvalOptions, progress: Progress) -> dict:
    from edgekit.datasets import check_matches, open_dataset
    from edgekit.manifest import read_manifest
    from edgekit.registry import get_variant, parse_resolution

    _check_new_folder(opts.save_predictions)
    target = Path(opts.model)
    if target.exists() or os.sep in str(opts.model):  # an artifact directory (read_manifest says what is wrong)
        if opts.resolution is not None:
            raise EdgekitError("--resolution is for a variant; an artifact has its own input size")
        manifest = read_manifest(target)
        variant = get_variant(manifest.variant)
        data = open_dataset(opts.data, opts.format, variant.num_classes, opts.limit)
        return evaluate_artifact(manifest, data, progress, opts.weights, opts.threads,
                                 save_predictions=opts.save_predictions)
    variant = get_variant(str(opts.model))
    size = parse_resolution(opts.resolution, variant)
    data = open_dataset(opts.data, opts.format, variant.num_classes, opts.limit)
    check_matches(data, variant)
    progress(f"building {variant.name} at {size[0]}x{size[1]}")
    reference, source = _reference(variant, size, opts.weights)
    progress(f"evaluating PyTorch on {len(data.samples)} {data.format} images")
    sides = [reference, *([_bicubic_side(variant.scale)] if variant.task == "sr" else [])]
    with _predictions_folder(opts.save_predictions, data.format) as keep:
        scores, resized = _score_set(variant, size, data, sides, progress, keep)
    return _report(variant, data, {"artifact": None, "pytorch": scores[0],
                                   "bicubic": scores[1] if variant.task == "sr" else None},
                   {"artifact_dir": None, "target": None, "precision": None, "proxy": None, "pytorch_cached": False,
                    "resumed_images": 0},
                   "PyTorch (the model alone)", source.get("weights") is None, resized, size)


def max_drop_failure(result: dict, max_drop: float | None) -> str | None:
    """Why the artifact loses too much (`max_drop` in points, 1.0 = 0.01 of the metric; PSNR in dB), or None."""
    from edgekit.accuracy import drop_units

    if max_drop is None or result["delta"] is None:
        return None
    per, unit = drop_units(result["metric"])
    if result["delta"] < -max_drop / per:
        return (f"{result['metric']} {per * result['delta']:+.2f} {unit} against PyTorch on {result['images']} "
                f"images, more than the --max-drop {max_drop:g}")
    return None
