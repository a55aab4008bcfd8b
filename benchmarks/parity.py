"""This project's server next to TorchServe + ONNX Runtime, and next to itself before the issue-23 work,
measured the way issue 23 measured them: ``python -m benchmarks.parity [--cycles N] [--seconds S]``.

Every configuration runs as it is deployed, through its own command:

- ``now``: ``squeezenet-mar serve`` (nginx in front of MMS, supervised) with its defaults, on the archive
  ``squeezenet-mar build`` makes by default (the ONNX file and the MXNet checkpoint converted from it);
- ``now_mms_direct``: the same running stack, asked on MMS's own address behind nginx: what the nginx
  hop costs, with no server of its own;
- ``now_onnxruntime``: ``serve`` with ``SQUEEZENET_ENGINE=onnxruntime`` (the ONNX file, ONNX Runtime);
- ``before``: the code at :data:`BEFORE_COMMIT` (the issue's baseline: its ``serve``, its builder's
  default archive), taken from git history and run with this virtualenv; ``before_onnxruntime``: the
  same with its archive built ``--engine onnxruntime``;
- ``torchserve_tuned``: TorchServe 0.12 (``.venv-torchserve``, no MXNet: the archive runs on ONNX
  Runtime there) with one worker per core and one ONNX Runtime thread per worker
  (``SQUEEZENET_THREADS=1``: no thread pool at all), the archive loaded at start;
- ``torchserve_default``: the same TorchServe with its defaults (one worker per core, the handler's own
  thread sharing);
- ``stock_mms`` (only when named: ``--only now,stock_mms,torchserve_default``): a stock MMS 1.1.11,
  ``multi-model-server --start --foreground`` with only its two addresses configured and the archive
  loaded at start, its default workers, JVM and logging (README "Other servers").

Before the bursts, every configuration's top-5 for three real images is checked against the archive's
handler on ONNX Runtime in a child process and against each other (``benchmarks/answers.py``).

Start-up: each configuration alone on the machine, from the launch of its command to its first
``200`` for the 500x375 JPEG (polled every 20 ms), the order alternated over ``--start-repeats`` rounds.
Then all of them up at once, ``ab -k`` bursts of the JPEG alternated between them at each concurrency,
over ``--cycles`` cycles (every other one in reverse order), so that the drift of a shared machine falls
on all alike. Per burst: requests/s, p50, p99 (ab's whole milliseconds), and the CPU per answered
request of the Python workers, of the Java frontend and of the whole stack (nginx and the supervisor
included), from their own process times. The result: per configuration its means, and per cycle its
*paired ratio* to ``torchserve_tuned`` (and ``now`` to ``before``, each engine; ``stock_mms`` and
``torchserve_default`` to ``now``), with the mean, the spread (min-max) and the standard error of those
ratios. Numbers only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from .answers import answer_images, judge, reference_answers, served_answers
from .common import ROOT, TESTS, BenchmarkError, environment_kept, photo
from .comparison import ab_available, ab_burst, python_burst

BEFORE_COMMIT = "7d5e790"  # issue 23's baseline
REFERENCE = "torchserve_tuned"
MODEL = "squeezenet"
POLL_S = 0.02
BEFORE_FILES = ("archive", "handler", "config.properties", "signature.json", "synset.txt")


def torchserve_missing() -> str | None:
    """Why TorchServe cannot run here, or None (``tests/torchserve.py`` decides)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from torchserve import torchserve_missing as missing

    return missing()


