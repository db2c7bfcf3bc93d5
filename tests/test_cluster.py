"""`edgekit sweep --cluster` on a real Dask scheduler (`dask scheduler`) and real `edgekit worker` processes,
each with its own adb server and virtual phones (tests/virtual_adbd.py), as two lab machines would be."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from virtual_adbd import SM8450_PROPS

from conftest import require_tools
from edgekit.android_harness.host_benchmark import write_launcher
from edgekit.cli import app
from edgekit.profile import read_results

pytest.importorskip("distributed", reason="pip install 'edgekit[cluster]'")

runner = CliRunner()
SM8650_PROPS = {**SM8450_PROPS, "ro.product.model": "SM-S921B", "ro.product.name": "e1sxxx",
                "ro.product.device": "e1s", "ro.soc.model": "SM8650", "ro.board.platform": "pineapple"}
GRID = ["--variants", "b0-seg,m0-cls", "--targets", "tflite,onnx", "--resolutions", "64x128", "--runs", "2",
        "--warmup", "0"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A scheduler, and per 'machine' an adb server with its phones and an `edgekit worker`."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.port = _port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.adb_ports: list[int] = []
        self.phones: list = []
        self.workers: dict[str, subprocess.Popen] = {}
        self._spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(self.port),
                     "--dashboard-address", f":{_port()}"], "scheduler")

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        return proc

    def machine(self, name: str, props: dict | None) -> None:
        """An adb server with one phone of `props` (None: no phone), and a worker using it."""
        from virtual_adbd import VirtualDevice

        port = _port()
        subprocess.run(["adb", "-P", str(port), "start-server"], check=True, capture_output=True, timeout=60)
        self.adb_ports.append(port)
        args = [sys.executable, "-m", "edgekit", "worker", self.address, "--name", name, "--adb-server",
                f"127.0.0.1:{port}"]
        if props is not None:
            phone = VirtualDevice(self.root / f"{name}-phone", props=props)
            self.phones.append(phone)
            subprocess.run(["adb", "-P", str(port), "connect", phone.serial], capture_output=True, timeout=30)
        self.workers[name] = self._spawn(args, name)

    def wait(self, resources: dict[str, dict]) -> None:
        """Until each named worker offers at least `resources[name]`."""
        from distributed import Client

        deadline = time.time() + 90
        with Client(self.address, timeout="30s") as client:
            while time.time() < deadline:
                offered = {w["name"]: w["resources"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
                if all(all(offered.get(n, {}).get(k, 0) >= v for k, v in want.items()) for n, want in resources.items()):
                    return
                time.sleep(0.5)
        raise AssertionError(f"workers did not offer {resources}: {offered}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()
            proc.wait(timeout=30)
        for port in self.adb_ports:
            subprocess.run(["adb", "-P", str(port), "kill-server"], capture_output=True, timeout=30)
        for phone in self.phones:
            phone.close()


@pytest.fixture
def lab(tmp_path, monkeypatch):
    require_tools("adb", package="adb")
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))  # the harnesses, shared by the 'machines'
    benchmark = tmp_path / "benchmark_model"
    write_launcher(benchmark)
    assert runner.invoke(app, ["harness", "add", str(benchmark)]).exit_code == 0
    from edgekit.android_harness.host_perf_test import write_launcher as write_perf_test

    perf_test = tmp_path / "onnxruntime_perf_test"
    write_perf_test(perf_test)
    assert runner.invoke(app, ["harness", "add", str(perf_test), "--kind", "onnxruntime_perf_test"]).exit_code == 0
    lab = Lab(tmp_path, {**os.environ, "EDGEKIT_CACHE": str(tmp_path / "cache")})
    yield lab
    lab.close()


def _sweep(*args: str) -> tuple[int, dict, str]:
    r = runner.invoke(app, ["sweep", *GRID, *args, "--json"])
    return r.exit_code, json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}, r.stderr


def _same(row: dict) -> tuple:
    """What a cell's output says, apart from timings (and TFLite's file size: onnx2tf names tensors by a
    per-process Keras counter, so the same model is not byte-identical from two processes)."""
    return (row["cell"], row["status"], row["verified"], round(row["sqnr_db_min"], 3), row["agreement"])


@pytest.mark.slow
def test_each_profile_runs_on_the_worker_holding_that_phone_and_the_output_is_a_local_sweeps(lab, tmp_path):
    lab.machine("gen1-lab", SM8450_PROPS)
    lab.machine("gen3-lab", SM8650_PROPS)
    lab.wait({"gen1-lab": {"phone-s8gen1": 1, "export": 1}, "gen3-lab": {"phone-s8gen3": 1, "export": 1}})
    out = tmp_path / "cluster"
    for profile, holder in (("s8gen1", "gen1-lab"), ("s8gen3", "gen3-lab")):
        code, result, err = _sweep("--device", profile, "--cluster", lab.address, "--output", str(out / profile))
        assert code == 0, err
        rows = result["rows"]
        assert len(rows) == 4 and all(r["status"] == "ok" and r["profiled"] == f"measured on {holder}" for r in rows)
        records = read_results(out / profile / "results.jsonl")
        assert sorted(r["device"]["profile"] for r in records) == [profile] * 4
        assert {r["artifact"] for r in records} == {r["artifact"] for r in rows}  # paths of the local folder
    # a local sweep of the same grid writes the same artifacts (apart from timings)
    code, local, err = _sweep("--output", str(tmp_path / "local"))
    assert code == 0, err
    code, remote, err = _sweep("--cluster", lab.address, "--output", str(out / "host"))
    assert code == 0, err
    assert [_same(r) for r in remote["rows"]] == [_same(r) for r in local["rows"]]
    for row_l, row_r in zip(local["rows"], remote["rows"]):
        m_l, m_r = (json.loads((Path(r["artifact"]) / "edgekit.json").read_text()) for r in (row_l, row_r))
        assert (m_l["ops"], m_l["rewrites"], m_l["io"]) == (m_r["ops"], m_r["rewrites"], m_r["io"])
        if m_l["target"] == "onnx":
            assert m_l["sha256"] == m_r["sha256"]
    # the same command resumes: nothing exported or measured again
    code, again, _ = _sweep("--device", "s8gen1", "--cluster", lab.address, "--output", str(out / "s8gen1"))
    assert code == 0 and all((r["exported"], r["profiled"]) == ("reused", "from results.jsonl") for r in again["rows"])


@pytest.mark.slow
def test_a_cell_no_worker_can_take_fails_at_once_in_one_line(lab, tmp_path):
    lab.machine("only", SM8450_PROPS)
    lab.wait({"only": {"phone-s8gen1": 1}})
    t0 = time.time()
    code, result, err = _sweep("--device", "s8gen2", "--cluster", lab.address, "--output", str(tmp_path / "o"))
    assert code == 1 and time.time() - t0 < 30
    assert all(r["status"] == "profile failed" and "has a s8gen2 phone" in r["error"] for r in result["rows"])
    assert not any((tmp_path / "o").glob("*-fp32"))  # nothing exported for a phone nobody has


def test_cluster_without_distributed_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    r = runner.invoke(app, ["sweep", "--variants", "b0-seg", "--cluster", "tcp://127.0.0.1:1", "-o", str(tmp_path)])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: --cluster needs Dask's distributed, which is not installed (pip install 'edgekit[cluster]')")


def _kill_the_exporter(lab: Lab, out: Path):
    """Run a one-cell sweep on the cluster, kill the worker exporting it mid-conversion; (the CLI result,
    the killed worker's name)."""
    import threading

    from distributed import Client

    found: dict = {}
    args = ["sweep", "--variants", "b0-seg", "--targets", "tflite", "--resolutions", "64x128", "--runs", "2",
            "--warmup", "0", "--cluster", lab.address, "--output", str(out), "--json"]
    thread = threading.Thread(target=lambda: found.update(result=runner.invoke(app, args)))
    thread.start()
    with Client(lab.address, timeout="30s") as client:
        deadline = time.time() + 120
        busy = []
        while not busy and time.time() < deadline:
            names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            busy = [names[a] for a, tasks in client.processing().items() if tasks and a in names]
            time.sleep(0.2)
    assert busy, "no worker took the export"
    time.sleep(2)  # inside the conversion
    lab.workers[busy[0]].kill()
    thread.join(timeout=300)
    return found["result"], busy[0]


@pytest.mark.slow
def test_a_worker_killed_mid_export_loses_only_that_attempt(lab, tmp_path):
    """The export's worker is killed while it converts: Dask reruns the cell on the other worker, and the
    sweep's output is whole."""
    lab.machine("first", None)
    lab.machine("second", None)
    lab.wait({"first": {"export": 1}, "second": {"export": 1}})
    r, killed = _kill_the_exporter(lab, tmp_path / "o")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)["rows"]
    other = ({"first", "second"} - {killed}).pop()
    assert row["status"] == "ok" and row["exported"] == f"exported on {other}"
    assert [p.name for p in (tmp_path / "o").iterdir() if p.name.startswith(".")] == []  # nothing half-written


