"""On the phone itself: `edgekit verify ARTIFACT --device PHONE` (and `eval --device`) run the artifact
with its target's phone runner on the phone's own CPU, GPU or NPU and compare what the phone computed
with PyTorch, as host verification does. The host's figures say what the host computed (for LiteRT's
CPU path that is what a phone computes too: its aarch64 build under emulation gives the x86 outputs to
126 dB); a GPU delegate computing in fp16, an NPU or a vendor's driver are seen only here.

Each photo becomes the artifact's raw input tensor (the manifest's preprocessing, layout and dtype,
int8 inputs quantised with the model's own scale), is pushed, run once by the runner with its real
flags for reading an input file and writing its outputs (`Harness.tensor_io`, citing the runner's
source), and its output pulled back and decoded the same way; the phone holds one input and one output
at a time. The record says which phone (adb server, serial, model, SoC), runner (and its sha256),
delegate and threads produced the numbers; it goes into the manifest's `device_verifications`, next to
the host's `verification`, which it never replaces.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.android_harness.adb import Adb, DeviceLost
from edgekit.android_harness.harnesses import Harness, RunSettings
from edgekit.android_harness.profiles import check_delegate
from edgekit.errors import EdgekitError
from edgekit.phones import DEVICE_DIR, PhoneSession, Target, on_phones, resolve_devices

Progress = Callable[[str], None]
INPUT_NAME = "edgekit-input.raw"
OUTPUT_BASE = "edgekit-output"


# ---- tensors as the runners read and write them ------------------------------------------------------
def encode_input(spec: dict, image_nchw: np.ndarray) -> bytes:
    """One image (1x3xHxW float32, preprocessed as the manifest says) as the raw bytes of the model's
    input tensor: its layout, its dtype, int8/uint8 quantised with its own scale and zero point."""
    x = image_nchw.transpose(0, 2, 3, 1) if spec.get("layout") == "NHWC" else image_nchw
    dtype = np.dtype(spec.get("dtype") or "float32")
    quant = spec.get("quantization")
    if quant and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / quant["scale"] + quant["zero_point"]), info.min, info.max)
    if spec.get("shape") and tuple(x.shape) != tuple(spec["shape"]):
        raise EdgekitError(f"the input tensor is {list(x.shape)}, the model takes {spec['shape']}")
    return np.ascontiguousarray(x, dtype=dtype).tobytes()


def decode_output(spec: dict, raw: bytes, expected_nchw: tuple[int, ...]) -> np.ndarray:
    """The first output's raw bytes as float32 in PyTorch's layout (NCHW or NC)."""
    dtype = np.dtype(spec.get("dtype") or "float32")
    shape = tuple(spec["shape"]) if spec.get("shape") else tuple(expected_nchw)
    if spec.get("layout") == "NHWC" and not spec.get("shape"):
        shape = (shape[0], *shape[2:], shape[1])
    want = int(np.prod(shape)) * dtype.itemsize
    if len(raw) < want:
        raise EdgekitError(f"the phone wrote {len(raw)} bytes of output; the model's output {list(shape)} "
                           f"{dtype.name} takes {want}")
    y = np.frombuffer(raw[:want], dtype).reshape(shape)  # benchmark_model writes every output in order: the first
    quant = spec.get("quantization")
    y = (y.astype(np.float32) - quant["zero_point"]) * quant["scale"] if quant and np.issubdtype(dtype, np.integer) \
        else y.astype(np.float32)
    if y.ndim == 4 and y.shape[1:] != tuple(expected_nchw[1:]):
        y = y.transpose(0, 3, 1, 2)
    return y


class PhoneRunner:
    """The runner interface (NCHW float32 in, NCHW float32 out) computed on a phone, one image per run."""

    def __init__(self, session: PhoneSession, manifest, run: RunSettings, progress: Progress = lambda _m: None):
        self.session, self.manifest, self.run_settings, self.progress = session, manifest, run, progress
        self.harness: Harness = session.harness
        self.label = (f"the artifact, run on {session.serial} by {self.harness.name} ({run.delegate}, "
                      f"{run.threads} threads)")

    def run(self, images: np.ndarray, expected_nchw: tuple[int, ...]) -> np.ndarray:
        io, tensor_io, serial = self.manifest.io, self.harness.tensor_io, self.session.serial
        adb = self.session.adb
        remote_in, base = f"{DEVICE_DIR}/{INPUT_NAME}", f"{DEVICE_DIR}/{OUTPUT_BASE}"
        remote_out = tensor_io.output_file(base)
        outs = []
        with tempfile.TemporaryDirectory(prefix="edgekit-phone-") as tmp:
            local_in, local_out = Path(tmp) / INPUT_NAME, Path(tmp) / "output.raw"
            for i, img in enumerate(images):
                self.progress(f"{serial}: image {i + 1}/{len(images)}")
                local_in.write_bytes(encode_input(io["input"], img[None]))
                adb.push(serial, local_in, remote_in)
                flags = self.session.flags(self.run_settings) + tensor_io.flags(io, remote_in, base)
                code, text = self.session.run(flags)
                if code != 0:
                    errors = self.harness.parse(text).errors
                    lines = [line for line in text.strip().splitlines() if line.strip()]
                    detail = errors[-1] if errors else (lines[-1] if lines else "no output")
                    raise EdgekitError(f"{self.harness.name} failed on {serial} (exit {code}): {detail}")
                code, _ = adb.shell(serial, f"test -f {remote_out}")
                if code != 0:
                    raise EdgekitError(f"{self.harness.name} ran on {serial} but wrote no output file {remote_out}")
                local_out.unlink(missing_ok=True)
                adb.pull(serial, remote_out, local_out)
                adb.shell(serial, f"rm -f {remote_in} {remote_out}")  # one input and one output at a time
                outs.append(decode_output(io["output"], local_out.read_bytes(), (1, *expected_nchw[1:])))
        return np.concatenate(outs)


# ---- edgekit verify --device ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceVerifyOptions:
    artifact: Path
    device: str  # a profile, all, a serial or a comma list (edgekit.phones)
    delegate: str | None = None  # None: the runner's default
    harness: Path | None = None
    verify_images: Path | None = None
    weights: Path | None = None
    allow_calibration_images: bool = False
    threads: int | None = None  # the runner's on the phone (default: the profile's)
    adb_server: str | None = None
    keep: bool = False


def phone_harness(manifest) -> Harness:
    """The target's phone runner, if it can take input files and dump outputs; else one line why not."""
    harness = manifest.spec.harness
    if harness is None:
        raise EdgekitError(f"{manifest.target} artifacts do not run on a phone through edgekit: "
                           f"{manifest.spec.not_profiled}")
    if harness.tensor_io is None:
        raise EdgekitError(f"{manifest.target} artifacts cannot be verified on the phone: {harness.no_tensor_io}")
    return harness


