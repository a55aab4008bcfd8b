"""``squeezenet-mar sign`` and ``keygen``: sign an existing archive; make a signing key pair."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .inputs import require_file
from .keys import add_signing_options, signing_key


def add_parser(sub: argparse._SubParsersAction) -> None:
    sign = sub.add_parser(
        "sign",
        help="sign an archive (OpenSSF model signing): MAR-INF/model.sig inside, ARCHIVE.sig beside",
        description="Verifies the archive (nothing of it runs), then writes it again with a signature "
        "bundle over every file, replacing any earlier signature, to --output (default: in place, "
        "through a rename), with its .sha256 and .sig beside it.",
    )
    sign.add_argument("archive", type=Path, metavar="ARCHIVE", help="the .mar to sign")
    sign.add_argument("--output", type=Path, help="where to write the signed archive (default: ARCHIVE)")
    add_signing_options(sign, required=True)
    sign.set_defaults(func=run_sign)

    keygen = sub.add_parser(
        "keygen",
        help="make an EC P-256 signing key pair: KEY.pem (private, mode 0600) and KEY.pub.pem",
        description="Writes DIR/NAME.pem and DIR/NAME.pub.pem and prints the public key's SHA-256 "
        "fingerprint, the one verify, publish and serve report. Never overwrites a key.",
    )
    keygen.add_argument("--output-dir", type=Path, default=Path("keys"), help="(%(default)s)")
    keygen.add_argument("--name", default="signing-key", help="file name stem (%(default)s)")
    keygen.set_defaults(func=run_keygen)


def run_sign(args: argparse.Namespace) -> int:
    from ..build import sign_archive

    key = signing_key(args)
    if key is None:  # argparse requires --signing-key; a caller building Namespaces by hand may not
        raise UsageError("sign needs --signing-key KEY.pem")
    result = sign_archive(require_file(args.archive, "archive"), key, args.output)
    print(f"signed    {result.archive} with key sha256:{result.fingerprint}")
    print(f"sha256    {result.sha256}")
    print(f"bundle    {result.bundle_file}")
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from ..signatures import write_key_pair

    private, public, fingerprint = write_key_pair(args.output_dir, args.name)
    print(f"private key  {private}   (keep it secret: whoever holds it can sign archives as you)")
    print(f"public key   {public}   (give it to those who verify)")
    print(f"fingerprint  sha256:{fingerprint}")
    return 0