# ------------------------------------------------------------------------------------------ running
@dataclass
class Running:
    """One started configuration: where to ask it, its processes, how to stop it."""

    name: str
    url: str  # .../predictions/squeezenet
    root: psutil.Process  # every process of the configuration descends from it (or is it)
    stop: Callable[[], None]
    started_s: float  # launch to first 200
    extra: dict[str, Any] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return [self.root, *self.root.children(recursive=True)]
        return []

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far: the Python workers, the Java frontend, everything."""
        spent = {"worker": 0.0, "frontend": 0.0, "stack": 0.0}
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                seconds = times.user + times.system
                spent["stack"] += seconds
                if proc.name() == "java":
                    spent["frontend"] += seconds
                elif any(part.endswith("model_service_worker.py") for part in proc.cmdline()):
                    spent["worker"] += seconds
        return spent

    def rss_mb(self) -> float:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return round(total / 2**20, 1)


def first_200(url: str, body: bytes, began: float, alive: Callable[[], bool], timeout: float) -> float:
    """Seconds from ``began`` (``time.monotonic``) to the first 200 for ``body`` at ``url``."""
    while time.monotonic() - began < timeout:
        if not alive():
            raise RuntimeError(f"{url}: the server exited before it answered")
        with contextlib.suppress(requests.RequestException):
            if requests.post(url, data=body, timeout=10).status_code == 200:
                return time.monotonic() - began
        time.sleep(POLL_S)
    raise RuntimeError(f"{url}: no 200 within {timeout:.0f} s")


def _stop_tree(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM to the command we started (it stops what it started), then SIGKILL of what is left."""
    if process.poll() is not None:
        return
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(tree, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def start_serve(
    name: str,
    command: list[str],
    archive: Path,
    home: Path,
    body: bytes,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 120.0,
    archive_option: bool = False,
) -> Running:
    """``command serve ARCHIVE`` on free ports, as a user starts it; running once it answered a 200."""
    from squeezenet_mar.server import free_port, read_properties, write_properties

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = home / "config.properties"
    ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, {**read_properties(ROOT / "config.properties"), **ports})
    named = ["--archive", str(archive)] if archive_option else [str(archive)]  # the older CLI: --archive
    args = [*command, "serve", *named, "--config", str(config), "--home", str(home / ".mms")]
    args += ["--log-dir", str(home / "logs"), *extra_args]
    url = f"{ports['inference_address']}/predictions/{MODEL}"
    with (home / "serve.out").open("wb") as sink:
        began = time.monotonic()
        process = subprocess.Popen(
            args, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=home
        )
    try:
        seconds = first_200(url, body, began, lambda: process.poll() is None, timeout)
    except BaseException:
        _stop_tree(process)
        raise
    running = Running(name, url, psutil.Process(process.pid), lambda: _stop_tree(process), seconds)
    mms = home / ".mms" / "mms" / "config.properties"
    if mms.is_file():  # nginx in front: MMS's own address behind it
        running.extra["mms_url"] = f"{read_properties(mms)['inference_address']}/predictions/{MODEL}"
    return running


def start_torchserve(
    name: str, archive: Path, home: Path, body: bytes, env: dict[str, str], timeout: float = 180.0
) -> Running:
    """TorchServe with the archive loaded at start (one worker per core, its default); running once it
    answered a 200. ``tests/torchserve.py`` runs it (free ports, private tmp, its process group)."""
    from squeezenet_mar.server import usable_cores
    from torchserve import TorchServe, minimal_properties

    class FirstAnswer(TorchServe):
        def _wait_for_ping(self, seconds: float) -> None:  # ready means answering, polled finely
            url = f"{self.inference_url}/predictions/{MODEL}"
            self.first_200_s = first_200(url, body, self.started_at, self._alive, seconds)

        def _alive(self) -> bool:
            return self.process is not None and self.process.poll() is None

    shutil.rmtree(home, ignore_errors=True)
    store = home / "model_store"
    store.mkdir(parents=True)
    shutil.copyfile(archive, store / archive.name)
    properties = minimal_properties(default_workers_per_model=str(usable_cores()))
    server = FirstAnswer(home, store, properties, env=env)
    server.start(models=[f"{MODEL}={archive.name}"], timeout=timeout)
    url = f"{server.inference_url}/predictions/{MODEL}"
    return Running(name, url, psutil.Process(server.process.pid), server.stop, server.first_200_s)


