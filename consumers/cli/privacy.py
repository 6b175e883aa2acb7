"""``touchpoints erase ID``: erase a person (every identity linked to ``ID``): their keys
destroyed, a ``customer_erased`` event appended; prints what was erased (stored forms only).

Needs ``TOUCHPOINTS_SEAL_PERSONAL_DATA`` on (keys in ``<TOUCHPOINTS_DATA>/keys.db``). Reads
the store directly, as the views commands do; a running ``touchpoints up`` serves the
same through ``POST /v1/erasures``. Exit 0 erased, 1 no one known by ``ID``, 2 bad
arguments, settings or store.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from application.settings import Settings, SettingsError
from consumers.cli.common import UsageError, open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "erase", help="Erase a person: destroy their keys, record customer_erased",
        description=__doc__.split("\n\n")[0].replace("``", "'"),
    )
    parser.add_argument("id", help="a customer id, any linked anonymous id (cookie, handle, email) or a stream name")
    parser.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from application.privacy.erasure import erase
    from application.privacy.keys import KeyStoreError
    from application.privacy.mode import settle
    from application.store_feed import load_views, read_member_events

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        return _fail(str(error), 2)
    sealing = None
    try:
        with open_store(args.store or settings.store_url) as store:
            sealing = settle(settings, store).sealing
            if sealing is None:
                return _fail("personal data is not sealed here (TOUCHPOINTS_SEAL_PERSONAL_DATA is off): "
                             "no key to destroy", 2)
            views = load_views(store)
            report = erase(args.id, views=views, store=store, sealing=sealing,
                           read_events=lambda streams: read_member_events(store, streams))
    except (UsageError, KeyStoreError) as error:
        return _fail(str(error), 2)
    finally:
        if sealing is not None:
            sealing.close()
    if report is None:
        return _fail(f"no customer or identity {args.id!r}", 1)
    sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"touchpoints erase: {message}", file=sys.stderr)
    return code
