"""What runs in a fresh child process: ``python -m benchmarks.worker TASK '{"json": "args"}'``.

A fresh process per engine gives each the thread settings a serving worker gets (``OMP_NUM_THREADS`` is
read when MXNet loads, ``MXNET_ENGINE_TYPE`` when its engine starts) and keeps other libraries' thread
pools out of its way. Each task prints one ``BENCH-RESULT {json}`` line (see ``common.emit``).
"""

from __future__ import annotations

import cProfile
import ctypes
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .common import CROP, MARK, emit, engine_batch, stats_ms, time_calls, top_functions

MXNET_VARIANTS = (
    "mxnet_imported",
    "mxnet_optimized",
    "mxnet_optimized_no_pad",
    "mxnet_imported_threaded",
    "mxnet_optimized_threaded",
)


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("mxnet", "onnxruntime"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions


def _settings(threads: int) -> dict[str, Any]:
    return {
        "threads": threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MXNET_ENGINE_TYPE": os.environ.get("MXNET_ENGINE_TYPE"),
        **_versions(),
    }


def make_engine(variant: str, model: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """An engine the way the handler builds it, or MXNet Gluon's own SqueezeNet 1.1 (random weights)."""
    from squeezenet_handler import engines as service

    if variant == "onnxruntime":
        return service.OnnxRuntimeEngine(model, "data", threads)
    if variant == "gluon_zoo":
        mx = service.import_mxnet(threads)
        from mxnet.gluon.model_zoo import vision

        net = vision.squeezenet1_1(pretrained=False)
        net.initialize(mx.init.Xavier(magnitude=2.0))
        net.hybridize(static_alloc=True, static_shape=True)
        return lambda batch: net(mx.nd.array(batch)).asnumpy()
    if variant not in MXNET_VARIANTS:
        raise ValueError(f"unknown engine variant {variant!r}")
    optimize = variant.startswith("mxnet_optimized")
    pad = optimize and variant != "mxnet_optimized_no_pad"
    sym, arg_params, aux_params = service.load_mxnet_params("onnx", model, threads, optimize=optimize)
    return service.MXNetEngine(sym, arg_params, aux_params, "data", CROP, pad_channels=pad, threads=threads)


def _latency_and_throughput(call: Callable[[np.ndarray], Any], args: dict[str, Any]) -> dict[str, Any]:
    one, eight = engine_batch(1), engine_batch(8)
    b1 = stats_ms(time_calls(lambda: call(one), args["warmup"], args["iterations_b1"]))
    b8 = stats_ms(time_calls(lambda: call(eight), args["warmup"], args["iterations_b8"]))
    return {"batch1": b1, "batch8": b8, "batch8_images_per_s": round(8000.0 / b8["p50_ms"], 1)}


def task_engine(args: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 latency and batch-8 throughput of one engine variant; its probabilities for 8 images."""
    from squeezenet_handler.engines import default_threads
    from squeezenet_handler.postprocessing import softmax

    threads = default_threads()
    started = time.perf_counter()
    engine = make_engine(args["variant"], Path(args["model"]), threads)
    load_s = time.perf_counter() - started
    result = _latency_and_throughput(engine, args)
    probabilities = softmax(engine(engine_batch(8)))
    return {
        "variant": args["variant"],
        "load_s": round(load_s, 3),
        "probabilities": probabilities.round(9).tolist(),
        **result,
        **_settings(threads),
    }


def task_head_to_head(args: dict[str, Any]) -> dict[str, Any]:
    """ONNX Runtime and the served MXNet engine in one process, timed in alternating blocks (the order
    swapped every round), so that a busy neighbour slows both alike and their ratio stays fair. Each block
    starts after a pause, for the other library's spinning threads to sleep, and one untimed call."""
    from squeezenet_handler.engines import default_threads

    threads = default_threads()
    model = Path(args["model"])
    engines = {name: make_engine(name, model, threads) for name in ("onnxruntime", "mxnet_optimized")}
    batches = {1: engine_batch(1), 8: engine_batch(8)}
    blocks = {1: args["block_b1"], 8: args["block_b8"]}
    for engine in engines.values():
        for batch in batches.values():
            for _ in range(args["warmup"]):
                engine(batch)
    times: dict[str, dict[int, list[float]]] = {name: {1: [], 8: []} for name in engines}
    for round_index in range(args["rounds"]):
        order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
        for name in order:
            for size, batch in batches.items():
                time.sleep(0.05)
                engines[name](batch)
                times[name][size] += time_calls(lambda e=engines[name], b=batch: e(b), 0, blocks[size])
    out: dict[str, Any] = {"rounds": args["rounds"], **_settings(threads)}
    for name, by_size in times.items():
        b8 = stats_ms(by_size[8])
        out[name] = {
            "batch1": stats_ms(by_size[1]),
            "batch8": b8,
            "batch8_images_per_s": round(8000.0 / b8["p50_ms"], 1),
        }
    return out


def _inprocess(model_dir: str, batch_size: int = 8) -> Any:
    from squeezenet_mar.inprocess import InProcessService

    return InProcessService(Path(model_dir), batch_size=batch_size)


def task_handler(args: dict[str, Any]) -> dict[str, Any]:
    """The handler's inference stage (``SqueezeNetService.inference``) and the engine it wraps, timed
    alternately in one process so that both see the same machine."""
    inprocess = _inprocess(args["model_dir"])
    service = inprocess.handler_module("service")._service
    threads = inprocess.handler_module("engines").default_threads()
    out: dict[str, Any] = {"engine_name": service.engine.name, **_settings(threads)}
    for size, iterations in ((1, args["iterations_b1"]), (8, args["iterations_b8"])):
        batch = engine_batch(size)
        for _ in range(args["warmup"]):
            service.engine(batch)
            service.inference(batch)
        engine_times, stage_times = [], []
        for _ in range(iterations):
            started = time.perf_counter()
            service.engine(batch)
            middle = time.perf_counter()
            service.inference(batch)
            stage_times.append(time.perf_counter() - middle)
            engine_times.append(middle - started)
        out[f"batch{size}"] = {"engine": stats_ms(engine_times), "inference": stats_ms(stage_times)}
    out["batch8_images_per_s"] = round(8000.0 / out["batch8"]["inference"]["p50_ms"], 1)
    return out


def task_startup(args: dict[str, Any]) -> dict[str, Any]:
    """A fresh process: handler import, MXNet/ONNX Runtime import, model load, first answer."""
    started = time.perf_counter()
    inprocess = _inprocess(args["model_dir"], batch_size=1)
    loaded = time.perf_counter()
    [answer] = inprocess.predict_bytes([Path(args["image"]).read_bytes()])
    answered = time.perf_counter()
    if answer.status != 200:
        raise RuntimeError(f"first answer was {answer.status}: {answer.body}")
    return {
        "load_s": round(loaded - started, 3),
        "first_answer_s": round(answered - loaded, 4),
        "total_s": round(answered - started, 3),
        "engine_name": inprocess.handler_module("service")._service.engine.name,
    }


def task_inprocess(args: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop throughput of the whole handler (bytes in, top-5 out) on the given images."""
    batch_size = args["batch_size"]
    inprocess = _inprocess(args["model_dir"], batch_size=batch_size)
    bodies = [Path(p).read_bytes() for p in args["images"]]
    calls = 0

    def next_batch() -> list[bytes]:
        nonlocal calls
        first = calls * batch_size
        calls += 1
        return [bodies[(first + i) % len(bodies)] for i in range(batch_size)]

    for _ in range(args["warmup"]):
        inprocess.predict_bytes(next_batch())
    durations, errors = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < args["duration_s"]:
        begin = time.perf_counter()
        answers = inprocess.predict_bytes(next_batch())
        durations.append(time.perf_counter() - begin)
        errors += sum(answer.status != 200 for answer in answers)
    elapsed = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "images_per_s": round(len(durations) * batch_size / elapsed, 1),
        "call": stats_ms(durations),
        "errors": errors,
        "engine_name": inprocess.handler_module("service")._service.engine.name,
    }


def task_dnnl_profile(args: dict[str, Any]) -> dict[str, Any]:
    """Runs the engine with ``DNNL_VERBOSE=1`` (set by the caller): oneDNN prints one line per
    primitive executed; the caller sums the lines printed after the mark."""
    from squeezenet_handler.engines import default_threads

    engine = make_engine(args["variant"], Path(args["model"]), default_threads())
    batch = engine_batch(args["batch_size"])
    for _ in range(3):
        engine(batch)
    ctypes.CDLL(None).fflush(None)  # oneDNN writes through C stdio: flush it before the mark
    print(MARK, flush=True)
    started = time.perf_counter()
    for _ in range(args["iterations"]):
        engine(batch)
    wall = (time.perf_counter() - started) / args["iterations"]
    ctypes.CDLL(None).fflush(None)
    return {"iterations": args["iterations"], "wall_ms_per_forward": round(wall * 1e3, 3)}


def task_cprofile_inference(args: dict[str, Any]) -> dict[str, Any]:
    """cProfile of the handler's inference stage at one batch size (MXNet/ORT time is inside C calls)."""
    inprocess = _inprocess(args["model_dir"])
    service = inprocess.handler_module("service")._service
    batch = engine_batch(args["batch_size"])
    for _ in range(3):
        service.inference(batch)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args["iterations"]):
        service.inference(batch)
    profiler.disable()
    return {"top": top_functions(profiler, args["iterations"])}


def task_stage_costs(args: dict[str, Any]) -> dict[str, Any]:
    """CPU per request of each stage of MMS's worker and the handler (see ``stage_costs``)."""
    from .stage_costs import measure

    return measure(Path(args["model_dir"]), Path(args["image"]).read_bytes(), args["iterations"])


def task_answers(args: dict[str, Any]) -> dict[str, Any]:
    from .answers import inprocess_answers

    return inprocess_answers(Path(args["model_dir"]), [Path(p) for p in args["images"]])


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "engine": task_engine,
    "head_to_head": task_head_to_head,
    "handler": task_handler,
    "startup": task_startup,
    "inprocess": task_inprocess,
    "dnnl_profile": task_dnnl_profile,
    "cprofile_inference": task_cprofile_inference,
    "stage_costs": task_stage_costs,
    "answers": task_answers,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in TASKS:
        print(f"usage: python -m benchmarks.worker {{{','.join(TASKS)}}} JSON_ARGS", file=sys.stderr)
        return 2
    emit(TASKS[argv[0]](json.loads(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
