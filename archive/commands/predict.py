"""``squeezenet-mar predict``: send images to a running server and print the top classes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..client import DEFAULT_MODEL, DEFAULT_URL
from ..errors import ClientError
from .aliases import hidden
from .output import print_top


def add_parser(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser(
        "predict",
        help="send images to a running server and print the top classes",
        description="Sends every image concurrently to POST URL/predictions/MODEL. Exit 0 only if "
        "every image got a prediction.",
    )
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument(
        "--server",
        *hidden("--url"),
        default=DEFAULT_URL,
        metavar="URL",
        help="the server's inference address (%(default)s)",
    )
    predict.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="NAME", help="served name: /predictions/NAME (%(default)s)"
    )
    predict.add_argument("--topk", type=int, help="classes per image (server default: 5)")
    predict.add_argument("--concurrency", type=int, default=8, help="requests in flight (%(default)s)")
    predict.add_argument("--timeout", type=float, default=60.0, help="seconds per request (%(default)s)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of tables")
    predict.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..client import predict_files

    results = predict_files(
        args.images, args.server, args.model, args.topk, concurrency=args.concurrency, timeout=args.timeout
    )
    if args.json:
        print(json.dumps([result.__dict__ for result in results], indent=2))
    else:
        for result in results:
            if result.ok:
                print(f"{result.image}  ({result.seconds * 1000:.0f} ms)")
                print_top(result.top or [])
            else:
                print(f"{result.image}  HTTP {result.status}: {result.error}")
    failed = [r for r in results if not r.ok]
    if failed:
        sys.stdout.flush()  # the summary comes after the table, also when both go to one terminal
        print(f"error: {len(failed)} of {len(results)} image(s) got no prediction", file=sys.stderr)
        return ClientError.exit_code
    return 0
