"""The engines the handler runs: MXNet on the cleaned-up imported graph (``optimize_symbol``), ONNX
Runtime, and the thread settings both get. Real models, real inference; no timings asserted here (the
speed is measured by ``python -m benchmarks.run``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import images
from harness import ROOT
from squeezenet_handler.cores import CoreTokens, usable_cores
from squeezenet_handler.engines import (
    MXNetEngine,
    OnnxRuntimeEngine,
    default_threads,
    load_mxnet_params,
)
from squeezenet_handler.errors import ModelLoadError
from squeezenet_handler.graph import optimize_symbol, pad_output_channels
from squeezenet_handler.postprocessing import softmax
from squeezenet_mar.build import BuildOptions, build_archive
from squeezenet_mar.inprocess import InProcessService
from squeezenet_onnx import pattern_images, reference_probabilities

LABELS = (ROOT / "synset.txt").read_text().splitlines()


def ops(sym) -> list[dict]:
    return [node for node in json.loads(sym.tojson())["nodes"] if node["op"] != "null"]


def zero_pads(sym) -> list[str]:
    return [
        node["name"]
        for node in ops(sym)
        if node["op"] == "Pad" and not any(int(v) for v in node["attrs"]["pad_width"].strip("()").split(","))
    ]


@pytest.fixture(scope="module")
def imported(onnx_model: Path):
    """(symbol as MXNet's ONNX importer returns it, arg_params, aux_params)."""
    return load_mxnet_params("onnx", onnx_model, threads=1, optimize=False)


@pytest.fixture(scope="module")
def optimized_engine(imported) -> MXNetEngine:
    sym, arg_params, aux_params = imported
    return MXNetEngine(optimize_symbol(sym), arg_params, aux_params, "data", 224)


# ---------------------------------------------------------------------------------- optimize_symbol
def test_the_imported_graph_has_what_the_rewrite_removes(imported):
    """The premise: bare relu operators and all-zero Pads before every pooling."""
    sym = imported[0]
    assert sum(node["op"] == "relu" for node in ops(sym)) == 26
    assert len(zero_pads(sym)) == 4


def test_optimized_graph_has_no_bare_relu_no_zero_pad_no_dropout(imported):
    sym = optimize_symbol(imported[0])
    kinds = [node["op"] for node in ops(sym)]
    assert "relu" not in kinds and "Dropout" not in kinds and not zero_pads(sym)
    activations = [node for node in ops(sym) if node["op"] == "Activation"]
    assert len(activations) == 26 and {n["attrs"]["act_type"] for n in activations} == {"relu"}
    assert kinds.count("Convolution") == 26 and kinds.count("Pooling") == 4
    assert sym.list_arguments() == imported[0].list_arguments()  # the same weights bind to it
    assert sym.list_outputs() == imported[0].list_outputs()


def test_optimize_symbol_is_idempotent(imported):
    """A converted checkpoint (already optimized) is optimized again at load: nothing changes."""
    once = optimize_symbol(imported[0])
    assert optimize_symbol(once).tojson() == once.tojson()


@pytest.mark.parametrize("batch_size", [1, 8])
def test_optimized_graph_matches_onnxruntime(optimized_engine, onnx_model, batch_size):
    batch = pattern_images(seed=batch_size)[:batch_size]
    got = softmax(optimized_engine(batch))
    expected = reference_probabilities(onnx_model, batch)
    assert got.shape == (batch_size, 1000)
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_optimize_symbol_keeps_what_is_not_an_identity():
    """Padding that pads, and a Dropout that drops at inference (mode 'always'), stay; relu still
    becomes Activation; the rewritten graph computes what the original does."""
    import mxnet as mx

    data = mx.sym.var("data")
    x = mx.sym.Pad(data, mode="constant", pad_width=(0, 0, 0, 0, 0, 0, 0, 0), name="nothing")
    x = mx.sym.relu(x, name="r")
    x = mx.sym.Pad(x, mode="constant", pad_width=(0, 0, 0, 0, 1, 1, 2, 2), constant_value=0.5, name="pads")
    x = mx.sym.Dropout(x, p=0.5, name="train_only")
    kept = mx.sym.Dropout(x, p=0.5, mode="always", name="always")
    sym = optimize_symbol(x)
    assert [(n["name"], n["op"]) for n in ops(sym)] == [("r", "Activation"), ("pads", "Pad")]
    assert [n["name"] for n in ops(optimize_symbol(kept))] == ["r", "pads", "always"]
    values = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 4, 5)))
    before = x.bind(mx.cpu(), {"data": values}).forward(is_train=False)[0].asnumpy()
    after = sym.bind(mx.cpu(), {"data": values}).forward(is_train=False)[0].asnumpy()
    assert before.shape == (2, 3, 6, 9)
    np.testing.assert_array_equal(before, after)