def start_stock_mms(name: str, archive: Path, home: Path, body: bytes, timeout: float = 180.0) -> Running:
    """A stock MMS as a user who never saw this repository runs it (``tests/conftest.py``'s
    ``plain_mms``): ``multi-model-server --start --foreground`` with a config holding only its two
    addresses (free ports), the archive loaded at start (``--models squeezenet=ARCHIVE``), its default
    workers (one per core), its own JVM options and log4j2.xml (``ModelServer(lean_logging=False)``:
    private ``TMPDIR``/``TEMP``/``LOG_LOCATION``, its process group). Running once it answered a 200;
    the start is timed from just before ``ModelServer.start`` (which checks the ports, makes the
    folders and launches)."""
    from squeezenet_mar.server import ModelServer, free_port, write_properties

    began = 0.0  # set just before the start

    class FirstAnswer(ModelServer):
        first_200_s = 0.0

        def _wait_for_ping(self, seconds: float) -> None:  # ready means answering, polled finely
            url = f"{self.inference_url}/predictions/{MODEL}"
            self.first_200_s = first_200(url, body, began, self.running, seconds)

    shutil.rmtree(home, ignore_errors=True)
    store = home / "model_store"
    store.mkdir(parents=True)
    shutil.copyfile(archive, store / archive.name)
    config = home / "config.properties"
    addresses = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, addresses)
    server = FirstAnswer(home / "mms", store, config=config, lean_logging=False)
    began = time.monotonic()
    server.start(models=[f"{MODEL}={archive.name}"], timeout=timeout)
    url = f"{server.inference_url}/predictions/{MODEL}"
    return Running(name, url, psutil.Process(server.process.pid), server.stop, server.first_200_s)


# ------------------------------------------------------------------------------------ configurations
@dataclass(frozen=True)
class Configuration:
    name: str
    what: str
    start: Callable[[Path, bytes], Running]
    default: bool = True  # measured when no configuration is named (``--only``)


def before_tree(work: Path) -> tuple[Path, list[str]] | str:
    """The files of :data:`BEFORE_COMMIT` (from git history) laid out as importable packages; the
    command that runs its CLI with this virtualenv. Or why not (no history: a shallow clone)."""
    tree = work / "before-src"
    tree.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_COMMIT, *BEFORE_FILES], capture_output=True, check=False
    )
    if listing.returncode != 0:
        return f"commit {BEFORE_COMMIT} is not in this clone's history: {listing.stderr.decode()[-200:]}"
    subprocess.run(["tar", "-x", "-C", str(tree)], input=listing.stdout, check=True)
    packages = work / "before-packages"
    packages.mkdir(exist_ok=True)
    for name, source in (
        ("squeezenet_mar", tree / "archive"),
        ("squeezenet_handler", tree / "handler" / "squeezenet_handler"),
        ("squeezenet_service.py", tree / "handler" / "squeezenet_service.py"),
        ("requirements.txt", tree / "handler" / "requirements.txt"),  # later builders pack it
    ):
        if source.exists():
            (packages / name).symlink_to(source)
    bootstrap = f"import sys; sys.path.insert(0, {str(packages)!r}); from squeezenet_mar.cli import main; "
    return tree, [sys.executable, "-c", bootstrap + "sys.exit(main())"]


def build_archives(model: Path, work: Path, before: list[str] | None) -> dict[str, Path]:
    """The default archive of each code version, from the same ONNX file."""
    from squeezenet_mar.build import BuildOptions, build_archive

    archives = {"now": work / "now" / "squeezenet_v1.1.mar"}
    with environment_kept():
        build_archive(BuildOptions(model_file=model, output=archives["now"], progress=False))
    if before is None:
        return archives
    for name, options in (("before", ()), ("before_onnxruntime", ("--engine", "onnxruntime"))):
        archives[name] = work / name / "squeezenet_v1.1.mar"
        done = subprocess.run(
            [*before, "build", "--model-file", str(model), "--output", str(archives[name]), "-q", *options],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"building the {BEFORE_COMMIT} {name} archive failed: {done.stderr[-2000:]}")
    return archives


