from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn


def require_tools(*tools: str, package: str) -> None:
    """A test that needs a system program (adb, kotlinc, javac): skipped with a one-line reason naming
    the Debian package on a developer's machine without it, failed under CI (CI=true), so CI can never
    pass by skipping it (.ci/run installs the packages)."""
    missing = [t for t in tools if not shutil.which(t)]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (Debian package: {package}; sudo apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI=true, so this test may not be skipped")
    pytest.skip(reason)


REPO = Path(__file__).resolve().parents[1]


def error_line(stderr: str) -> str:
    """A failed command's error: one line, "error: ...", the last on stderr. Lines before it may only
    be the command's progress (a test's stderr is not a terminal, where progress is printed line by
    line), never a traceback or another error."""
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    assert not [line for line in lines[:-1] if line.startswith(("error", "Traceback", "  File "))], stderr
    return lines[-1]


def one_line_error(result, needle: str, code: int = 1) -> None:
    """A CLI run (typer's CliRunner result) that failed as edgekit fails: exit `code` and its one
    error line naming `needle`."""
    assert result.exit_code == code, result.output
    err = error_line(result.stderr)
    assert needle in err, err


def run_edgekit(*args, cwd=None, env=None, timeout=600):
    """The real command, in its own process: what a user's terminal gets."""
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def pytest_configure(config):
    """Under pytest-xdist, each worker's share of the cores for PyTorch's intra-op (OpenMP) threads, in
    this process and (OMP_NUM_THREADS) in the edgekit processes its tests start. PyTorch's default, one
    thread per core in every worker, oversubscribes the cores: measured on this 2-core host, one
    FFN equalisation call on m0-cls took 8.5 s beside a 2-thread load instead of 0.17 s alone (0.28 s
    with one thread), which made single tests 10-35x slower in the suite than alone."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_by_default(monkeypatch):
    """Every test starts from edgekit's defaults: a developer's EDGEKIT_VERBOSE/EDGEKIT_DEBUG, or one
    leaked by an in-process `--debug` run, would put the frameworks' output on stderr."""
    monkeypatch.delenv("EDGEKIT_VERBOSE", raising=False)
    monkeypatch.delenv("EDGEKIT_DEBUG", raising=False)


def randomize_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer non-trivial affine params and running stats, like a trained model.

    Fresh BatchNorms (mean 0, var 1, weight 1, bias 0) are near-identities and would let a test pass
    that mixes up which statistics went where. Variances stay well above zero: tiny ones create
    denormals and meaningless blow-ups.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.normalized_shape, generator=g) * 0.5 + 0.75)
            if hasattr(m, "attention_biases"):
                m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g) * 0.5)
    return model


def variant_params(names=None, also_slow: tuple[str, ...] = ()) -> list:
    """Variant names for a parametrized default test, the L series (large, slow to build and fold) and
    `also_slow` (name prefixes) marked slow: they run with `-m slow`; tests/test_l_series.py keeps one
    small default L check."""
    from edgekit.registry import VARIANTS

    def slow(n: str) -> bool:
        return VARIANTS[n].config.get("backbone") == "large" or n.startswith(also_slow)

    return [pytest.param(n, marks=pytest.mark.slow) if slow(n) else n
            for n in (names if names is not None else sorted(VARIANTS))]


def every_variant_resolution(name: str) -> str | None:
    """The input the slow every-variant exports use: MSRA models at their own 224, MIT seg models at
    256x512 and MIT classifiers at 224 (smaller than their defaults, to keep the slow run short)."""
    from edgekit.registry import VARIANTS

    variant = VARIANTS[name]
    return None if variant.family == "msra" else ("256x512" if variant.task == "seg" else "224")


@pytest.fixture(scope="session")
def b0_fp32(tmp_path_factory):
    """One real b0-seg TFLite fp32 export at 128x256 (no network allowed), shared by the export and
    bundle tests: (output folder, manifest)."""
    from edgekit.export import ExportOptions, export

    out = tmp_path_factory.mktemp("artifacts")
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    try:
        manifest = export(ExportOptions("b0-seg", "tflite", "fp32", "128x256", output=out))
    finally:
        mp.undo()
    return out, manifest


@pytest.fixture(scope="module")
def onnx_b0(tmp_path_factory):
    """A b0-seg ONNX artifact at 64x128, per test module (its tests profile it, which writes beside it)."""
    from edgekit.export import ExportOptions, export

    return export(ExportOptions("b0-seg", "onnx", resolution="64x128", output=tmp_path_factory.mktemp("onnx")))