def tolerance_precision(manifest, harness: Harness, delegate: str) -> tuple[str, str | None]:
    """(the precision whose tolerance binds this run, a note when it is not the artifact's)."""
    if manifest.precision == "fp32" and delegate in harness.fp16_delegates:
        return "fp16", (f"the {delegate} delegate computes an fp32 model in fp16 by default, so the phone's outputs "
                        "are held to the fp16 tolerance")
    return manifest.precision, None


def verify_on_device(opts: DeviceVerifyOptions, progress: Progress = lambda _m: None) -> dict:
    """Verify one artifact on every phone `opts.device` names, at the same time; record each phone's
    result in the manifest. Returns {"artifact_dir", ..., "host": the host's verdict, "devices": [one
    record per phone that ran], "failed": [one per phone that could not]}."""
    from edgekit.calibration.images import image_batch
    from edgekit.profile import check_libraries, find_harness, lock_dir
    from edgekit.reference import run_images
    from edgekit.registry import get_variant
    from edgekit.verify import judge, load_for_verification

    if opts.device == "host":
        raise EdgekitError("--device host is the host verification: drop --device (edgekit verify ARTIFACT)")
    manifest, reference, images = load_for_verification(opts.artifact, opts.verify_images, opts.weights,
                                                        opts.allow_calibration_images)
    harness = phone_harness(manifest)
    delegate = opts.delegate or harness.delegates[0]
    adb = Adb(server=opts.adb_server)
    targets = resolve_devices(opts.device, adb, progress)
    for target in targets:
        check_delegate(target.profile, delegate, harness.delegates)
    files = find_harness(opts.harness, harness)
    progress("running PyTorch on the verification photos")
    batch = image_batch(get_variant(manifest.variant), manifest.size, list(images.paths))
    expected = run_images(reference, batch)
    precision, tolerance_note = tolerance_precision(manifest, harness, delegate)

    def on_phone(target: Target) -> dict:
        check_libraries(harness, files, target.profile)
        model_files = harness.model_files(manifest, target.profile)  # raises if this phone cannot run it
        run = RunSettings(opts.threads or target.profile.threads, delegate, runs=1, warmup=0, op_profile=False)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        try:
            with PhoneSession(adb, target, harness, files.binary, files.libraries, model_files, opts.keep, progress,
                              lock_dir()) as session:
                runner = PhoneRunner(session, manifest, run, progress)
                got = runner.run(batch, expected.shape)
        except DeviceLost as e:
            raise EdgekitError(f"lost {target.serial} mid-run: {e}") from None
        return {"started": started, "got": got, "label": runner.label, "threads": run.threads}

    outcomes = on_phones(targets, on_phone, progress)
    devices, failed = [], []
    for o in outcomes:
        if o.error is not None:
            failed.append({"device": o.target.describe(), "failed": o.error})
            continue
        verification = judge(manifest, reference, images, batch, expected, o.result["got"], o.result["label"],
                             precision=precision)
        verification["tolerance_note"] = tolerance_note
        devices.append({
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "started": o.result["started"],
            "device": o.target.describe(), "harness": harness.name, "harness_sha256": files.sha256,
            "runner_io": harness.tensor_io.source, "delegate": delegate, "threads": o.result["threads"],
            "verification": verification,
        })
    if devices:
        record_in_manifest(Path(opts.artifact), devices)
    return {"artifact_dir": str(opts.artifact), "variant": manifest.variant, "target": manifest.target,
            "precision": manifest.precision, "random_weights": manifest.random_weights,
            "host": {"passed": manifest.verification.get("passed"), "compared": manifest.verification.get("compared")},
            "devices": devices, "failed": failed}