def conv_filters(sym) -> list[int]:
    return [int(n["attrs"]["num_filter"]) for n in ops(sym) if n["op"] == "Convolution"]


def test_the_classifier_is_widened_to_1008_channels_and_sliced_back(imported):
    sym, arg_params, _ = imported
    cleaned = optimize_symbol(sym)
    wide, padded = pad_output_channels(cleaned, arg_params, "data", (1, 3, 224, 224))
    assert conv_filters(wide)[-1] == 1008 and conv_filters(wide)[:-1] == conv_filters(cleaned)[:-1]
    assert padded["squeezenet0_conv25_weight"].shape == (1008, 512, 1, 1)
    assert not padded["squeezenet0_conv25_weight"].asnumpy()[1000:].any()
    assert arg_params["squeezenet0_conv25_weight"].shape == (1000, 512, 1, 1)  # the caller's dict untouched
    assert ops(wide)[-1]["op"] == "slice_axis"
    assert wide.infer_shape(data=(2, 3, 224, 224))[1] == [(2, 1000)]


def test_widening_gives_the_same_scores_and_leaves_other_graphs_alone():
    import mxnet as mx

    rng = np.random.RandomState(1)
    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, kernel=(1, 1), num_filter=10, name="classifier")
    pooled = mx.sym.Flatten(mx.sym.Pooling(mx.sym.relu(conv), kernel=(3, 3), pool_type="avg"))
    params = {
        "classifier_weight": mx.nd.array(rng.normal(size=(10, 4, 1, 1))),
        "classifier_bias": mx.nd.array(rng.normal(size=10)),
    }
    wide, padded = pad_output_channels(pooled, params, "data", (1, 4, 3, 3))
    assert conv_filters(wide) == [16]
    values = mx.nd.array(rng.normal(size=(2, 4, 3, 3)))
    before = pooled.bind(mx.cpu(), {"data": values, **params}).forward()[0].asnumpy()
    after = wide.bind(mx.cpu(), {"data": values, **padded}).forward()[0].asnumpy()
    assert after.shape == (2, 10)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    # Flatten of a 3x3 map mixes channels with positions: not widened.
    flat = mx.sym.Flatten(mx.sym.relu(conv))
    assert pad_output_channels(flat, params, "data", (1, 4, 3, 3))[0].tojson() == flat.tojson()
    # Already a multiple of 16: nothing to do.
    assert pad_output_channels(wide, padded, "data", (1, 4, 3, 3))[0].tojson() == wide.tojson()


def test_the_mxnet_format_archive_ships_the_optimized_graph(tmp_path, onnx_model):
    result = build_archive(
        BuildOptions(
            model_file=onnx_model,
            output=tmp_path / "mx.mar",
            format="mxnet",
            smoke_test=False,
            progress=False,
        )
    )
    with zipfile.ZipFile(result.archive) as archive:
        graph = json.loads(archive.read("squeezenet1.1-symbol.json"))
    kinds = {node["op"] for node in graph["nodes"]}
    assert "relu" not in kinds and "Pad" not in kinds and "Dropout" not in kinds
    assert "Activation" in kinds


# ------------------------------------------------------------------------------------- onnxruntime
@pytest.fixture(scope="module")
def onnxruntime_dir(tmp_path_factory, onnx_model: Path) -> Path:
    """The archive built with ``--engine onnxruntime``, unpacked."""
    store = tmp_path_factory.mktemp("ort_store")
    result = build_archive(
        BuildOptions(model_file=onnx_model, output=store / "ort.mar", engine="onnxruntime", progress=False)
    )
    folder = tmp_path_factory.mktemp("ort_unpacked")
    with zipfile.ZipFile(result.archive) as archive:
        archive.extractall(folder)
    return folder