def configurations(
    archives: dict[str, Path], before: list[str] | None, torchserve: bool
) -> list[Configuration]:
    now_cli = [str(Path(sys.executable).with_name("squeezenet-mar"))]
    metrics_off = ("--metrics-port", "0")
    found = [
        Configuration(
            "now",
            "this project: `squeezenet-mar serve` defaults (nginx + MMS, MXNet), default archive",
            lambda home, body: start_serve("now", now_cli, archives["now"], home, body, None, metrics_off),
        ),
        Configuration(
            "now_onnxruntime",
            "this project: `serve` defaults with SQUEEZENET_ENGINE=onnxruntime",
            lambda home, body: start_serve(
                "now_onnxruntime",
                now_cli,
                archives["now"],
                home,
                body,
                {"SQUEEZENET_ENGINE": "onnxruntime"},
                metrics_off,
            ),
        ),
    ]
    if before is not None:
        found.append(
            Configuration(
                "before",
                f"this project at {BEFORE_COMMIT} (issue 23's baseline): its `serve` defaults, its archive",
                lambda home, body: start_serve(
                    "before", before, archives["before"], home, body, archive_option=True
                ),
            )
        )
        found.append(
            Configuration(
                "before_onnxruntime",
                f"this project at {BEFORE_COMMIT}: its `serve` defaults, its archive built "
                "--engine onnxruntime",
                lambda home, body: start_serve(
                    "before_onnxruntime",
                    before,
                    archives["before_onnxruntime"],
                    home,
                    body,
                    archive_option=True,
                ),
            )
        )
    found.append(
        Configuration(
            "stock_mms",
            "a stock MMS 1.1.11: `multi-model-server --start --foreground`, only its two addresses "
            "configured, the archive loaded at start, its default workers, JVM and logging",
            lambda home, body: start_stock_mms("stock_mms", archives["now"], home, body),
            default=False,
        )
    )
    if torchserve:
        found += [
            Configuration(
                "torchserve_tuned",
                "TorchServe 0.12 + ONNX Runtime: a worker per core, 1 ONNX Runtime thread each",
                lambda home, body: start_torchserve(
                    "torchserve_tuned", archives["now"], home, body, {"SQUEEZENET_THREADS": "1"}
                ),
            ),
            Configuration(
                "torchserve_default",
                "TorchServe 0.12 + ONNX Runtime: its defaults (a worker per core, threads shared)",
                lambda home, body: start_torchserve("torchserve_default", archives["now"], home, body, {}),
            ),
        ]
    return found


def chosen(configs: list[Configuration], only: tuple[str, ...]) -> list[Configuration]:
    """The configurations named in ``only`` (``now_mms_direct`` runs on ``now``'s stack), in their own
    order; without names, the default ones. A name that is not available here is an error."""
    if not only:
        return [c for c in configs if c.default]
    known = {c.name for c in configs} | (
        {"now_mms_direct"} if any(c.name == "now" for c in configs) else set()
    )
    unknown = [name for name in only if name not in known]
    if unknown:
        raise BenchmarkError(
            f"no configuration {', '.join(unknown)} here (TorchServe and `before` need .venv-torchserve "
            f"and the git history); there are: {', '.join(sorted(known))}"
        )
    wanted = set(only) | ({"now"} if "now_mms_direct" in only else set())
    return [c for c in configs if c.name in wanted]