def _key(record: dict) -> tuple:
    d = record["device"]
    return d.get("adb_server"), d.get("serial"), record.get("delegate"), record.get("harness")


def record_in_manifest(artifact_dir: Path, records: list[dict]) -> None:
    """Add the phones' verifications to the manifest (a newer run on the same phone, delegate and
    runner replaces its older one); the host's verification is never touched."""
    from edgekit.locks import file_lock
    from edgekit.manifest import MANIFEST, read_manifest, write_manifest

    with file_lock(artifact_dir / MANIFEST):
        manifest = read_manifest(artifact_dir)
        new = {_key(r) for r in records}
        kept = [r for r in manifest.device_verifications or [] if _key(r) not in new]
        manifest.device_verifications = kept + records
        write_manifest(artifact_dir, manifest)


# ---- edgekit eval --device -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PhoneOptions:
    device: str  # one phone: a serial, or a profile only one connected phone matches
    delegate: str | None = None
    harness: Path | None = None
    adb_server: str | None = None
    threads: int | None = None  # the runner's on the phone (default: the profile's)
    keep: bool = False


def evaluate_on_device(opts, phone: PhoneOptions, progress: Progress = lambda _m: None) -> dict:
    """`edgekit eval ARTIFACT --device PHONE`: the artifact's scores computed by the phone, PyTorch's
    on this machine, one image on the phone at a time. The phone's per-image scores are journaled,
    so an interrupted run (Ctrl-C, a lost phone) resumes where it stopped on the next identical run."""
    from edgekit.datasets import open_dataset
    from edgekit.eval import evaluate_artifact
    from edgekit.manifest import read_manifest
    from edgekit.profile import check_libraries, find_harness, lock_dir
    from edgekit.registry import get_variant
    from edgekit.threads import check_threads, torch_threads

    if phone.device == "host":
        raise EdgekitError("--device host is the host's own run: drop --device")
    if opts.resolution is not None:
        raise EdgekitError("--resolution is for a variant; an artifact has its own input size")
    check_threads(opts.threads)
    if not Path(opts.model).is_dir():
        raise EdgekitError(f"--device evaluates an artifact on the phone; {opts.model} is not an artifact directory")
    manifest = read_manifest(Path(opts.model))
    harness = phone_harness(manifest)
    delegate = phone.delegate or harness.delegates[0]
    variant = get_variant(manifest.variant)
    data = open_dataset(opts.data, opts.format, variant.num_classes, opts.limit)
    adb = Adb(server=phone.adb_server)
    targets = resolve_devices(phone.device, adb, progress)
    if len(targets) > 1:
        raise EdgekitError(f"{len(targets)} connected phones match {phone.device} "
                           f"({', '.join(t.serial for t in targets)}): eval runs on one, pass --device SERIAL")
    (target,) = targets
    check_delegate(target.profile, delegate, harness.delegates)
    files = find_harness(phone.harness, harness)
    check_libraries(harness, files, target.profile)
    model_files = harness.model_files(manifest, target.profile)
    run = RunSettings(phone.threads or target.profile.threads, delegate, runs=1, warmup=0, op_profile=False)
    journal_key = f"{target.server}|{target.serial}|{harness.name}|{files.sha256}|{delegate}|{run.threads}"
    try:
        with torch_threads(opts.threads), PhoneSession(adb, target, harness, files.binary, files.libraries,
                                                       model_files, phone.keep, progress, lock_dir()) as session:
            runner = PhoneRunner(session, manifest, run)
            result = evaluate_artifact(manifest, data, progress, opts.weights, opts.threads,
                                       save_predictions=opts.save_predictions, runner=runner, journal_key=journal_key)
    except DeviceLost as e:
        raise EdgekitError(f"lost {target.serial} mid-run: {e}; the images scored so far are kept: run the same "
                           "command again to resume") from None
    result.update(device=target.describe(), harness=harness.name, harness_sha256=files.sha256, delegate=delegate,
                  threads=run.threads)
    return result
