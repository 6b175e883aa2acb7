"""What several commands share: usage errors, opening a store that must already exist,
and settings overridden by the command's flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from consumers.cli.logs import configure_logging
from application.settings import Settings, SettingsError


class UsageError(Exception):
    """A command-line problem: printed with the command's name, exit code 2."""


class open_store:
    """Open an existing store for one command; an unusable URL or store is a usage error."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self) -> Any:
        from events.factory import open_existing_store
        from events.store import EventStoreError

        try:
            self.store = open_existing_store(self.url)
        except (EventStoreError, ValueError) as error:
            raise UsageError(f"cannot open the store {self.url}: {error}") from None
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def add_server_flags(parser: argparse.ArgumentParser, *, what: str = "listen") -> None:
    parser.add_argument("--host", help=f"{what} address (default TOUCHPOINTS_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"{what} port, 0 for a free one (default TOUCHPOINTS_PORT or 8000)")
    parser.add_argument("--no-demo", action="store_true", help="never load the demo data set")


def settings_for_server(command: str, args: argparse.Namespace) -> Settings | None:
    """The environment's settings with the server flags applied, logging configured; None
    (after saying why on stderr) when the environment holds a value touchpoints cannot use."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints {command}: {error}", file=sys.stderr)
        return None
    settings = server_settings(settings, args)
    configure_logging(settings.log_level)
    return settings


def server_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the flags of ``add_server_flags`` (and ``--store``, if the command has it) applied."""
    overrides: dict[str, Any] = {
        "host": args.host if args.host is not None else settings.host,
        "port": args.port if args.port is not None else settings.port,
        "demo": settings.demo and not args.no_demo,
    }
    if getattr(args, "store", None):
        overrides["store_url"] = args.store
    return settings.model_copy(update=overrides)
