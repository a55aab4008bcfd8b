"""``python -m benchmarks.run [--quick] [--output DIR]`` (``make bench``): every benchmark in one run.

Stages, each printing progress lines: engines (batch-1 latency, batch-8 throughput, parity with ONNX
Runtime), the handler's inference stage against its raw engine, preprocessing per image size and format,
worker start-up (in-process and through a real MMS), the served configurations side by side through MMS
(``comparison``: today's defaults against the code before the performance work) with the worker's CPU
per request split by stage (``stage_costs``), ``serve`` next to TorchServe + ONNX Runtime and to the code
before issue 23 (``parity``: start-up and bursts, paired ratios), and the in-process handler. Then the
targets, as ratios of numbers from this run, a profile for each missed target, the table on stdout and
``report.json`` + ``report.png`` in the output folder. A full run takes about 20 minutes on 2 cores
(12 of them ``parity``'s ten cycles), ``--quick`` about 4.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    MARK,
    ORIGINAL_ENV,
    ROOT,
    BenchmarkError,
    LoadMonitor,
    child_env,
    load_average,
    machine,
    photo,
    run_child,
    stats_ms,
    time_calls,
    top_functions,
)
from .report import compute_targets, table, write_json, write_plot

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
ENGINE_VARIANTS = (
    "onnxruntime",
    "mxnet_optimized",
    "mxnet_optimized_no_pad",
    "mxnet_imported",
    "gluon_zoo",
    "mxnet_optimized_threaded",
    "mxnet_imported_threaded",
)
THREAD_VARIABLES = ("SQUEEZENET_THREADS", "OMP_NUM_THREADS", "MXNET_ENGINE_TYPE")
MODEL_NOTE = (
    "tests/squeezenet_onnx.py build_squeezenet11(seed=0): the model zoo's squeezenet1.1.onnx graph "
    "(opset 7, same nodes, names, shapes and layout) with seeded weights; the real file cannot be "
    "downloaded here and speed does not depend on the weights' values"
)


@dataclass(frozen=True)
class Plan:
    quick: bool
    warmup: int = 10
    iterations_b1: int = 200
    iterations_b8: int = 40
    preprocess_iterations: int = 50
    large_image_iterations: int = 15
    startup_repeats: int = 2
    inprocess_duration_s: float = 8.0
    head_to_head_rounds: int = 20
    block_b1: int = 10
    block_b8: int = 2
    idle_wait_s: float = 60.0  # in all, over the stages that wait for an idle machine
    concurrency: tuple[int, ...] = (1, 8, 16)
    serving_burst_s: float = 6.0
    serving_cycles: int = 2
    stage_cost_iterations: int = 300
    e2e_images: int = 16
    parity_cycles: int = 10  # benchmarks/parity.py: bursts alternated with TorchServe's
    parity_burst_s: float = 4.0
    parity_start_repeats: int = 3


FULL = Plan(quick=False)
QUICK = Plan(
    quick=True,
    warmup=3,
    iterations_b1=20,
    iterations_b8=4,
    preprocess_iterations=8,
    large_image_iterations=3,
    startup_repeats=1,
    head_to_head_rounds=4,
    block_b1=5,
    block_b8=1,
    idle_wait_s=0.0,
    inprocess_duration_s=2.0,
    serving_burst_s=1.5,
    stage_cost_iterations=40,
    parity_cycles=1,
    parity_burst_s=1.5,
    parity_start_repeats=1,
)


class Progress:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, stage: str, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {stage:13} {message}", flush=True)


@dataclass(frozen=True)
class Inputs:
    model: Path
    store: Path
    archives: dict[str, Path]  # role -> .mar
    model_dirs: dict[str, Path]  # role -> unpacked archive
    e2e_images: list[Path]
    first_image: Path


def prepare(work: Path, plan: Plan, progress: Progress) -> Inputs:
    """The test model, the archives (built by ``build_archive`` like ``squeezenet-mar build``), the
    unpacked folders the in-process runs load, and the photo-like images the in-process runs decode."""
    from squeezenet_mar.build import BuildOptions, build_archive
    from squeezenet_onnx import build_squeezenet11

    model = build_squeezenet11(work / "squeezenet1.1.onnx", seed=0)
    store = work / "model_store"
    builds = {
        "onnx": {"format": "onnx"},
        "mxnet": {"format": "mxnet"},
        "onnxruntime": {"format": "onnx", "engine": "onnxruntime"},
        "served": {},  # what `build` makes by default (ONNX + MXNet checkpoint), served as `serve` does
    }
    archives = {}
    for role, options in builds.items():
        archives[role] = build_archive(
            BuildOptions(
                model_file=model,
                output=store / f"{role}.mar",
                model_name=role,  # distinct archives: MMS unpacks one folder per archive content
                smoke_test=False,  # every archive is loaded by a benchmark below
                progress=False,
                **options,
            )
        ).archive
    model_dirs = {}
    for role in ("onnx", "mxnet", "onnxruntime"):
        model_dirs[role] = work / "unpacked" / role
        with zipfile.ZipFile(archives[role]) as archive:
            archive.extractall(model_dirs[role])
    image_dir = work / "images"
    image_dir.mkdir()
    e2e_images = []
    for seed in range(plan.e2e_images):
        path = image_dir / f"photo_500x375_{seed:02d}.jpg"
        path.write_bytes(photo(500, 375, seed=100 + seed))
        e2e_images.append(path)
    progress("prepare", f"test model, {len(archives)} archives, {len(e2e_images)} 500x375 photo-like JPEGs")
    return Inputs(model, store, archives, model_dirs, e2e_images, e2e_images[0])


# -------------------------------------------------------------------------------------------- stages
def stage_engines(plan: Plan, inputs: Inputs, progress: Progress) -> dict[str, Any]:
    from squeezenet_onnx import reference_probabilities

    from .common import engine_batch

    reference = reference_probabilities(inputs.model, engine_batch(8))
    results: dict[str, Any] = {}
    for variant in ENGINE_VARIANTS:
        env = child_env()
        if variant.endswith("_threaded"):
            env["MXNET_ENGINE_TYPE"] = "ThreadedEnginePerDevice"  # MXNet's default engine
        args = {
            "variant": variant,
            "model": str(inputs.model),
            "warmup": plan.warmup,
            "iterations_b1": plan.iterations_b1 if "imported" not in variant else plan.iterations_b1 // 2,
            "iterations_b8": plan.iterations_b8 if "imported" not in variant else plan.iterations_b8 // 2,
        }
        result, _ = run_child("engine", args, env)
        probabilities = np.asarray(result.pop("probabilities"))
        if variant != "gluon_zoo":  # random weights of its own
            result["max_abs_diff_vs_onnxruntime"] = float(np.abs(probabilities - reference).max())
        results[variant] = result
        progress(
            "engines",
            f"{variant:26} b1 p50 {result['batch1']['p50_ms']:6.2f} ms, "
            f"p90 {result['batch1']['p90_ms']:6.2f} ms; b8 {result['batch8_images_per_s']:6.1f} img/s",
        )
    return results


def stage_head_to_head(plan: Plan, inputs: Inputs, progress: Progress) -> dict[str, Any]:
    args = {
        "model": str(inputs.model),
        "rounds": plan.head_to_head_rounds,
        "block_b1": plan.block_b1,
        "block_b8": plan.block_b8,
        "warmup": plan.warmup,
    }
    result, _ = run_child("head_to_head", args)
    ort, mx = result["onnxruntime"], result["mxnet_optimized"]
    progress(
        "head-to-head",
        f"alternating blocks: b1 p50 MXNet {mx['batch1']['p50_ms']:.2f} ms / "
        f"ORT {ort['batch1']['p50_ms']:.2f} ms; b8 MXNet {mx['batch8_images_per_s']:.1f} / "
        f"ORT {ort['batch8_images_per_s']:.1f} img/s",
    )
    return result


def stage_handler(plan: Plan, inputs: Inputs, progress: Progress) -> dict[str, Any]:
    results = {}
    for role, engine in (("onnx", "mxnet"), ("onnxruntime", "onnxruntime")):
        args = {
            "model_dir": str(inputs.model_dirs[role]),
            "warmup": plan.warmup,
            "iterations_b1": plan.iterations_b1,
            "iterations_b8": plan.iterations_b8,
        }
        result, _ = run_child("handler", args)
        results[engine] = result
        b1 = result["batch1"]
        progress(
            "handler",
            f"{engine:12} inference b1 p50 {b1['inference']['p50_ms']:6.2f} ms vs engine "
            f"{b1['engine']['p50_ms']:6.2f} ms; b8 {result['batch8_images_per_s']:6.1f} img/s",
        )
    return results


def full_decode(data: bytes, resize: int = 256, crop: int = 224) -> Any:
    """The baseline: Pillow's full-size decode, then the same resize and centre crop (no draft)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    image = image.convert("RGB")
    width, height = image.size
    scale = resize / min(width, height)
    size = (max(resize, int(width * scale)), max(resize, int(height * scale)))
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    return image.crop((left, top, left + crop, top + crop))


