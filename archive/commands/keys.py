"""The options that name keys: what a signer signs with, what a verifier trusts."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..signatures import SigningKey, Trust


def add_signing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sign-key", type=Path, metavar="KEY.pem", help="sign with this EC private key (see 'keygen')"
    )
    parser.add_argument(
        "--signing-certificate",
        type=Path,
        metavar="CERT.pem",
        help="certificate mode: the certificate of --sign-key (with --certificate-chain)",
    )
    parser.add_argument(
        "--certificate-chain",
        type=Path,
        nargs="+",
        metavar="CA.pem",
        default=[],
        help="certificate mode: the signing certificate's chain, CA first",
    )


def signing_key(args: argparse.Namespace) -> SigningKey | None:
    if args.sign_key is None:
        return None
    return SigningKey(args.sign_key, args.signing_certificate, tuple(args.certificate_chain))


def add_trust_options(parser: argparse.ArgumentParser, key_flag: str = "--public-key") -> None:
    chain_flag = key_flag.replace("-key", "-certificate-chain")
    parser.add_argument(
        key_flag, type=Path, metavar="PUB.pem", dest="trusted_key", help="the signer's public key to trust"
    )
    parser.add_argument(
        chain_flag,
        type=Path,
        nargs="+",
        metavar="CA.pem",
        default=[],
        dest="trusted_chain",
        help="or: the certificate chain to trust (certificate-mode signatures), CA first",
    )


def trust(args: argparse.Namespace) -> Trust | None:
    if args.trusted_key is None and not args.trusted_chain:
        return None
    return Trust(args.trusted_key, tuple(args.trusted_chain))