@pytest.mark.slow
def test_with_its_only_worker_killed_the_cell_fails_and_the_rerun_finishes_it(lab, tmp_path, monkeypatch):
    import edgekit.cluster

    monkeypatch.setattr(edgekit.cluster, "WORKERLESS_S", 5.0)
    lab.machine("only", None)
    lab.wait({"only": {"export": 1}})
    r, _ = _kill_the_exporter(lab, tmp_path / "o")
    assert r.exit_code == 1
    (row,) = json.loads(r.stdout)["rows"]
    assert row["status"] == "export failed" and "no worker left" in row["error"]
    lab.machine("replacement", None)
    lab.wait({"replacement": {"export": 1}})
    store = tmp_path / "shared"  # and the artifact travels through a shared folder this time
    store.mkdir()
    code, result, err = _sweep("--cluster", lab.address, "--output", str(tmp_path / "o"), "--variants", "b0-seg",
                               "--targets", "tflite", "--store", str(store))
    assert code == 0, err
    assert [(r["status"], r["exported"]) for r in result["rows"]] == [("ok", "exported on replacement")]
    (stored,) = [p for p in store.iterdir() if not p.name.startswith(".")]
    assert (stored / "model.tflite").read_bytes() == (Path(result["rows"][0]["artifact"]) / "model.tflite").read_bytes()
