"""``squeezenet-mar publish``: add an archive to a model zoo (a folder or s3://bucket/prefix)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from .inputs import require_file
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    publish = sub.add_parser(
        "publish",
        help="add an archive to a model zoo folder served over static HTTP",
        description="DEST/<model>/<version>/ gets the .mar, its .sha256, its signature bundle (.sig) when "
        "it is signed, and a model card; DEST/index.json lists every model and version. The archive is "
        "verified first (nothing of it runs).",
    )
    publish.add_argument("archive", type=Path, metavar="ARCHIVE", help="the .mar to publish")
    publish.add_argument("--zoo", required=True, help="zoo root folder (or s3://bucket/prefix with boto3)")
    publish.add_argument("--force", action="store_true", help="replace an already published version")
    publish.add_argument("--evaluation", type=Path, help="JSON written by 'evaluate --json' for the card")
    publish.add_argument(
        "--require-signature",
        action="store_true",
        help="refuse an unsigned archive (needs --trusted-key or --trusted-certificate-chain)",
    )
    add_trust_options(publish)
    publish.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..zoo import publish_archive

    require_file(args.archive, "archive")
    evaluation = read_evaluation(require_file(args.evaluation, "evaluation")) if args.evaluation else None
    result = publish_archive(
        args.archive,
        args.zoo,
        force=args.force,
        evaluation=evaluation,
        trust=trust(args),
        require_signature=args.require_signature,
    )
    print(f"published {result.model} {result.version} -> {result.mar_path}")
    print(f"  url (relative to the zoo root): {result.url}")
    print(f"  sha256 {result.sha256}, {result.size} bytes")
    print(f"  card {result.card_path}; index {result.index_path}")
    signing = result.signature
    if signing is None:
        print("  signature: none (unsigned archive)")
    elif signing["verified_by_publisher"]:
        print(f"  signature: verified, key sha256:{signing['key_sha256']}; bundle {signing['bundle']}")
    else:
        print(f"  signature: present but not verified (no key given); bundle {signing['bundle']}")
    return 0


def read_evaluation(path: Path) -> dict:
    """The record ``evaluate --json`` wrote."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not the JSON that 'evaluate --json' writes: {exc}") from exc
    if not isinstance(record, dict):
        raise UsageError(f"{path}: not the JSON object that 'evaluate --json' writes")
    return record
