"""Inference engines: scores for a batch, float32 (N, 3, H, W) in, float32 (N, classes) out.

MXNet (the default, the ONNX file imported into MXNet, or a converted checkpoint) and ONNX Runtime
(an option), the model files they load, and how many threads they use.

The archive ``build`` makes by default ships both model files, named per engine in ``signature.json``
(``engine.model_files``): the ONNX file for ONNX Runtime, and for MXNet the checkpoint converted from
it at build time (the graph already rewritten: a worker skips ``import onnx``, the import and the
rewrite, ~0.4 s of each start). Older archives name one ``engine.model_file``, or none.

Which engine a worker runs (:func:`choose_engine`): ``SQUEEZENET_ENGINE`` when the operator sets it
(exactly that one, or the load fails); else ``signature.json``'s engine, the archive's preference,
when this Python can import it; else the other one that can run the archive's model file. So an
ONNX archive answers on a server whose Python has ONNX Runtime but no MXNet (TorchServe's: MXNet
1.9.1 needs numpy<1.24), with one log line saying which engine and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .cores import CoreTokens, shared_cores, usable_cores
from .errors import ModelLoadError
from .graph import optimize_symbol, pad_output_channels
from .signature import SIGNATURE_FILE, Signature

logger = logging.getLogger(__name__)

ENGINE_VARIABLE = "SQUEEZENET_ENGINE"  # the operator's choice, over signature.json's
ENGINE_NAMES = ("mxnet", "onnxruntime")
INSTALL = {
    "mxnet": "pip install mxnet==1.9.1 (with numpy<1.24)",
    "onnxruntime": "pip install onnxruntime",
}


class Engine(Protocol):
    """Scores for a batch: float32 (N, 3, H, W) in, float32 (N, classes) out."""

    name: str
    threads: int  # the most threads a forward pass runs on

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _positive_env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ModelLoadError(f"environment variable {name}={value!r} is not a whole number") from None
    if number < 1:
        raise ModelLoadError(f"environment variable {name} must be at least 1, got {number}")
    return number


def default_threads() -> int:
    """The most threads a worker's forward pass runs on: ``SQUEEZENET_THREADS``, else every usable core.
    With ``SQUEEZENET_THREADS`` unset, workers share the cores at run time (``cores.CoreTokens``): a
    worker alone uses all of them, busy workers one each. With it set, every forward pass uses exactly
    that many (the operator sizes workers x threads to the machine)."""
    return _positive_env_int("SQUEEZENET_THREADS") or usable_cores()


def core_tokens() -> CoreTokens | None:
    """The cores this worker shares with its neighbours, or None when ``SQUEEZENET_THREADS`` fixes the
    thread count (or the lock folder is unsafe: see ``cores``)."""
    cores = usable_cores()
    if _positive_env_int("SQUEEZENET_THREADS") is not None or cores < 2:
        return None
    return shared_cores(cores)


def free_threads(cores: CoreTokens | None, threads: int) -> contextlib.AbstractContextManager[int]:
    """Around one forward pass: how many threads it may run on. With shared cores, the free spare ones
    up to ``threads`` (held for the block: ``cores.CoreTokens.borrowed``); without, always ``threads``."""
    return cores.borrowed(threads) if cores else contextlib.nullcontext(threads)


def model_file_for(sig: Signature, engine: str) -> str | None:
    """The model file ``engine`` runs: its own entry in ``signature.json``'s ``engine.model_files``
    (an archive that ships the ONNX file for ONNX Runtime and the MXNet checkpoint converted from it
    at build time), else ``engine.model_file``, else None (the one model file in the folder)."""
    if sig.model_files:
        return sig.model_files.get(engine) or sig.model_file
    return sig.model_file


def runnable_engines(sig: Signature, model_dir: Path) -> dict[str, tuple[str, Path]]:
    """Engine name -> (kind, path) of the model file it would run, for each engine that can run one of
    the archive's model files (ONNX Runtime needs an .onnx file; MXNet runs either)."""
    found = {}
    for engine in ENGINE_NAMES:
        if sig.model_files and engine not in sig.model_files and not sig.model_file:
            continue
        kind, path = find_model_files(model_dir, model_file_for(sig, engine))
        if engine == "mxnet" or kind == "onnx":
            found[engine] = (kind, path)
    return found


