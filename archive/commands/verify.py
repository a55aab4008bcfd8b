"""``squeezenet-mar verify``: check an archive without running it (--run: its handler, in a child)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SignatureVerifyError, VerifyError
from .inputs import require_archive
from .keys import add_trust_options, trust
from .output import print_top


def add_parser(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser(
        "verify",
        help="check an archive's layout, manifest, names, hashes and consistency (runs nothing)",
        description="Reads the archive without running anything from it. Exit 0 only if every check "
        "holds; each failure prints one 'FAIL file: problem' line.",
    )
    verify.add_argument(
        "archive", type=Path, metavar="ARCHIVE", help=".mar (zip or tgz) or an unpacked archive folder"
    )
    verify.add_argument(
        "--run",
        action="store_true",
        help="also load the archive's handler in a child process and ask it for a prediction "
        "(this executes the archive's code: only for archives you trust)",
    )
    add_trust_options(verify)
    verify.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..verify import verify_archive

    try:
        report = verify_archive(require_archive(args.archive), run=args.run, trust=trust(args))
    except VerifyError as exc:
        for name, problem in exc.problems:
            print(f"FAIL {name}: {problem}")
        print(f"{args.archive}: {len(exc.problems)} problem(s)")
        return exc.exit_code
    except SignatureVerifyError as exc:
        print(f"FAIL signature: {exc}")
        print(
            f"{args.archive}: consistent, but its signature does not verify against {trust(args).describe()}"
        )
        return exc.exit_code
    model = report.manifest.get("model", {})
    name, version = model.get("modelName"), model.get("modelVersion")
    print(f"OK {args.archive}: {name} {version}, {len(report.files)} files, handler {model.get('handler')}")
    print("   consistent: every file matches MAR-INF/SHA256SUMS, and zip readers all see the same files")
    if report.signature is not None:
        signer = report.signature
        subject = f", {signer.subject}" if signer.subject else ""
        files = f"{signer.mode} mode, {signer.files} files"
        print(f"   signed by key sha256:{signer.fingerprint}{subject} ({files})")
    elif report.signed:
        print(
            "   signed, but not checked: give --trusted-key (or --trusted-certificate-chain) "
            "to verify who signed it"
        )
    else:
        print("   (this proves the archive is intact, not who made it: it is not signed)")
    if report.top5:
        print("   its handler (run in a child process) answered a generated image:")
        print_top(report.top5, indent="   ")
    return 0