def preprocessing_images() -> dict[str, bytes]:
    import images

    return {
        "jpeg_500x375": photo(500, 375, seed=0),
        "jpeg_500x375_flat_drawing": images.jpeg(500, 375, 0),
        "jpeg_1920x1080": photo(1920, 1080, seed=1),
        "jpeg_12mp": photo(4000, 3000, seed=2),
        "png_500x375": photo(500, 375, seed=3, fmt="PNG"),
    }


def stage_preprocessing(plan: Plan, progress: Progress) -> tuple[dict[str, Any], dict[str, bytes]]:
    from squeezenet_handler import images as service
    from squeezenet_handler.signature import read_signature

    pre = read_signature(ROOT / "signature.json").preprocessing
    bodies = preprocessing_images()
    results = {}
    for name, data in bodies.items():
        iterations = plan.large_image_iterations if "12mp" in name else plan.preprocess_iterations
        stats = stats_ms(time_calls(lambda d=data: service.preprocess_image(d, pre), 2, iterations))
        results[name] = {"bytes": len(data), **stats}
        progress("preprocessing", f"{name:28} {len(data) / 1024:8.0f} KiB  p50 {stats['p50_ms']:7.2f} ms")
    baseline = bodies["jpeg_12mp"]
    stats = stats_ms(time_calls(lambda: full_decode(baseline), 1, max(2, plan.large_image_iterations // 2)))
    results["jpeg_12mp_full_decode"] = {"bytes": len(baseline), **stats}
    progress("preprocessing", f"{'jpeg_12mp_full_decode':28} {'':8}      p50 {stats['p50_ms']:7.2f} ms")
    return results, bodies


def stage_startup_inprocess(plan: Plan, inputs: Inputs, progress: Progress) -> dict[str, Any]:
    results = {}
    for role in ("onnx", "mxnet"):
        args = {"model_dir": str(inputs.model_dirs[role]), "image": str(inputs.first_image)}
        runs = [run_child("startup", args)[0] for _ in range(plan.startup_repeats)]
        best = min(runs, key=lambda r: r["total_s"])
        results[role] = {**best, "runs_total_s": [r["total_s"] for r in runs]}
        progress(
            "startup",
            f"in-process, {role:5} archive: load {best['load_s']:.2f} s + first answer "
            f"{best['first_answer_s'] * 1e3:.0f} ms (best of {len(runs)})",
        )
    return results


def stage_mms_startup(plan: Plan, inputs: Inputs, work: Path, progress: Progress) -> dict[str, Any]:
    """Worker start-up through the management API: register (synchronous), ready, first answer."""
    from squeezenet_mar.server import ServerError

    from . import serving

    first = inputs.first_image.read_bytes()
    started = time.perf_counter()
    try:
        server = serving.start_server(work / "mms", inputs.store)
    except ServerError as exc:
        progress("mms", f"skipped: {exc}")
        return {"skipped": str(exc)}
    out: dict[str, Any] = {"server_start_s": round(time.perf_counter() - started, 2)}
    out["startup"] = {}
    progress("mms", f"frontend up in {out['server_start_s']:.1f} s ({server.inference_url})")
    try:
        for role in ("onnx", "mxnet"):
            result = serving.timed_registration(server, inputs.archives[role], role, first)
            out["startup"][role] = result
            progress(
                "startup",
                f"MMS, {role:5} archive: registered (synchronous) {result['register_s']:.2f} s, "
                f"ready {result['ready_s']:.2f} s, first answer {result['first_answer_s'] * 1e3:.0f} ms",
            )
            server.unregister(role)  # frees its worker's cores for the next stage
    finally:
        server.stop()
    return out


def stage_serving(plan: Plan, inputs: Inputs, work: Path, progress: Progress) -> dict[str, Any]:
    """The served configurations side by side (``comparison``), then the worker's CPU per request by
    stage in one process at one thread (``stage_costs``), on the same 500x375 JPEG."""
    from . import comparison
    from .stage_costs import STAGES

    (work / "serving").mkdir()
    result = comparison.compare(
        inputs.model,
        inputs.archives["served"],
        work / "serving",
        plan.concurrency,
        plan.serving_burst_s,
        plan.serving_cycles,
        progress,
    )
    args = {
        "model_dir": str(inputs.model_dirs["onnx"]),
        "image": str(work / "serving" / "photo_500x375.jpg"),
        "iterations": plan.stage_cost_iterations,
    }
    costs, _ = run_child("stage_costs", args, child_env(SQUEEZENET_THREADS="1"))
    result["stage_costs"] = costs
    by_stage = costs["cpu_ms_per_request"]
    stages = ", ".join(f"{k} {by_stage[k]:.2f}" for k in STAGES)
    progress("serving", f"worker CPU per request by stage (ms, 1 thread): {stages}")
    return result


def stage_parity(plan: Plan, inputs: Inputs, work: Path, progress: Progress) -> dict[str, Any]:
    """Issue 23: this project's `serve` next to TorchServe + ONNX Runtime (when ``.venv-torchserve`` is
    there) and next to its own code before the work, start-up and bursts, as paired ratios."""
    from . import parity

    result = parity.measure(
        inputs.model,
        work / "parity",
        plan.concurrency,
        plan.parity_burst_s,
        plan.parity_cycles,
        plan.parity_start_repeats,
        progress,
    )
    for line in parity.table(result).splitlines():
        progress("parity", line)
    return result


def stage_inprocess(plan: Plan, inputs: Inputs, progress: Progress) -> dict[str, Any]:
    results = {}
    for batch_size in (1, 8):
        args = {
            "model_dir": str(inputs.model_dirs["onnx"]),
            "images": [str(p) for p in inputs.e2e_images],
            "batch_size": batch_size,
            "duration_s": plan.inprocess_duration_s,
            "warmup": 2,
        }
        result, _ = run_child("inprocess", args)
        results[f"batch{batch_size}"] = result
        progress(
            "end-to-end",
            f"in-process handler, batch {batch_size}: {result['images_per_s']:6.1f} images/s, "
            f"call p50 {result['call']['p50_ms']:.1f} ms, errors {result['errors']}",
        )
    return results


# ------------------------------------------------------------------------------------------ profiles
def dnnl_profile(inputs: Inputs, batch_size: int, iterations: int) -> dict[str, Any]:
    """oneDNN's own per-primitive times (``DNNL_VERBOSE=1``) for the served MXNet graph."""
    env = child_env(DNNL_VERBOSE="1")
    args = {"variant": "mxnet_optimized", "model": str(inputs.model), "batch_size": batch_size}
    result, stdout = run_child("dnnl_profile", {**args, "iterations": iterations}, env)
    lines = stdout.split(MARK, 1)[-1].splitlines()
    by_kind: dict[str, list[float]] = defaultdict(list)
    ops = []
    for line in lines:
        fields = line.split(",")
        if len(fields) > 5 and fields[0] == "dnnl_verbose" and fields[1] == "exec":
            millis = float(fields[-1])
            by_kind[f"{fields[3]} {fields[4]}"].append(millis)
            ops.append((millis, f"{fields[3]} {fields[4]} {fields[-2]}"))
    per_run = {k: round(sum(v) / iterations, 3) for k, v in by_kind.items()}
    total = sum(per_run.values())
    slowest: dict[str, list[float]] = defaultdict(list)
    for millis, what in ops:
        slowest[what].append(millis)
    top_ops = sorted(((sum(v) / iterations, k) for k, v in slowest.items()), reverse=True)[:6]
    return {
        "batch_size": batch_size,
        "wall_ms_per_forward_while_printing": result["wall_ms_per_forward"],
        "onednn_ms_per_forward": round(total, 3),
        "by_primitive_ms_per_forward": dict(sorted(per_run.items(), key=lambda kv: -kv[1])),
        "slowest_primitives_ms": [{"ms": round(ms, 3), "primitive": what} for ms, what in top_ops],
    }


def profile_missed(report: dict[str, Any], inputs: Inputs, bodies: dict[str, bytes], plan: Plan) -> None:
    """Attach to each missed target what a profile of it shows."""
    from squeezenet_handler import images as service
    from squeezenet_handler.signature import read_signature

    iterations = 5 if plan.quick else 20
    for t in report["targets"]:
        if t["passed"]:
            continue
        name = t["name"]
        if name in ("engine_batch1_latency", "engine_batch8_throughput"):
            batch = 1 if "batch1" in name else 8
            profile = dnnl_profile(inputs, batch, iterations)
            profile["forward_p50_ms"] = report["engines"]["mxnet_optimized"][f"batch{batch}"]["p50_ms"]
            t["profile"] = {"tool": "DNNL_VERBOSE=1 (oneDNN per-primitive times)", **profile}
        elif name.startswith("handler_inference_"):
            engine = name.removeprefix("handler_inference_")
            role = "onnx" if engine == "mxnet" else "onnxruntime"
            args = {"model_dir": str(inputs.model_dirs[role]), "batch_size": 8, "iterations": iterations}
            t["profile"] = {"tool": "cProfile", **run_child("cprofile_inference", args)[0]}
        elif name.startswith("preprocess_"):
            pre = read_signature(ROOT / "signature.json").preprocessing
            data = bodies["jpeg_12mp" if "12mp" in name else "jpeg_500x375"]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(iterations):
                service.preprocess_image(data, pre)
            profiler.disable()
            t["profile"] = {"tool": "cProfile", "top": top_functions(profiler, iterations)}
        elif name.startswith("serving_"):
            t["profile"] = serving_profile(report["serving"], report["machine"]["usable_cores"])


def serving_profile(serving: dict[str, Any], cores: int) -> dict[str, Any]:
    """Where a served request's CPU goes: per stage in the worker, and per configuration the worker's
    and the frontend's CPU per request with the throughput those allow on this machine's cores."""
    ceilings = {}
    for row in serving["rows"]:
        spent = (row["worker_cpu_ms_per_request"] or 0) + (row["frontend_cpu_ms_per_request"] or 0)
        ceilings[f"{row['config']} c={row['concurrency']}"] = {
            "worker_plus_frontend_cpu_ms": round(spent, 2),
            "cpu_bound_ceiling_requests_per_s": round(1e3 * cores / spent, 1) if spent else None,
            "measured_requests_per_s": row["requests_per_s"],
        }
    return {
        "tool": "benchmarks/stage_costs.py (thread CPU per stage, 1 thread) and psutil process times",
        "worker_cpu_ms_per_request_by_stage": serving["stage_costs"]["cpu_ms_per_request"],
        "per_configuration": ceilings,
    }


# ----------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run (~1 min)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for report.json/png")
    parser.add_argument("--skip-mms", action="store_true", help="no Multi Model Server stages")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    progress = Progress()
    started_at = datetime.now(UTC)
    report: dict[str, Any] = {
        "machine": machine(),
        "started": started_at.isoformat(timespec="seconds"),
        "settings": {**asdict(plan), "environment": {k: ORIGINAL_ENV.get(k) for k in THREAD_VARIABLES}},
        "model": MODEL_NOTE,
    }
    load_start = load_average()
    host = report["machine"]
    progress("start", f"{host['cpu_model']}, nproc {host['nproc']}, load average {load_start}")
    args.output.mkdir(parents=True, exist_ok=True)
    interference: dict[str, float] = {}
    report["other_processes_cores"] = interference
    try:
        with LoadMonitor() as monitor, tempfile.TemporaryDirectory(prefix="squeezenet-bench-") as tmp:
            idle_budget = [plan.idle_wait_s]

            def stage(name: str, function: Any, *stage_args: Any, quiet: bool = False) -> Any:
                """Run a stage, if ``quiet`` after waiting (from a budget shared by all stages) for other
                processes to leave the CPUs idle; note how many cores they used meanwhile."""
                if quiet and idle_budget[0] > 0:
                    waited = monitor.wait_until_idle(idle_budget[0])
                    idle_budget[0] -= waited
                    if waited > 1:
                        progress(name, f"waited {waited:.0f} s for other processes to leave the CPUs idle")
                started = time.monotonic()
                result = function(*stage_args)
                interference[name] = monitor.others(started)
                if interference[name] >= 0.2:
                    progress(name, f"note: other processes used {interference[name]:.2f} cores meanwhile")
                return result

            work = Path(tmp)
            inputs = prepare(work, plan, progress)
            os.environ.clear()  # building loaded the handler here; children and MMS get the caller's env
            os.environ.update(ORIGINAL_ENV)
            report["head_to_head"] = stage(
                "head-to-head", stage_head_to_head, plan, inputs, progress, quiet=True
            )
            report["engines"] = stage("engines", stage_engines, plan, inputs, progress, quiet=True)
            report["handler_inference"] = stage("handler", stage_handler, plan, inputs, progress, quiet=True)
            report["preprocessing"], bodies = stage("preprocessing", stage_preprocessing, plan, progress)
            startup = stage("startup", stage_startup_inprocess, plan, inputs, progress)
            report["startup"] = {"inprocess": startup}
            report["end_to_end"] = {}
            if not args.skip_mms:
                served = stage("mms", stage_mms_startup, plan, inputs, work, progress, quiet=True)
                if "skipped" in served:
                    report["end_to_end"]["mms_skipped"] = served["skipped"]
                else:
                    report["startup"]["mms"] = served["startup"]
                    report["end_to_end"]["mms_server_start_s"] = served["server_start_s"]
                    report["serving"] = stage(
                        "serving", stage_serving, plan, inputs, work, progress, quiet=True
                    )
                    report["parity"] = stage("parity", stage_parity, plan, inputs, work, progress, quiet=True)
            inprocess = stage("inprocess", stage_inprocess, plan, inputs, progress, quiet=True)
            report["end_to_end"]["inprocess"] = inprocess
            report["targets"] = compute_targets(report)
            profile_missed(report, inputs, bodies, plan)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    report["load_average"] = {"start": load_start, "end": load_average()}
    report["duration_s"] = round(time.perf_counter() - progress.started, 1)
    report["comparisons"] = comparisons(report)
    json_path, png_path = args.output / "report.json", args.output / "report.png"
    write_json(report, json_path)
    write_plot(report, png_path)
    print()
    print(table(report))
    print()
    print(f"report: {json_path}, {png_path} ({report['duration_s']:.0f} s)")
    return 0


def comparisons(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Pairs of this run's batch-1 p50 latencies worth reading side by side (ms), with their ratio.
    Only measured numbers: no expectation written as text can go stale."""
    engines = report["engines"]

    def b1(variant: str) -> float | None:
        return engines[variant]["batch1"]["p50_ms"] if variant in engines else None

    pairs = [
        (
            "imported graph -> cleaned-up graph, MXNet's threaded engine",
            "mxnet_imported_threaded",
            "mxnet_optimized_threaded",
        ),
        ("imported graph -> served graph, the handler's NaiveEngine", "mxnet_imported", "mxnet_optimized"),
        ("Gluon model_zoo SqueezeNet 1.1 -> served graph", "gluon_zoo", "mxnet_optimized"),
        ("ONNX Runtime -> served graph (MXNet)", "onnxruntime", "mxnet_optimized"),
    ]
    rows = []
    for what, before, after in pairs:
        measured = [b1(before), b1(after)]
        ratio = measured[0] / measured[1] if None not in measured and measured[1] else None
        rows.append(
            {"what": what, "measured_ms": measured, "ratio": None if ratio is None else round(ratio, 2)}
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
