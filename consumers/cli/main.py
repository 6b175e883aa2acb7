"""``touchpoints``: the command line. Each subcommand lives in its own module
under ``consumers/cli/`` and exposes ``register(subparsers)``; the parser sets
``handler`` (a function taking the parsed args and returning an exit code)."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    # one module per command family; each adds its subcommands
    "ingest",
    "demo",
    "schemas",
    "serve",
    "relay",
    "broker",
    "worker",
    "up",
    "views",
    "audit",
    "keys",
    "privacy",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="touchpoints",
        description="Event-sourced customer touchpoints: ingest, stream, attribute, audit.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"consumers.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
