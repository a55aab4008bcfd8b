"""``squeezenet-mar serve``: run Multi Model Server in the foreground with the archive registered."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

from .. import MODEL_NAME
from ..client import DEFAULT_MODEL
from ..errors import UsageError
from ..server import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_DELAY_MS, DEFAULT_WORKERS
from .aliases import add_archive_argument, archive_path, hidden
from .inputs import require_file
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run Multi Model Server in the foreground with the archive registered (Ctrl-C stops)",
        description="Starts MMS with the given config.properties, registers the archive through the "
        "management API (the only way MMS enables batching) and waits; Ctrl-C or SIGTERM stops MMS "
        "and its workers.",
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
    from ..server import ModelServer, Registration
    from ..verify import verify_archive

    archive = archive_path(args)
    if not archive.exists():
        raise UsageError(f"{archive}: no such archive; build it first with 'squeezenet-mar build'")
    archive = require_file(archive, "archive").resolve()
    require_file(args.config, "config.properties")
    for option, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:  # MMS 1.1.11 hangs a model scaled to 0 workers (README, "Operations")
            raise UsageError(f"{option} must be at least 1, got {value}")
    if args.max_batch_delay < 0:
        raise UsageError(f"--max-batch-delay must be 0 or more, got {args.max_batch_delay}")
    # The handler shares the cores between the workers at run time (squeezenet_handler.cores) unless
    # SQUEEZENET_THREADS fixes the count; it forces OMP_NUM_THREADS itself (MMS's worker sets it to 1).
    env: dict[str, str] = {}
    if args.threads_per_worker:
        env["SQUEEZENET_THREADS"] = str(args.threads_per_worker)
    trusted = trust(args)
    if trusted is not None:  # the workers' genuine handler checks again at load (squeezenet_handler.trust)
        env.update(trusted.environment())
    # MMS loads a private copy, checked before MMS sees it (without running anything from it): MMS
    # 1.1.11 unpacks what Java's ZipInputStream finds before any handler runs, and answers a failed
    # load with only "Failed to start workers". With a trusted key, the signature must verify too.
    store = args.home.resolve() / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    copy = store / archive.name
    shutil.copyfile(archive, copy)
    report = verify_archive(copy, trust=trusted)
    if report.signature is not None:
        print(f"signature verified: key sha256:{report.signature.fingerprint}", flush=True)
    server = ModelServer(
        args.home,
        store,
        config=args.config,
        inference_port=args.port,
        management_port=args.management_port,
        env=env,
        log_dir=args.log_dir,
    )
    # Explicitly, for SIGINT too: a background job of a non-interactive shell starts with SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        server.start()
        server.register(
            Registration(
                url=archive.name,
                name=args.model,
                batch_size=args.batch_size,
                max_batch_delay_ms=args.max_batch_delay,
                workers=args.workers,
            )
        )
        print(
            f"serving {archive.name} as '{args.model}': batch size {args.batch_size}, "
            f"max batch delay {args.max_batch_delay} ms, {args.workers} worker(s)"
        )
        print(f"  inference  {server.inference_url}/predictions/{args.model}")
        print(f"  management {server.management_url}/models   (no authentication: keep it on 127.0.0.1)")
        print(f"  logs       {args.log_dir}/   Ctrl-C stops")
        print(
            f"try: curl -X POST {server.inference_url}/predictions/{args.model} -T samples/grace_hopper.jpg",
            flush=True,
        )
        code = server.wait()
        print(
            f"error: Multi Model Server's frontend stopped by itself (launcher exit code {code}); "
            f"stopping its workers. Last lines of its output:\n{server.output_tail()}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("stopping Multi Model Server ...", file=sys.stderr)
        return 0
    finally:
        server.stop()
        print("stopped", file=sys.stderr)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
