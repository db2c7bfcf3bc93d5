"""A toy target (TorchScript), declared here and nowhere else, for tests of the target table.

Also a pytest plugin: `python -m pytest -p toy_target ...` registers it in the table before
collection, so a suite parametrized over the table (tests/test_conformance.py) takes it with no
edit, as it would a real target's module."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgekit.targets.base import Converted, DeployPlan, Packaging, TargetSpec, Tolerance, option


@dataclass(frozen=True)
class ToyOptions:
    noise: int = option(0, "--noise", "toy: add this much noise (in 1e-3) to the outputs", None, int)


class ToyRunner:
    def __init__(self, path: Path, manifest, threads: int = 2):
        self.model = torch.jit.load(str(path))
        self.noise = manifest.target_options["noise"] * 1e-3

    def run(self, images, expected_nchw=None):
        with torch.no_grad():
            out = np.concatenate([self.model(torch.from_numpy(x[None])).numpy() for x in images])
        return out + self.noise * np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)


def _toy_convert(job):
    job.progress("tracing")
    path = job.out / "model.pt"
    with torch.no_grad():
        torch.jit.trace(job.deploy, torch.zeros(1, 3, *job.size)).save(str(path))
    io = {"input": {"name": "x", "shape": [1, 3, *job.size], "layout": "NCHW", "dtype": "float32",
                    "quantization": None},
          "output": {"name": "y", "shape": None, "layout": "NCHW", "dtype": "float32", "quantization": None}}
    return Converted(path, {"TorchScript": 1}, io, target_info={"traced": True})


def _toy_snippet(spec, manifest):
    return "Toy.txt", f"load {spec['model_file']} and feed {spec['input']['name']}\n"


TOY = TargetSpec(
    name="toy",
    summary="TorchScript, for tests only",
    model_file="model.pt",
    precisions=("fp32",),
    plan=DeployPlan(fp16_compute=(), int8_activations=()),
    convert=_toy_convert,
    tolerances={"fp32": Tolerance(sqnr_min_db=60.0)},
    runner=ToyRunner,
    runner_label="torch.jit",
    options=ToyOptions,
    packaging=Packaging("android", lambda m, p: (dict(m.io["input"]), dict(m.io["output"])), _toy_snippet),
    not_profiled="toy artifacts are not profiled",
)


def pytest_configure(config):
    from edgekit.targets import TARGETS, register

    if "toy" not in TARGETS:
        register(TOY)
