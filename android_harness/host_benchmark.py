"""The host harness: `benchmark_model`'s flags and output format, run with ai-edge-litert on this machine.

`edgekit profile --device host` runs it directly; the tests push it to the virtual adb device in
place of the arm64 binary. Because it prints what `benchmark_model` prints (stats lines in
microseconds, `Inference timings in us`, memory lines, `Replacing N out of M node(s) ...`), one parser
(android_harness.benchmark_output) reads both.

What it measures: wall time of `Invoke()` per run; peak memory is the process's peak RSS
(getrusage); delegate coverage counts the nodes XNNPACK took. The Python API exposes no per-op
profiler, so `--enable_op_profiling` prints a warning and no table rather than invented numbers.

Inputs and outputs as benchmark_model takes and writes them (LiteRT
tflite/tools/benchmark/benchmark_tflite_model.cc): `--input_layer` names and `--input_layer_shape`
shapes (one per name, ':'-separated), `--input_layer_value_files=NAME:FILE,...` (raw tensor bytes;
a ':' inside a name escaped as '::'; a name not in --input_layer is fatal), and
`--output_filepath=FILE`, written after the last run: every output's raw bytes, in order. Without
value files the inputs are random, as there.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

FLAGS_UNSUPPORTED_ON_HOST = ("use_gpu", "use_nnapi", "use_hexagon")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmark_model (edgekit host harness)", allow_abbrev=False)
    p.add_argument("--graph", required=True)
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--num_runs", type=int, default=50)
    p.add_argument("--warmup_runs", type=int, default=1)
    p.add_argument("--min_secs", type=float, default=0.0)
    p.add_argument("--max_secs", type=float, default=150.0)
    p.add_argument("--use_xnnpack", type=_bool, default=True)
    p.add_argument("--enable_op_profiling", type=_bool, default=False)
    p.add_argument("--external_delegate_path", default="")
    p.add_argument("--input_layer", default="")
    p.add_argument("--input_layer_shape", default="")
    p.add_argument("--input_layer_value_files", default="")
    p.add_argument("--output_filepath", default="")
    for flag in FLAGS_UNSUPPORTED_ON_HOST:
        p.add_argument(f"--{flag}", type=_bool, default=False)
    return p


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _log(message: str) -> None:
    print(f"INFO: {message}", flush=True)


def split_value_file(item: str) -> tuple[str, str]:
    """NAME:FILE with '::' standing for a ':' inside either part (SplitInputLayerNameAndValueFile)."""
    delim, i = -1, 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delim == -1:
                delim = i
            else:
                raise ValueError(f"{item} contains more than one delimiter.")
        i += 1
    if delim == -1:
        raise ValueError(f"{item} doesn't contain any delimiter.")
    return item[:delim].replace("::", ":"), item[delim + 1:].replace("::", ":")


def value_files(args) -> dict[str, str]:
    """{input name: file} from the flags, checked as benchmark_model checks them."""
    names = [n for n in args.input_layer.split(",") if n] if args.input_layer else []
    shapes = args.input_layer_shape.split(":") if args.input_layer_shape else []
    if len(names) != len(shapes):
        raise ValueError(f"The number of items in --input_layer_shape ({args.input_layer_shape}, with {len(shapes)} "
                         f"items) must match the number of items in --input_layer ({args.input_layer}, with "
                         f"{len(names)} items).")
    files = {}
    for item in filter(None, args.input_layer_value_files.split(",")):
        name, path = split_value_file(item)
        if name not in names:
            raise ValueError(f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                             f"{args.input_layer}")
        files[name] = path
    return files


def _stats_line(times_us: list[float]) -> str:
    import numpy as np

    t = np.asarray(times_us)
    pct = {f"p{q}": float(np.percentile(t, q)) for q in (5, 90, 95)}
    return (f"count={len(t)} first={t[0]:.6g} curr={t[-1]:.6g} min={t.min():.6g} max={t.max():.6g} "
            f"avg={t.mean():.6g} std={t.std():.6g} p5={pct['p5']:.6g} median={float(np.median(t)):.6g} "
            f"p90={pct['p90']:.6g} p95={pct['p95']:.6g}")


def partitions(interpreter) -> int:
    """How many delegate partitions the graph was cut into (one DELEGATE node each)."""
    return sum(o["op_name"] == "DELEGATE" for o in interpreter._get_ops_details())


def delegate_coverage(graph: str, threads: int, inputs) -> tuple[int, int, list[str]]:
    """(nodes the delegate takes, nodes in the model, the op names of the nodes it leaves out).

    Measured on a separate interpreter that keeps every tensor (which makes XNNPACK take each node
    as its own partition: which nodes it takes is unchanged, the partitioning is not, so partitions
    are counted on the timed interpreter). The interpreter still lists every original node plus the
    DELEGATE nodes; a delegated node's output lives inside the delegate and is never written back
    unless it is a DELEGATE node's output. So: fill every intermediate tensor with a marker, run once,
    and a node ran on the CPU kernels iff it overwrote its output and that output does not come out
    of a DELEGATE node.
    """
    import warnings

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=graph, num_threads=threads, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    delegate_ops = [o for o in ops if o["op_name"] == "DELEGATE"]
    nodes = [o for o in ops if o["op_name"] != "DELEGATE"]
    from_delegate = {t for o in delegate_ops for t in o["outputs"]}
    inputs_idx = {d["index"] for d in interpreter.get_input_details()}
    rng = np.random.default_rng(0)
    marked = {}
    for o in nodes:
        for t in o["outputs"]:
            if t < 0 or t in inputs_idx or t in from_delegate:
                continue
            detail = interpreter._get_tensor_details(t, 0)
            dtype, shape = np.dtype(detail["dtype"]), tuple(detail["shape"])
            marker = np.frombuffer(rng.bytes(int(np.prod(shape)) * dtype.itemsize), dtype=dtype).reshape(shape)
            try:
                interpreter.set_tensor(t, marker)
            except ValueError:  # a tensor we cannot mark counts as delegated
                continue
            marked[t] = marker.tobytes()
    for d, x in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(d["index"], x)
    interpreter.invoke()
    outside = []
    for o in nodes:
        outs = [t for t in o["outputs"] if t >= 0]
        if any(t in from_delegate for t in outs):
            continue
        if any(t in marked and interpreter.get_tensor(t).tobytes() != marked[t] for t in outs):
            outside.append(o["op_name"])
    return len(nodes) - len(outside), len(nodes), outside


def coverage(graph: str, threads: int = 1) -> dict:
    """Delegate coverage of a model file on its own: nodes XNNPACK takes, nodes in the model,
    partitions, and the op names it leaves out (with counts)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(graph), num_threads=threads)
    interpreter.allocate_tensors()
    inputs = [np.zeros(d["shape"], d["dtype"]) for d in interpreter.get_input_details()]
    replaced, total, outside = delegate_coverage(str(graph), threads, inputs)
    return {"replaced": replaced, "total": total, "partitions": partitions(interpreter),
            "outside": {name: outside.count(name) for name in sorted(set(outside))}}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _log("STARTING!")
    _log(f"Num threads: [{args.num_threads}]")
    _log(f"Graph: [{args.graph}]")
    for flag in FLAGS_UNSUPPORTED_ON_HOST:
        if getattr(args, flag):
            print(f"ERROR: --{flag}=true: that delegate exists only on a phone, not in the host harness", flush=True)
            return 1
    if args.external_delegate_path:
        print("ERROR: --external_delegate_path: external delegates run only on a phone", flush=True)
        return 1
    if not os.path.isfile(args.graph):
        print(f"ERROR: Could not open '{args.graph}'.", flush=True)
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rss0 = _rss_mb()
    started = time.perf_counter()
    resolver = OpResolverType.AUTO if args.use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(model_path=args.graph, num_threads=args.num_threads,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except Exception as e:  # noqa: BLE001 - report as benchmark_model does, then fail
        print(f"ERROR: Failed to allocate tensors! {e}", flush=True)
        return 1
    _log(f"Loaded model {args.graph}")
    try:
        files = value_files(args)
    except ValueError as e:
        print(f"ERROR: {e}", flush=True)
        return 1
    rng = np.random.default_rng(0)
    inputs = []
    for d in interpreter.get_input_details():
        if d["name"] in files:
            with open(files[d["name"]], "rb") as f:
                raw = f.read()
            want = int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
            if len(raw) != want:
                print(f"ERROR: {files[d['name']]}: {len(raw)} bytes, the input {d['name']} takes {want}", flush=True)
                return 1
            inputs.append(np.frombuffer(raw, d["dtype"]).reshape(d["shape"]))
        elif np.issubdtype(d["dtype"], np.floating):
            inputs.append(rng.random(d["shape"], dtype=np.float32).astype(d["dtype"]))
        else:
            info = np.iinfo(d["dtype"])
            inputs.append(rng.integers(info.min, info.max, size=d["shape"], dtype=d["dtype"]))
    init_us = (time.perf_counter() - started) * 1e6
    _log(f"The input model file size (MB): {os.path.getsize(args.graph) / 1e6:.6g}")
    _log(f"Initialized session in {init_us / 1000:.6g}ms.")
    rss_init = _rss_mb()

    def run(count: int, min_secs: float) -> list[float]:
        times = []
        begin = time.perf_counter()
        while len(times) < count or (time.perf_counter() - begin) < min_secs:
            for d, x in zip(interpreter.get_input_details(), inputs):
                interpreter.set_tensor(d["index"], x)
            t0 = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - t0) * 1e6)
            if time.perf_counter() - begin > args.max_secs:
                break
        return times

    warm = run(max(args.warmup_runs, 1), 0.0)
    _log(f"Running benchmark for at least {args.warmup_runs} iterations and at least 0 seconds "
         f"but terminate if exceeding {args.max_secs:g} seconds.")
    _log(_stats_line(warm))
    _log(f"Running benchmark for at least {args.num_runs} iterations and at least {args.min_secs:g} seconds "
         f"but terminate if exceeding {args.max_secs:g} seconds.")
    timed = run(args.num_runs, args.min_secs)
    _log(_stats_line(timed))
    _log(f"Inference timings in us: Init: {init_us:.6g}, First inference: {warm[0]:.6g}, "
         f"Warmup (avg): {sum(warm) / len(warm):.6g}, Inference (avg): {sum(timed) / len(timed):.6g}")
    if args.enable_op_profiling:
        print("WARNING: op profiling is not available in the host harness (ai-edge-litert exposes no "
              "profiler); use benchmark_model on a phone for the per-op table.", flush=True)
    if args.output_filepath:  # OutputSaver: the last run's outputs, raw, in order
        with open(args.output_filepath, "wb") as f:
            for d in interpreter.get_output_details():
                f.write(np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes())
    rss_end = _rss_mb()
    # delegate coverage is this stand-in's own extra (a second interpreter); a run that dumps outputs is a
    # verification, not a measurement, and skips it
    if args.use_xnnpack and not args.output_filepath:  # after the timed runs: the coverage interpreter would inflate the memory figures
        replaced, total, outside = delegate_coverage(args.graph, args.num_threads, inputs)
        print(f"VERBOSE: Replacing {replaced} out of {total} node(s) with delegate (TfLiteXNNPackDelegate) node, "
              f"yielding {partitions(interpreter)} partitions for the whole graph.", flush=True)
        if outside:
            _log("Nodes left to the CPU reference kernels: " + ", ".join(
                f"{name} x{outside.count(name)}" for name in sorted(set(outside))))
    _log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
         "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
    _log(f"Memory footprint delta from the start of the tool (MB): init={rss_init - rss0:.6g} "
         f"overall={rss_end - rss0:.6g}")
    _log(f"Overall peak memory footprint (MB) via periodic monitoring: {rss_end:.6g}")
    return 0


def write_launcher(path, python: str | None = None) -> None:
    """An executable file that runs this harness (pushed to the virtual device in tests)."""
    from edgekit.android_harness.launcher import write_launcher as write

    write(path, "edgekit.android_harness.host_benchmark", python)


if __name__ == "__main__":
    raise SystemExit(main())
