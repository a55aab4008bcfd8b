"""One module per ``squeezenet-mar`` subcommand, in the order ``--help`` lists them. Each has
``add_parser(subparsers)``, which declares its options (and sets ``func``), and a ``run(args) -> exit
code`` (``sign`` declares two: sign and keygen)."""

from __future__ import annotations

from types import ModuleType

from . import build, evaluate, kserve, predict, publish, sagemaker, serve, sign, verify

COMMANDS: tuple[ModuleType, ...] = (
    build,
    sign,
    verify,
    publish,
    serve,
    predict,
    evaluate,
    sagemaker,
    kserve,
)