def find_model_files(model_dir: Path, model_file: str | None) -> tuple[str, Path]:
    """('onnx', file.onnx) or ('mxnet', prefix) for ``prefix-symbol.json`` + ``prefix-0000.params``."""
    if model_file:
        path = model_dir / model_file
        if model_file.endswith("-symbol.json"):
            prefix = model_dir / model_file[: -len("-symbol.json")]
            if not path.is_file() or not Path(f"{prefix}-0000.params").is_file():
                raise ModelLoadError(f"{model_file}: MXNet symbol or its -0000.params is missing")
            return "mxnet", prefix
        if not path.is_file():
            raise ModelLoadError(f"{model_file}: model file named in {SIGNATURE_FILE} is missing")
        return "onnx", path
    onnx_files = sorted(model_dir.glob("*.onnx"))
    symbols = sorted(model_dir.glob("*-symbol.json"))
    if len(onnx_files) + len(symbols) != 1:
        found = [p.name for p in onnx_files + symbols] or "none"
        raise ModelLoadError(
            f"{model_dir}: expected exactly one *.onnx or *-symbol.json model, found {found}"
        )
    if onnx_files:
        return "onnx", onnx_files[0]
    return find_model_files(model_dir, symbols[0].name)


def import_mxnet(threads: int) -> Any:
    """MXNet set up for a serving worker: one forward pass at a time on ``threads`` OpenMP threads.

    - ``OMP_NUM_THREADS`` is read once, when MXNet loads libgomp; oneDNN's kernels run on that many
      threads. It is overwritten, not defaulted: a value inherited from the parent (the MMS frontend,
      a test process) would otherwise beat ``SQUEEZENET_THREADS`` or the usable cores.
    - ``MXNET_ENGINE_TYPE=NaiveEngine`` (unless set): operators run in the calling thread. The default
      threaded engine hands every operator to an engine thread and back; on 2 cores that is about half
      of a batch-1 forward pass (6.5 ms -> 3.4 ms), and a worker gains nothing from its asynchrony: each
      batch is one forward pass whose result is awaited at once.
    - ``GOMP_SPINCOUNT=10000`` (unless it or ``OMP_WAIT_POLICY`` is set): how long an idle OpenMP thread
      spins before it sleeps. libgomp's 300000 suits an idle machine, but when another process takes a
      core (the MMS frontend, a neighbour), the spinning thread keeps the preempted one from running and
      every one of a forward pass's barriers waits for a time slice. Measured on 2 cores with one core
      kept busy, batch-1 p50 / p90: 12-57 / 117-167 ms with 300000, 16 / 17 ms with 10000 (3000: 9 ms,
      1000: 7 ms, ONNX Runtime 7 ms); on an idle machine 10000 costs ~5% at batch 8, 3000 ~9%, 1000 35%
      at batch 1.
    - ``MXSetNumOMPThreads`` also applies ``threads`` to the calling thread when MXNet was imported
      before (the archive builder, in-process use); the engine type is then whatever that import chose.
    """
    import sys

    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # read at each bind: no "MKLDNN is activated"
    if "mxnet" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
        os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")  # used only by the threaded engines
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        import mxnet as mx
    except ImportError as exc:
        raise ModelLoadError(
            f"engine 'mxnet' needs the mxnet package: pip install mxnet==1.9.1 ({exc})"
        ) from exc
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
    return mx


def load_mxnet_params(kind: str, path: Path, threads: int, optimize: bool = True) -> tuple[Any, dict, dict]:
    """(symbol, arg_params, aux_params) from an ONNX file or an MXNet checkpoint; the symbol passed
    through :func:`optimize_symbol` unless ``optimize`` is False (benchmarks compare both)."""
    mx = import_mxnet(threads)
    try:
        if kind == "onnx":
            from mxnet.contrib import onnx as onnx_mxnet

            # A fresh NameManager: unnamed nodes get the same names on every import, so a converted
            # checkpoint is byte-for-byte reproducible. The importer's deprecation chatter goes to
            # stdout; keep it out of the CLI's output and the worker's log.
            with mx.name.NameManager(), contextlib.redirect_stdout(io.StringIO()) as chatter:
                sym, arg_params, aux_params = onnx_mxnet.import_model(str(path))
            logger.debug("onnx import: %s", chatter.getvalue().strip())
        else:
            sym, arg_params, aux_params = mx.model.load_checkpoint(str(path), 0)
    except Exception as exc:  # MXNet and onnx raise many unrelated types for a corrupt file
        raise ModelLoadError(f"{path.name}: cannot load the model: {type(exc).__name__}: {exc}") from exc
    if optimize:
        sym = optimize_symbol(sym)
    return sym, arg_params, aux_params