def distribution(answer) -> np.ndarray:
    assert answer.status == 200, answer.body
    out = np.zeros(len(LABELS))
    for row in answer.body:
        out[LABELS.index(row["class"])] = row["probability"]
    return out


def test_the_onnxruntime_engine_answers_like_mxnet(onnxruntime_dir, service):
    ort_service = InProcessService(onnxruntime_dir, batch_size=8)
    assert ort_service.handler_module("service")._service.engine.name == "onnxruntime"
    assert service.handler_module("service")._service.engine.name == "mxnet"
    bodies = [images.jpeg(500, 375, seed) for seed in range(3)] + [images.png()]
    got = [distribution(a) for a in ort_service.predict_bytes(bodies, topk=1000)]
    expected = [distribution(a) for a in service.predict_bytes(bodies, topk=1000)]
    assert np.abs(np.array(got) - np.array(expected)).max() <= 1e-5


def test_without_onnxruntime_or_mxnet_the_load_fails_naming_the_package(onnxruntime_dir):
    """A real import failure in a fresh interpreter (the packages made unimportable), not a mock. With
    MXNet there, an archive preferring onnxruntime loads on MXNet instead (tests/test_engine_choice.py)."""
    script = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None  # 'import onnxruntime' now raises ImportError\n"
        "sys.modules['mxnet'] = None\n"
        "from pathlib import Path\n"
        "from squeezenet_mar.inprocess import InProcessService\n"
        "try:\n"
        "    InProcessService(Path(sys.argv[1]))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, getattr(exc, 'status', None), exc)\n"
        "else:\n"
        "    print('loaded')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(onnxruntime_dir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("ModelLoadError 503 ")
    assert "pip install onnxruntime" in last


