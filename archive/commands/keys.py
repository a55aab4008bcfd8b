"""The options that name keys: what a signer signs with, what a verifier trusts.

One spelling per concept in every subcommand (``--signing-*`` for the signer, ``--trusted-*`` for the
verifier); the spellings of release 1.1.0 still parse, hidden from ``--help`` (see ``aliases``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..signatures import SigningKey, Trust
from .aliases import hidden


def add_signing_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The signer's key, and in certificate mode its certificate and chain. ``required``: sign needs a key."""
    parser.add_argument(
        "--signing-key",
        *hidden("--sign-key"),
        type=Path,
        metavar="KEY.pem",
        dest="signing_key",
        required=required,
        help="sign with this EC private key (see 'keygen')" + ("" if required else "; default: unsigned"),
    )
    parser.add_argument(
        "--signing-certificate",
        type=Path,
        metavar="CERT.pem",
        help="certificate mode: the certificate of --signing-key (with --signing-certificate-chain)",
    )
    parser.add_argument(
        "--signing-certificate-chain",
        *hidden("--certificate-chain"),
        type=Path,
        nargs="+",
        metavar="CA.pem",
        default=[],
        dest="signing_certificate_chain",
        help="certificate mode: the signing certificate's chain, CA first",
    )


def signing_key(args: argparse.Namespace) -> SigningKey | None:
    if args.signing_key is None:
        return None
    return SigningKey(args.signing_key, args.signing_certificate, tuple(args.signing_certificate_chain))


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """What the verifier trusts: one public key, or a certificate chain (certificate-mode signatures)."""
    parser.add_argument(
        "--trusted-key",
        *hidden("--public-key"),
        type=Path,
        metavar="PUB.pem",
        dest="trusted_key",
        help="the signature must verify against this public key (the publisher's)",
    )
    parser.add_argument(
        "--trusted-certificate-chain",
        *hidden("--public-certificate-chain"),
        type=Path,
        nargs="+",
        metavar="CA.pem",
        default=[],
        dest="trusted_chain",
        help="or: the certificate chain to trust (certificate-mode signatures), CA first",
    )
    parser.add_argument(
        "--trusted-identity",
        metavar="KIND:VALUE",
        dest="trusted_identity",
        help="with --trusted-certificate-chain: the signer must be this one, 'subject:CN=...' "
        "(RFC 4514) or an alternative name 'email:...', 'uri:...', 'dns:...'",
    )


def trust(args: argparse.Namespace) -> Trust | None:
    if args.trusted_key is None and not args.trusted_chain and args.trusted_identity is None:
        return None
    return Trust(args.trusted_key, tuple(args.trusted_chain), args.trusted_identity)
