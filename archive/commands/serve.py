"""``squeezenet-mar serve``: run Multi Model Server in the foreground with the archive registered."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from squeezenet_handler.health import HEALTH_DIR_ENV

from .. import MODEL_NAME
from ..client import DEFAULT_MODEL
from ..errors import UsageError
from ..server import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_DELAY_MS, DEFAULT_WORKERS
from ..serving.metrics import DEFAULT_METRICS_PORT
from ..signatures import Trust, trust_from_environment
from .aliases import add_archive_argument, archive_path, hidden
from .inputs import require_file
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the archive: MMS behind nginx, supervised, in the foreground (Ctrl-C drains and stops)",
        description="Checks the archive (and its signature, with a trusted key), starts MMS on 127.0.0.1 "
        "with the given config.properties, registers the archive through the management API (the only "
        "way MMS enables batching), puts nginx on the config's inference address in front of it, and "
        "supervises both: /ping says 200 only while a worker can answer, an outage restarts MMS, "
        "Ctrl-C or SIGTERM answers every request in flight, then stops everything.",
    )
    add_archive_argument(serve, "the .mar to serve", default=Path("model_store") / f"{MODEL_NAME}.mar")
    serve.add_argument("--config", type=Path, default=Path("config.properties"), help="(%(default)s)")
    serve.add_argument(
        "--model",
        *hidden("--model-name"),
        default=DEFAULT_MODEL,
        metavar="NAME",
        help="served name: /predictions/NAME (%(default)s)",
    )
    serve.add_argument(
        "--port", type=int, help="inference port on the config's host (default: the config's, 8080)"
    )
    serve.add_argument(
        "--management-port", type=int, help="management port on 127.0.0.1 (default: the config's, 8081)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="GET /metrics (Prometheus) on this port of the inference address's host (%(default)s; 0: off)",
    )
    serve.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="dynamic batching: most requests per handler call (%(default)s; 1: off)",
    )
    serve.add_argument(
        "--max-batch-delay",
        type=int,
        default=DEFAULT_MAX_BATCH_DELAY_MS,
        help="ms MMS waits for a batch to fill (%(default)s: it takes what is queued, waits for nothing)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="Python workers (%(default)s: one per usable core; a worker alone borrows the idle cores)",
    )
    serve.add_argument(
        "--threads-per-worker",
        type=int,
        help="fix every forward pass to this many threads (default: shared at run time, see README)",
    )
    serve.add_argument("--home", type=Path, default=Path(".mms"), help="MMS's tmp and config (%(default)s)")
    serve.add_argument("--log-dir", type=Path, default=Path("logs"), help="MMS logs (%(default)s)")
    add_trust_options(serve)
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..verify import verify_archive

    archive = archive_path(args)
    if not archive.exists():
        raise UsageError(f"{archive}: no such archive; build it first with 'squeezenet-mar build'")
    archive = require_file(archive, "archive").resolve()
    require_file(args.config, "config.properties")
    for option, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:  # MMS 1.1.11 hangs a model scaled to 0 workers (README, "Operations")
            raise UsageError(f"{option} must be at least 1, got {value}")
    if not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port must be from 0 (off) to 65535, got {args.metrics_port}")
    if args.max_batch_delay < 0:
        raise UsageError(f"--max-batch-delay must be 0 or more, got {args.max_batch_delay}")
    # The handler shares the cores between the workers at run time (squeezenet_handler.cores) unless
    # SQUEEZENET_THREADS fixes the count; it forces OMP_NUM_THREADS itself (MMS's worker sets it to 1).
    env: dict[str, str] = {"SQUEEZENET_WORKERS": str(args.workers)}  # the handler's memory budget
    if args.threads_per_worker:
        env["SQUEEZENET_THREADS"] = str(args.threads_per_worker)
    trusted = trust_to_serve_with(trust(args), trust_from_environment(os.environ))
    if trusted is not None:  # the workers' genuine handler checks again at load (squeezenet_handler.trust)
        env.update(trusted.environment())
    home = args.home.resolve()
    # MMS loads a private copy, checked before MMS sees it (without running anything from it): MMS
    # 1.1.11 unpacks what Java's ZipInputStream finds before any handler runs, and answers a failed
    # load with only "Failed to start workers". With a trusted key, the signature must verify too.
    store = home / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    copy = store / archive.name
    shutil.copyfile(archive, copy)
    report = verify_archive(copy, trust=trusted)
    if report.signature is not None:
        print(f"signature verified: key sha256:{report.signature.fingerprint}", flush=True)
    return serve_archive(args, copy, home, env)


def trust_to_serve_with(from_options: Trust | None, from_environment: Trust | None) -> Trust | None:
    """The options' trust, or the environment's (``SQUEEZENET_TRUSTED_*``, which MMS's workers inherit
    anyway: a set but blank or broken variable has already been refused). Both, naming different
    things: a usage error, since the workers would be told two things."""
    if from_options and from_environment and from_options.environment() != from_environment.environment():
        raise UsageError(
            "the --trusted-* options and the SQUEEZENET_TRUSTED_* variables in the environment "
            "name different things to trust: give one of them"
        )
    return from_options or from_environment


def serve_archive(args: argparse.Namespace, copy: Path, home: Path, env: dict[str, str]) -> int:
    """nginx on the config's inference address, MMS behind it on 127.0.0.1, supervised until a stop."""
    from ..inprocess import smoke_image
    from ..server import ModelServer, free_port, read_properties, with_port
    from ..serving import FrontSettings, MetricsSettings, ServedModel, ServingStack, StackOptions

    properties = read_properties(args.config)
    public = properties.get("inference_address", "http://127.0.0.1:8080")
    if args.port is not None:
        public = with_port(public, args.port)
    health = home / "health"
    metrics = None
    if args.metrics_port:  # on the inference address's host; a port in use only warns (a dev machine)
        host = public.split("://", 1)[-1].rpartition(":")[0]
        metrics = MetricsSettings(f"{host}:{args.metrics_port}", home / "metrics", required=False)
        env = {**env, **metrics.environment()}
    server = ModelServer(
        home / "mms",
        copy.parent,
        config=args.config,
        management_port=args.management_port,
        overrides={"inference_address": f"http://127.0.0.1:{free_port()}"},  # behind nginx only
        env={**env, HEALTH_DIR_ENV: str(health)},
        log_dir=args.log_dir,
    )
    front = FrontSettings(
        listen=public.split("://", 1)[-1],
        upstream=server.inference_url.split("://", 1)[-1],
        home=home / "nginx",
        health=health,
        max_body_bytes=int(properties.get("max_request_size", 6553500)),
        response_timeout=int(properties.get("default_response_timeout_seconds", 120)),
    )
    model = ServedModel(args.model, copy.name, args.batch_size, args.max_batch_delay, args.workers)

    def banner(seconds: float) -> None:
        print(
            f"serving {copy.name} as '{args.model}': batch size {args.batch_size}, "
            f"max batch delay {args.max_batch_delay} ms, {args.workers} worker(s); ready in {seconds:.1f} s"
        )
        print(f"  inference  {public}/predictions/{args.model}   (nginx in front of MMS)")
        print(f"  health     {public}/ping   (200 only while a worker can answer)")
        if stack.metrics and stack.metrics.listening:
            print(f"  metrics    http://{stack.metrics.settings.listen}/metrics   (Prometheus)")
        print(f"  management {server.management_url}/models   (no authentication: keep it on 127.0.0.1)")
        print(f"  logs       {args.log_dir}/   Ctrl-C or SIGTERM drains and stops")
        print(f"try: curl -X POST {public}/predictions/{args.model} -T samples/grace_hopper.jpg", flush=True)

    options = StackOptions(register=True, warm_up_image=smoke_image(), on_ready=banner, metrics=metrics)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "mms.out").open("ab") as output:
        stack = ServingStack(server, front, [model], options, output)
        code = stack.run()
    print(
        "stopped" if code == 0 else f"error: the server stopped (exit code {code}); see {home / 'mms.out'}",
        file=sys.stderr,
    )
    return code
