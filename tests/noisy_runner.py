"""A phone runner that perturbs what it computes: LiteRT's benchmark_model stand-in (the host
harness, same flags, really running the model), then Gaussian noise `noise_db` below the signal
added to the outputs it dumps (--output_filepath). Pushed to a virtual phone, it proves that
`verify --device` reports the phone's numbers, not the host's."""

from __future__ import annotations

import sys
from pathlib import Path


def main(noise_db: float, argv: list[str] | None = None) -> int:
    import numpy as np

    from edgekit.android_harness import host_benchmark

    argv = sys.argv[1:] if argv is None else argv
    code = host_benchmark.main(argv)
    out = next((a.split("=", 1)[1] for a in argv if a.startswith("--output_filepath=")), None)
    if code == 0 and out:
        y = np.fromfile(out, dtype=np.float32)
        rng = np.random.default_rng(int(y.size))
        noise = rng.standard_normal(y.size) * np.sqrt(np.mean(y.astype(np.float64) ** 2) / 10 ** (noise_db / 10))
        (y + noise.astype(np.float32)).tofile(out)
    return code


def write(path: Path, noise_db: float) -> Path:
    """An executable file that runs this runner with `noise_db`."""
    path = Path(path)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    f"from noisy_runner import main\nraise SystemExit(main({noise_db!r}))\n")
    path.chmod(0o755)
    return path
