"""What `edgekit debug` costs against a verification run, and the runs docs/debugging.md shows.

Cost: b0-seg at 512x1024 to TFLite fp32; `verify_artifact` and `debug_artifact` on the same artifact and
photos, alternated (verify, debug, verify, debug) in one run, each timed whole (rebuilding the PyTorch
model, running both sides, the picture). The goal: debug at most 10x verify.

Shown runs (their rows, verdicts and pictures): the trained-like stand-in's b0-seg in full int8 at
512x1024 (per-channel spread as trained EfficientViT's), and edgekit's own trained SR model, sr-x2, in
TFLite int8 (the search's recipe).

    python benchmarks/debug_cost.py        # results/debug_cost.json, results/debug_*.png
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from edgekit.export import ExportOptions, export
from edgekit.layer_debug import DebugOptions, debug_artifact
from edgekit.verify import verify_artifact

RESULTS = Path(__file__).parent / "results"
SHOWN = [("b0-seg-trained-like-int8", ExportOptions("b0-seg", "tflite", "int8", "512x1024",
                                                     target_options={"keep_float": 0}, stand_in="trained-like")),
         ("sr-x2-int8", ExportOptions("sr-x2", "tflite", "int8"))]


def _summary(result: dict) -> dict:
    keep = ("module", "tensor", "op", "shape", "sqnr_db_median", "sqnr_db_min", "alone_db", "drop_db", "flags",
            "median_channel_steps", "clipped")
    return {"ran": result["ran"], "images": result["images"], "bar_db": result["bar_db"],
            "first_below": result["first_below"], "largest_drop": result["largest_drop"],
            "rows": [{k: r.get(k) for k in keep} for r in result["rows"]],
            "unmatched": {k: len(v) for k, v in result["unmatched"].items()}, "seconds": result["seconds"]}


def main() -> None:
    record: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        m = export(ExportOptions("b0-seg", "tflite", "fp32", "512x1024", output=out / "fp32"))
        times: dict[str, list[float]] = {"verify": [], "debug": []}
        for _ in range(2):
            t0 = time.perf_counter()
            verify_artifact(Path(m.artifact_dir))
            times["verify"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = debug_artifact(DebugOptions(Path(m.artifact_dir), picture=out / "fp32.png"))
            times["debug"].append(time.perf_counter() - t0)
        record["cost"] = {"case": "b0-seg 512x1024 TFLite fp32", "images": len(result["images"]),
                          "verify_s": [round(t, 1) for t in times["verify"]],
                          "debug_s": [round(t, 1) for t in times["debug"]],
                          "ratio": round(min(times["debug"]) / min(times["verify"]), 2),
                          "rows": len(result["rows"]), "first_below": result["first_below"]}
        print(json.dumps(record["cost"]))
        for name, opts in SHOWN:
            m = export(ExportOptions(**{**opts.__dict__, "output": out / name}))
            result = debug_artifact(DebugOptions(Path(m.artifact_dir), picture=RESULTS / f"debug_{name}.png"))
            record[name] = {"verification": {"passed": m.verification["passed"],
                                             "sqnr_db_min": m.verification["sqnr_db_min"],
                                             "layers": m.verification.get("layers", {}).get("line")},
                            **_summary(result)}
            print(name, record[name]["first_below"], record[name]["largest_drop"])
    (RESULTS / "debug_cost.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