class MXNetEngine:
    """The symbol bound for one image per thread count (on demand), all executors sharing one set of
    weights; a batch runs image by image.

    Binding runs MXNet's MKLDNN subgraph pass (convolution + ReLU fusion); the first forward pass of
    each thread count pays for it and for oneDNN's kernel creation (20-45 ms on 2 cores). oneDNN fixes
    a kernel's thread count when it creates it, so each thread count gets an executor of its own;
    ``cores`` decides, per batch, how many of ``threads`` are free (None: always ``threads``).

    Why one image at a time: on the 2-core machine of the README a batch-8 pass costs as much per image
    as eight batch-1 passes (4.39 against 4.4 ms at 2 threads; 8.34 against 7.29 ms at 1 thread), and
    every batch size bound would be an executor of its own, 5-18 MB each. MMS's batching still pays
    (its frontend and protocol costs are per call).

    The classifier is widened for oneDNN first (:func:`pad_output_channels`) unless ``pad_channels``
    is False. Measured alternatives (2 cores, cleaned-up graph, batch 1 / batch 8): a hybridized
    ``SymbolBlock`` with static_alloc and static_shape 3.8 / 28 ms against 3.4 / 25 ms here; binding
    ``get_backend_symbol('MKLDNN')`` by hand changes nothing (bind already partitions the graph).
    """

    name = "mxnet"

    def __init__(
        self,
        sym: Any,
        arg_params: dict,
        aux_params: dict,
        input_name: str,
        crop: int,
        pad_channels: bool = True,
        threads: int | None = None,
        cores: CoreTokens | None = None,
    ) -> None:
        import mxnet as mx

        self._mx = mx
        data_inputs = [n for n in sym.list_inputs() if n not in arg_params and n not in aux_params]
        if data_inputs != [input_name]:
            raise ModelLoadError(f"model data inputs are {data_inputs}, signature expects [{input_name!r}]")
        missing = [n for n in sym.list_arguments() if n != input_name and n not in arg_params]
        if missing:
            raise ModelLoadError(f"model weights missing for {missing}")
        if pad_channels:
            sym, arg_params = pad_output_channels(sym, arg_params, input_name, (1, 3, crop, crop))
        self._sym = sym
        self._input_name = input_name
        self._args = {k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
        self._aux = {k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()}
        self._crop = crop
        self.threads = threads or default_threads()  # the most a forward pass runs on
        self._cores = cores
        self._executors: dict[int, Any] = {}  # thread count -> executor for one image

    def _executor(self, threads: int) -> Any:
        if threads not in self._executors:
            mx = self._mx
            args = dict(self._args, **{self._input_name: mx.nd.zeros((1, 3, self._crop, self._crop))})
            # Never run at the same time, so they may share their intermediate buffers (6 MB of the
            # second executor's 13.5 MB, measured; same answers to the bit).
            shared = next(iter(self._executors.values()), None)
            self._executors[threads] = self._sym.bind(
                mx.cpu(),
                args=[args[n] for n in self._sym.list_arguments()],
                aux_states=[self._aux[n] for n in self._sym.list_auxiliary_states()],
                grad_req="null",
                shared_exec=shared,
            )
        return self._executors[threads]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with free_threads(self._cores, self.threads) as threads:
            # oneDNN creates a new executor's kernels for this many threads, and keeps them.
            self._mx.base.check_call(self._mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
            executor = self._executor(threads)
            scores = [
                executor.forward(is_train=False, **{self._input_name: batch[i : i + 1]})[0].asnumpy()
                for i in range(batch.shape[0])
            ]
        return np.concatenate(scores).reshape(batch.shape[0], -1)


class OnnxRuntimeEngine:
    """ONNX Runtime on the ONNX file, one session per thread count (on demand; ``cores`` as for MXNet);
    a batch larger than the model's fixed batch dim runs in slices."""

    name = "onnxruntime"

    def __init__(self, path: Path, input_name: str, threads: int, cores: CoreTokens | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelLoadError(
                "engine 'onnxruntime' needs the onnxruntime package: pip install onnxruntime"
            ) from exc
        self._ort = onnxruntime
        self._path = path
        self._input_name = input_name
        self.threads = threads
        self._cores = cores
        self._sessions: dict[int, Any] = {}
        session = self._session(threads)
        inputs = [i for i in session.get_inputs() if i.name == input_name]
        if not inputs:
            raise ModelLoadError(f"{path.name}: no input named {input_name!r}")
        dim0 = inputs[0].shape[0]
        self._fixed_batch = dim0 if isinstance(dim0, int) else None

    def _session(self, threads: int) -> Any:
        if threads not in self._sessions:
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = threads  # 1: no pool, runs in the calling thread
            options.inter_op_num_threads = 1
            # Pool threads block between runs instead of spinning: by default a pool spins for a while
            # after each run, on the core the neighbouring worker (or the frontend) needs, and two
            # workers taking turns burned 40.6 ms of worker CPU per request at c=1 against MXNet's 17.2
            # (issue 23); without spinning ~10 ms (benchmarks/parity.py).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            options.log_severity_level = 3  # zoo files list weights as inputs: one warning per weight
            try:
                self._sessions[threads] = self._ort.InferenceSession(
                    str(self._path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
                raise ModelLoadError(f"{self._path.name}: onnxruntime cannot load the model: {exc}") from exc
        return self._sessions[threads]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with free_threads(self._cores, self.threads) as threads:
            session = self._session(threads)
            step = self._fixed_batch or batch.shape[0]
            parts = [
                session.run(None, {self._input_name: batch[i : i + step]})[0]
                for i in range(0, batch.shape[0], step)
            ]
        return np.concatenate(parts).reshape(batch.shape[0], -1)


def load_engine(
    name: str,
    model_dir: Path,
    sig: Signature,
    threads: int,
    cores: CoreTokens | None = None,
) -> Engine:
    kind, path = find_model_files(model_dir, model_file_for(sig, name))
    pre = sig.preprocessing
    if name == "onnxruntime":
        if kind != "onnx":
            raise ModelLoadError(f"{path.name}: engine 'onnxruntime' needs an .onnx model file")
        return OnnxRuntimeEngine(path, pre.input_name, threads, cores)
    if name != "mxnet":
        raise ModelLoadError(f"{SIGNATURE_FILE}: unknown engine {name!r} (mxnet or onnxruntime)")
    sym, arg_params, aux_params = load_mxnet_params(kind, path, threads)
    return MXNetEngine(
        sym,
        arg_params,
        aux_params,
        pre.input_name,
        pre.crop_size,
        threads=threads,
        cores=cores,
    )


def engine_import_problem(name: str, threads: int) -> str | None:
    """Why this Python cannot run engine ``name`` (its import's error), or None when it can. MXNet is
    looked for before it is imported (:func:`import_mxnet` sets its threads up first); an installed
    but broken one (MXNet 1.9.1 under numpy >= 1.24 fails on ``np.bool``) counts as missing."""
    module = "mxnet" if name == "mxnet" else "onnxruntime"
    if module not in sys.modules and importlib.util.find_spec(module) is None:
        return f"No module named {module!r}"
    try:
        if name == "mxnet":
            import_mxnet(threads)
        else:
            import onnxruntime  # noqa: F401
    except ModelLoadError as exc:
        return str(exc.__cause__ or exc)
    except Exception as exc:  # a broken installation raises whatever its import hits
        return f"{type(exc).__name__}: {exc}"
    return None


def choose_engine(sig: Signature, model_dir: Path, threads: int, env: dict[str, str] | None = None) -> str:
    """The engine this worker runs (see the module docstring), logged in one line with the reason;
    ModelLoadError naming what to install when no engine that runs the archive's model is importable."""
    env = dict(os.environ) if env is None else env
    files = runnable_engines(sig, model_dir)
    runnable = tuple(files)  # ONNX Runtime needs an .onnx file
    if not files:
        listed = ", ".join(sorted(sig.model_files))
        raise ModelLoadError(f"{SIGNATURE_FILE}: engine.model_files names no known engine ({listed})")
    kind, path = files.get(sig.engine) or next(iter(files.values()))
    model_file = path.name if kind == "onnx" else f"{path.name}-symbol.json"
    where = f"this Python ({sys.executable})"
    forced = env.get(ENGINE_VARIABLE, "").strip()
    if forced:
        if forced not in ENGINE_NAMES:
            raise ModelLoadError(f"{ENGINE_VARIABLE}={forced!r}: unknown engine (mxnet or onnxruntime)")
        if forced not in runnable:
            raise ModelLoadError(
                f"{ENGINE_VARIABLE}={forced}: {model_file} is an MXNet checkpoint, which only mxnet runs"
            )
        problem = engine_import_problem(forced, threads)
        if problem is not None:
            raise ModelLoadError(
                f"{ENGINE_VARIABLE}={forced}, but {where} cannot import it: {INSTALL[forced]} ({problem})"
            )
        logger.info("squeezenet: engine %s, as %s=%s asks", forced, ENGINE_VARIABLE, forced)
        return forced
    preferred = sig.engine
    if preferred not in runnable:
        return preferred  # load_engine names the problem (an unknown engine, a missing .onnx file)
    problems: dict[str, str] = {}
    for name in (preferred, *(other for other in runnable if other != preferred)):
        problem = engine_import_problem(name, threads)
        if problem is not None:
            problems[name] = problem
            continue
        if name == preferred:
            logger.info("squeezenet: engine %s, the one %s prefers", name, SIGNATURE_FILE)
        else:
            logger.warning(
                "squeezenet: engine %s, because %s prefers %s, which %s cannot import (%s)",
                name,
                SIGNATURE_FILE,
                preferred,
                where,
                problems[preferred],
            )
        return name
    install = " or ".join(INSTALL[name] for name in reversed(runnable))
    causes = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
    names = [
        p.name if k == "onnx" else f"{p.name}-symbol.json" for k, p in (files[n] for n in reversed(runnable))
    ]
    model_files = " or ".join(dict.fromkeys(names))  # the ONNX file first: what ONNX Runtime would run
    raise ModelLoadError(f"no inference engine for {model_files} in {where}: {install} ({causes})")
