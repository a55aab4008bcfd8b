"""One module per ``squeezenet-mar`` subcommand, in the order ``--help`` lists them. Each has
``add_parser(subparsers)``, which declares its options, and ``run(args) -> exit code``."""

from __future__ import annotations

from types import ModuleType

from . import build, evaluate, predict, publish, serve, verify

COMMANDS: tuple[ModuleType, ...] = (build, verify, publish, serve, predict, evaluate)