# -------------------------------------------------------------------------------------------- ratios
def ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Mean, spread (min-max) and standard error of paired ratios."""
    if not ratios:
        return {}
    return {
        "mean": round(statistics.fmean(ratios), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
        "standard_error": (
            round(statistics.stdev(ratios) / len(ratios) ** 0.5, 3) if len(ratios) > 1 else None
        ),
        "ratios": [round(r, 3) for r in ratios],
    }


def paired(samples: dict[str, list[float]], name: str, against: str) -> dict[str, Any]:
    """Ratios ``name`` / ``against`` of samples taken in the same cycle (or round)."""
    mine, theirs = samples.get(name, []), samples.get(against, [])
    return ratio_summary([a / b for a, b in zip(mine, theirs, strict=False) if a is not None and b])


def summarise(bursts: list[dict[str, Any]], starts: dict[str, list[float]]) -> dict[str, Any]:
    names = list(dict.fromkeys(b["config"] for b in bursts)) or list(starts)
    levels = sorted({b["concurrency"] for b in bursts})
    keys = ("requests_per_s", "p50_ms", "p99_ms", "worker_cpu_ms", "frontend_cpu_ms", "stack_cpu_ms")
    rows = []
    for level in levels:
        for name in names:
            runs = [b for b in bursts if b["config"] == name and b["concurrency"] == level]
            if runs:
                row = {"config": name, "concurrency": level, "errors": sum(r["errors"] for r in runs)}
                for key in keys:
                    values = [r[key] for r in runs if r[key] is not None]
                    row[key] = round(statistics.fmean(values), 2) if values else None
                rows.append(row)
    ratios: dict[str, Any] = {}
    pairs = [(n, REFERENCE) for n in names if n != REFERENCE]
    pairs += [("now", "before"), ("now_onnxruntime", "before_onnxruntime")]
    pairs += [("now_onnxruntime", "now"), ("now", "now_mms_direct")]
    pairs += [("stock_mms", "now"), ("torchserve_default", "now")]  # README "Other servers"
    for name, against in pairs:
        if name not in names + list(starts) or against not in names + list(starts):
            continue
        entry: dict[str, Any] = {"start_s": paired(starts, name, against)}
        for level in levels:

            def series(config: str, key: str, level: int = level) -> list[float]:
                return [b[key] for b in bursts if b["config"] == config and b["concurrency"] == level]

            entry[f"c{level}"] = {
                key: paired({name: series(name, key), against: series(against, key)}, name, against)
                for key in keys
            }
        ratios[f"{name}/{against}"] = entry
    start_rows = {
        name: {
            "median_s": round(statistics.median(v), 2),
            "min_s": round(min(v), 2),
            "max_s": round(max(v), 2),
            "runs_s": [round(x, 2) for x in v],
        }
        for name, v in starts.items()
        if v
    }
    return {"rows": rows, "start": start_rows, "paired": ratios}


# ----------------------------------------------------------------------------------------- measuring
def measure(
    model: Path,
    work: Path,
    concurrency: tuple[int, ...] = (1, 8, 16),
    seconds: float = 5.0,
    cycles: int = 10,
    start_repeats: int = 3,
    progress: Callable[[str, str], None] = lambda stage, message: print(f"{stage}: {message}", flush=True),
    only: tuple[str, ...] = (),
) -> dict[str, Any]:
    missing = torchserve_missing()
    if missing:
        progress("parity", f"no TorchServe: {missing}")
    before = before_tree(work)
    if isinstance(before, str):
        progress("parity", f"no `before`: {before}")
    before_cli = None if isinstance(before, str) else before[1]
    archives = build_archives(model, work, before_cli)
    configs = chosen(configurations(archives, before_cli, missing is None), only)
    body_path = work / "photo_500x375.jpg"
    body_path.write_bytes(photo(500, 375, seed=100))
    body = body_path.read_bytes()
    burst = ab_burst if ab_available() else python_burst
    pictures = answer_images()
    reference = reference_answers(archives["now"], pictures, work)

    starts: dict[str, list[float]] = {c.name: [] for c in configs}
    for repeat in range(start_repeats):  # alone on the machine, the order alternated
        for config in configs if repeat % 2 == 0 else configs[::-1]:
            running = config.start(work / "start" / config.name, body)
            running.stop()
            starts[config.name].append(running.started_s)
            progress(
                "parity", f"start {repeat + 1} {config.name:20} first 200 after {running.started_s:.2f} s"
            )

    running: list[Running] = []
    bursts: list[dict[str, Any]] = []
    direct_wanted = not only or "now_mms_direct" in only
    try:
        for config in configs:
            running.append(config.start(work / "serve" / config.name, body))
            if "mms_url" in running[-1].extra and config.name == "now" and direct_wanted:
                direct = running[-1]
                running.append(
                    Running("now_mms_direct", direct.extra["mms_url"], direct.root, lambda: None, 0.0)
                )
        same = judge({server.name: served_answers(server.url, pictures) for server in running}, reference)
        for name, verdict in same["configurations"].items():
            gap = verdict["largest_probability_gap"]
            progress(
                "parity",
                f"answers {name:20} {'same as' if verdict['same'] else 'NOT the same as'} the reference "
                f"for {len(pictures)} images (largest probability gap {gap if gap is None else f'{gap:.1e}'})"
                + "".join(f"; {d}" for d in verdict["differences"]),
            )
        for server in running:  # warm-up: every executor and session created, the JIT at work
            for clients in concurrency:
                burst(server.url, body_path, clients, min(2.0, seconds))
        progress("parity", "up: " + ", ".join(f"{s.name} ({s.rss_mb():.0f} MB)" for s in running))
        for cycle in range(cycles):
            for clients in concurrency:
                for server in running if cycle % 2 == 0 else running[::-1]:
                    before_cpu = server.cpu_seconds()
                    result = burst(server.url, body_path, clients, seconds)
                    after_cpu = server.cpu_seconds()
                    answers = max(1, result["answers"])
                    row = {"cycle": cycle + 1, "config": server.name, "concurrency": clients, **result}
                    for part in ("worker", "frontend", "stack"):
                        row[f"{part}_cpu_ms"] = round(1e3 * (after_cpu[part] - before_cpu[part]) / answers, 2)
                    bursts.append(row)
                    progress(
                        "parity",
                        f"cycle {cycle + 1} c={clients:<2} {server.name:20} "
                        f"{row['requests_per_s']:6.1f} req/s, "
                        f"p50 {row['p50_ms']} p99 {row['p99_ms']} ms, CPU/request worker "
                        f"{row['worker_cpu_ms']:.2f} java {row['frontend_cpu_ms']:.2f} all "
                        f"{row['stack_cpu_ms']:.2f} ms, errors {row['errors']}",
                    )
        rss = {server.name: server.rss_mb() for server in running if server.name != "now_mms_direct"}
    finally:
        for server in running:
            server.stop()
    described = {c.name: c.what for c in configs}
    if any(server.name == "now_mms_direct" for server in running):
        described["now_mms_direct"] = "the `now` stack asked on MMS's own address (no nginx hop)"
    return {
        "client": "ab -k" if burst is ab_burst else "python closed loop (shares the cores)",
        "burst_s": seconds,
        "cycles": cycles,
        "start_repeats": start_repeats,
        "reference": REFERENCE,
        "before_commit": BEFORE_COMMIT,
        "configurations": described,
        "torchserve_missing": missing,
        "rss_mb": rss,
        "answers": same,
        **summarise(bursts, starts),
        "bursts": bursts,
    }


def table(result: dict[str, Any]) -> str:
    """The rows and the paired ratios, as text."""
    lines = [f"start -> first 200, alone ({result['start_repeats']} alternated rounds): median [min-max]"]
    for name, row in result["start"].items():
        lines.append(f"  {name:20} {row['median_s']:5.2f} s [{row['min_s']:.2f}-{row['max_s']:.2f}]")
    lines.append(f"side by side ({result['client']}, {result['cycles']} cycles of {result['burst_s']:g} s):")
    lines.append(
        f"  {'configuration':24} {'req/s':>7} {'p50':>5} {'p99':>5} {'err':>4} "
        f"{'worker':>7} {'java':>6} {'stack':>6}  (ms; CPU per request)"
    )
    for row in result["rows"]:
        label = f"{row['config']} c={row['concurrency']}"
        lines.append(
            f"  {label:24} {row['requests_per_s']:7.1f} {row['p50_ms'] or 0:5.1f} {row['p99_ms'] or 0:5.1f} "
            f"{row['errors']:4d} {row['worker_cpu_ms'] or 0:7.2f} {row['frontend_cpu_ms'] or 0:6.2f} "
            f"{row['stack_cpu_ms'] or 0:6.2f}"
        )
    same = result.get("answers", {})
    if same:
        verdicts = ", ".join(
            f"{name} {'same' if verdict['same'] else 'DIFFERENT'}"
            for name, verdict in same["configurations"].items()
        )
        images, tolerance = len(same["images"]), same["tolerance"]
        lines.append(f"answers for {images} images, within {tolerance:g} of the reference: {verdicts}")
    lines.append("paired ratios, mean [min-max] ± standard error:")
    for pair, entry in result["paired"].items():
        parts = []
        if entry.get("start_s"):
            parts.append(f"start {_fmt(entry['start_s'])}")
        for level, values in entry.items():
            if level.startswith("c"):
                parts.append(
                    f"{level} req/s {_fmt(values['requests_per_s'])}, p99 {_fmt(values['p99_ms'])}, "
                    f"worker CPU {_fmt(values['worker_cpu_ms'])}"
                )
        lines.append(f"  {pair}: " + "; ".join(parts))
    return "\n".join(lines)


def _fmt(summary: dict[str, Any]) -> str:
    if not summary:
        return "n/a"
    error = summary.get("standard_error")
    return f"{summary['mean']:.2f} [{summary['min']:.2f}-{summary['max']:.2f}]" + (
        f" ±{error:.2f}" if error is not None else ""
    )


MARKDOWN_LABELS = {
    "now": "`squeezenet-mar serve` (nginx + MMS 1.1.11, MXNet)",
    "stock_mms": "stock MMS 1.1.11 (`multi-model-server --start`, its defaults)",
    "torchserve_default": "TorchServe 0.12 + ONNX Runtime, its defaults",
    "torchserve_tuned": "TorchServe 0.12 + ONNX Runtime, 1 thread per worker",
}


def markdown(result: dict[str, Any], against: str = "now") -> str:
    """The README's table: per configuration its start-up (median [min-max]), the means of its bursts
    and whether it answers like the reference; beside each number, the paired ratio to ``against``."""
    rows = {(row["config"], row["concurrency"]): row for row in result["rows"]}
    names = list(result["start"])  # now_mms_direct shares now's stack: it has no start of its own
    same = result.get("answers", {}).get("configurations", {})

    def ratio(name: str, level: str, key: str) -> str:
        entry = result["paired"].get(f"{name}/{against}", {})
        summary = entry.get(level, {}).get(key, {}) if level != "start_s" else entry.get("start_s", {})
        return f" ({summary['mean']:.2f}x [{summary['min']:.2f}-{summary['max']:.2f}])" if summary else ""

    def burst(name: str, clients: int, key: str, unit: str = "") -> str:
        row = rows.get((name, clients))
        if row is None or row[key] is None:
            return "n/a"
        return f"{row[key]:.1f}{unit}" + ratio(name, f"c{clients}", key)

    lines = [
        "| server | start → first 200 | c=1 req/s | c=8 req/s | p99 at c=1 | same answers |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        start = result["start"][name]
        verdict = same.get(name)
        if verdict is None:
            answered = "not checked"
        elif verdict["same"]:
            gap = verdict["largest_probability_gap"]
            answered = f"yes, {len(result['answers']['images'])} images (largest gap {gap:.0e})"
        else:
            answered = "no: " + "; ".join(verdict["differences"])
        started = f"{start['median_s']:.2f} s [{start['min_s']:.2f}-{start['max_s']:.2f}]"
        lines.append(
            f"| {MARKDOWN_LABELS.get(name, name)} | {started}{ratio(name, 'start_s', '')} "
            f"| {burst(name, 1, 'requests_per_s')} | {burst(name, 8, 'requests_per_s')} "
            f"| {burst(name, 1, 'p99_ms', ' ms')} | {answered} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10, help="(%(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per burst (%(default)s)")
    parser.add_argument("--start-repeats", type=int, default=3, help="(%(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument(
        "--only",
        "--configurations",
        nargs="+",
        default=[],
        help="these configurations only, by name (also comma-separated: now,stock_mms,torchserve_default); "
        "without it, every default one (stock_mms only when named)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print the README's table, ratios to `now`"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "parity.json")
    args = parser.parse_args(argv)
    only = tuple(name for names in args.only for name in names.split(",") if name)
    from squeezenet_onnx import build_squeezenet11

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="squeezenet-parity-") as tmp:
        work = Path(tmp)
        model = build_squeezenet11(work / "squeezenet1.1.onnx", seed=0)
        try:
            result = measure(
                model,
                work,
                tuple(args.concurrency),
                args.seconds,
                args.cycles,
                args.start_repeats,
                only=only,
            )
        except BenchmarkError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    result["duration_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    if args.markdown:
        print(markdown(result))
    print(f"report: {args.output} ({result['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