@pytest.fixture(scope="session")
def onnx_sr(tmp_path_factory):
    """An sr-x2 ONNX artifact (edgekit's shipped weights) at 64x96, a small input that keeps tiled runs quick;
    read only."""
    from edgekit.export import ExportOptions, export

    return Path(export(ExportOptions("sr-x2", "onnx", resolution="64x96",
                                     output=tmp_path_factory.mktemp("onnx-sr"))).artifact_dir)


@pytest.fixture(scope="module")
def tflite_b0(tmp_path_factory):
    """A b0-seg TFLite fp32 artifact directory at 64x128, per test module: tests that change it copy it."""
    from edgekit.export import ExportOptions, export

    out = tmp_path_factory.mktemp("tflite-b0")
    return Path(export(ExportOptions("b0-seg", "tflite", "fp32", "64x128", output=out)).artifact_dir)


@pytest.fixture(scope="session")
def shared_artifact(tmp_path_factory):
    """`shared_artifact(variant, target, precision=None, resolution=None)`: a real export made once per
    test session and shared by the tests that only read it (an export is the suite's costliest step:
    m0-cls to TFLite takes a minute and a half here). A test that changes an artifact exports its own."""
    from edgekit.export import ExportOptions, export
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets import get_target

    out = tmp_path_factory.mktemp("shared-artifacts")
    made = {}

    def get(variant: str, target: str, precision: str | None = None, resolution: str | None = None):
        v = get_variant(variant)
        key = (v.name, target, precision or get_target(target).default_precision, parse_resolution(resolution, v))
        if key not in made:
            mp = pytest.MonkeyPatch()  # as every export: nothing may touch the network
            mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
            try:
                made[key] = export(ExportOptions(variant, target, key[2], resolution, output=out))
            finally:
                mp.undo()
        return made[key]

    return get


# ---- the real adb client and virtual phones (tests/virtual_adbd.py), shared by the profile tests -------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adb_server():
    require_tools("adb", package="adb")
    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(_free_port())  # a private server: nothing else disturbed
    subprocess.run(["adb", "start-server"], check=True, capture_output=True, timeout=60)
    yield
    subprocess.run(["adb", "kill-server"], capture_output=True, timeout=60)
    if old is None:
        del os.environ["ANDROID_ADB_SERVER_PORT"]
    else:
        os.environ["ANDROID_ADB_SERVER_PORT"] = old


def _state(serial: str) -> str | None:
    out = subprocess.run(["adb", "devices"], capture_output=True, text=True, timeout=30).stdout
    return next((line.split()[1] for line in out.splitlines()[1:] if line.startswith(serial + "\t")), None)


@pytest.fixture
def connect(adb_server, tmp_path):
    phones = []

    def make(name="phone", want="device", **kw):
        from virtual_adbd import VirtualDevice

        phone = VirtualDevice(tmp_path / name, **kw)
        phones.append(phone)
        subprocess.run(["adb", "connect", phone.serial], capture_output=True, timeout=30)
        deadline = time.time() + 20
        while _state(phone.serial) != want and time.time() < deadline:
            time.sleep(0.2)
        assert _state(phone.serial) == want
        return phone

    yield make
    for phone in phones:
        subprocess.run(["adb", "disconnect", phone.serial], capture_output=True, timeout=30)
        phone.close()




# ---- BasicSR, the peer for super-resolution metrics ------------------------------------------------
INSTALL = ("pip install --no-deps opencv-python-headless==4.10.0.84 && pip install --no-deps --no-build-isolation "
           "basicsr==1.4.2")


@pytest.fixture(scope="session")
def basicsr():
    """(psnr_ssim, matlab_functions) from the installed BasicSR, its package __init__ never run."""
    spec = importlib.util.find_spec("basicsr")
    if spec is None or importlib.util.find_spec("cv2") is None:
        reason = f"BasicSR or OpenCV is not installed ({INSTALL})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}: CI=true, so this test may not be skipped")
        pytest.skip(reason)
    root = Path(spec.submodule_search_locations[0])
    saved = {k: v for k, v in sys.modules.items() if k == "basicsr" or k.startswith("basicsr.")}
    try:
        for name, path in (("basicsr", root), ("basicsr.utils", root / "utils"), ("basicsr.metrics", root / "metrics")):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [str(path)]
            sys.modules[name] = stand_in
        color = importlib.import_module("basicsr.utils.color_util")
        sys.modules["basicsr.utils"].bgr2ycbcr = color.bgr2ycbcr  # what metric_util takes from the package
        yield importlib.import_module("basicsr.metrics.psnr_ssim"), importlib.import_module(
            "basicsr.utils.matlab_functions")
    finally:
        for k in [k for k in sys.modules if k == "basicsr" or k.startswith("basicsr.")]:
            del sys.modules[k]
        sys.modules.update(saved)