# ----------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize(("env", "expected"), [({"SQUEEZENET_THREADS": "3"}, 3), ({}, usable_cores())])
def test_default_threads(monkeypatch, env, expected):
    monkeypatch.delenv("SQUEEZENET_THREADS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_threads() == expected


def test_a_worker_alone_borrows_every_core_and_busy_workers_take_one_each(tmp_path):
    """Two CoreTokens on one folder are two workers (flock locks belong to open files, not processes).
    A worker borrows only cores that no live worker calls home: alone it takes both, beside a
    neighbour it keeps to its own even while the neighbour is idle, and takes both again once the
    neighbour is gone."""
    first = CoreTokens(2, tmp_path, spare_check_every=0)
    with first.working(), first.borrowed(2) as threads:
        assert threads == 2
    second = CoreTokens(2, tmp_path, spare_check_every=0)
    assert {first.worker, second.worker} == {0, 1}
    with first.working(), first.borrowed(2) as threads:
        assert threads == 1  # core 1 is the idle neighbour's home
    with first.working(), second.working():
        with first.borrowed(2) as one, second.borrowed(2) as other:
            assert (one, other) == (1, 1)
    second.close()
    with first.working(), first.borrowed(2) as threads:
        assert threads == 2  # everything was released, the neighbour is gone
    third = CoreTokens(2, tmp_path, spare_check_every=0)
    assert third.worker == 1  # the free number, whose home core is the free one
    first.close()
    third.close()


def test_the_mxnet_engine_runs_each_thread_count_on_executors_of_its_own(onnx_model, tmp_path):
    """oneDNN fixes a kernel's thread count when it creates it: a 2-thread forward pass (a worker
    alone) and a 1-thread one (beside a neighbour) run on different executors, with the same scores."""
    cores = CoreTokens(2, tmp_path, spare_check_every=0)
    engine = MXNetEngine(*load_mxnet_params("onnx", onnx_model, 2), "data", 224, threads=2, cores=cores)
    batch = pattern_images(1)[:1]
    with cores.working():
        alone = engine(batch)
    neighbour = CoreTokens(2, tmp_path, spare_check_every=0)
    with cores.working():
        shared = engine(batch)
    assert sorted(engine._executors) == [1, 2]
    assert np.abs(alone - shared).max() <= 1e-6
    neighbour.close()
    cores.close()


def test_onnxruntime_sessions_never_spin_between_runs(onnx_model, tmp_path):
    """ONNX Runtime's pool threads spin after every run by default, on the core a neighbouring worker
    needs; every session (one per thread count) is made with spinning off, intra- and inter-op."""
    cores = CoreTokens(2, tmp_path, spare_check_every=0)
    engine = OnnxRuntimeEngine(onnx_model, "data", 2, cores)
    with cores.working():
        engine(pattern_images(1)[:1])  # alone: both cores
    neighbour = CoreTokens(2, tmp_path, spare_check_every=0)
    with cores.working():
        engine(pattern_images(1)[:1])  # beside a neighbour: its own core
    neighbour.close()
    cores.close()
    assert sorted(engine._sessions) == [1, 2]
    for session in engine._sessions.values():
        options = session.get_session_options()
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            assert options.get_session_config_entry(key) == "0"


def test_the_default_archive_starts_mxnet_from_its_checkpoint_without_onnx(tmp_path, onnx_model):
    """``build``'s default archive ships the ONNX file and the MXNet checkpoint converted from it: in a
    fresh worker-like process MXNet loads the checkpoint (MXNet's ONNX importer, made to fail there,
    is never called), ONNX Runtime the ONNX file, with the same answers."""
    result = build_archive(BuildOptions(model_file=onnx_model, output=tmp_path / "d.mar", progress=False))
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(result.archive) as archive:
        archive.extractall(folder)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "if sys.argv[3] == 'mxnet':\n"
        "    import squeezenet_handler.engines as engines\n"
        "    from mxnet.contrib import onnx as importer\n"
        "    def refuse(*args, **kwargs):\n"
        "        raise RuntimeError('the ONNX importer was called')\n"
        "    importer.import_model = refuse\n"
        "from squeezenet_mar.inprocess import InProcessService\n"
        "service = InProcessService(Path(sys.argv[1]))\n"
        "[answer] = service.predict_bytes([Path(sys.argv[2]).read_bytes()], topk=1000)\n"
        "print(json.dumps({'engine': service.handler_module('service')._service.engine.name,\n"
        "                  'answer': answer.body}))\n"
    )
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images.jpeg(500, 375, 5))
    answers = {}
    for engine in ("mxnet", "onnxruntime"):
        env = dict(os.environ, SQUEEZENET_ENGINE=engine)
        proc = subprocess.run(
            [sys.executable, "-c", script, str(folder), str(photo), engine],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        answers[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert answers[engine]["engine"] == engine
    got = {row["class"]: row["probability"] for row in answers["mxnet"]["answer"]}
    expected = {row["class"]: row["probability"] for row in answers["onnxruntime"]["answer"]}
    assert max(abs(got[name] - expected[name]) for name in expected) <= 1e-5


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_bad_thread_settings_fail_the_load_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("SQUEEZENET_THREADS", value)
    with pytest.raises(ModelLoadError, match="SQUEEZENET_THREADS"):
        default_threads()


@pytest.mark.parametrize("threads", ["1", "2"])
def test_mxnet_runs_on_the_configured_threads(onnx_model, threads):
    """In a fresh worker-like process: an inherited OMP_NUM_THREADS does not win over the handler's
    setting, and OpenMP (which oneDNN runs on) reports the configured count in the inference thread."""
    script = (
        "import ctypes, os, sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "import squeezenet_handler.engines as s\n"
        "threads = s.default_threads()\n"
        "params = s.load_mxnet_params('onnx', Path(sys.argv[1]), threads)\n"
        "engine = s.MXNetEngine(*params, 'data', 224, threads=threads)\n"
        "engine(np.zeros((1, 3, 224, 224), np.float32))\n"
        "omp = ctypes.CDLL('libgomp.so.1').omp_get_max_threads()\n"
        "print(threads, omp, os.environ['OMP_NUM_THREADS'], os.environ['MXNET_ENGINE_TYPE'],\n"
        "      os.environ['GOMP_SPINCOUNT'])\n"
    )
    env = dict(os.environ, SQUEEZENET_THREADS=threads, OMP_NUM_THREADS="7")
    for name in ("MXNET_ENGINE_TYPE", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(onnx_model)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [threads, threads, threads, "NaiveEngine", "10000"]
