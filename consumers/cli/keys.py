"""``touchpoints keys create|list|revoke`` and ``touchpoints login-link``: access control on the
data folder itself (``<TOUCHPOINTS_DATA>/access.db``), no running API needed. A running API
looks keys up on every request, so a revocation here is refused there from the next one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from application.access import Access, UnknownKey, access_path, open_access, parse_scopes
from application.access.service import LOGIN_LINK_TTL
from application.access.store import AccessStoreError
from application.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys",
                                 description="API keys of the data folder (TOUCHPOINTS_DATA/access.db).")
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="make a key and print it once",
        description="Make a key and print it once: only its hash is kept. Scopes: emit (append events), "
        "read (views, timelines, dashboard, /metrics), audit (the log, replay, verify, as-of views; implies "
        "read), admin (keys, erasure; implies all).")
    create.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                        help="emit, read, audit or admin; repeat or separate by commas for several")
    create.add_argument("--name", required=True, help="who or what holds the key, e.g. marketing")
    create.add_argument("--source", help="emit keys only: the one `source` every event must name")
    create.add_argument("--types", help="emit keys only: the event types it may write, comma-separated")
    create.set_defaults(handler=create_key)

    listing = actions.add_parser("list", help="every key: prefix, name, scopes, created, revoked (never the key)")
    listing.set_defaults(handler=list_keys)

    revoke = actions.add_parser("revoke", help="revoke a key: a running API refuses it from the next request")
    revoke.add_argument("prefix", help="the key's prefix as `keys list` shows it, e.g. tp_ab12cd34")
    revoke.set_defaults(handler=revoke_key)

    link = subparsers.add_parser(
        "login-link", help="print a one-time login link for the dashboard",
        description=f"Print a link that logs a browser into the dashboard once (good for "
        f"{int(LOGIN_LINK_TTL.total_seconds() // 60)} minutes); the browser keeps a read-only session.")
    link.add_argument("--url", help="the API's address (default http://TOUCHPOINTS_HOST:TOUCHPOINTS_PORT)")
    link.set_defaults(handler=login_link)


def _with_access(command: str, use: Callable[[Settings, Access], int], *, create: bool = False) -> int:
    """Run ``use`` on the settings and the data folder's access store, closed after; 2 (said on
    stderr) when the settings are bad, or the store is missing and ``create`` is not asked
    for: a mistyped TOUCHPOINTS_DATA should not look like a folder without keys."""
    try:
        settings = Settings.from_env()
        if not create and not access_path(settings.data).exists():
            raise AccessStoreError(f"no access store at {access_path(settings.data)}: is TOUCHPOINTS_DATA the "
                                   "folder `touchpoints up` or `serve` uses? (they make it at their first start)")
        access = open_access(settings.data)
    except (SettingsError, AccessStoreError) as error:
        print(f"touchpoints {command}: {error}", file=sys.stderr)
        return 2
    try:
        return use(settings, access)
    finally:
        access.close()


def create_key(args: argparse.Namespace) -> int:
    def create(settings: Settings, access: Access) -> int:
        types = None if args.types is None else frozenset(t.strip() for t in args.types.split(",") if t.strip())
        try:
            key, record = access.create_key(name=args.name, scopes=parse_scopes(args.scope), source=args.source,
                                            types=types)
        except ValueError as error:
            print(f"touchpoints keys create: {error}", file=sys.stderr)
            return 2
        print(f"created {record.shown_prefix} ({record.name!r}, scopes "
              f"{', '.join(sorted(s.value for s in record.scopes))}); the key is shown this once, only its hash "
              f"is kept in {access_path(settings.data)}:", file=sys.stderr)
        print(key)
        return 0

    return _with_access("keys create", create, create=True)


def list_keys(args: argparse.Namespace) -> int:
    def show(_: Settings, access: Access) -> int:
        print(f"{'PREFIX':<12} {'NAME':<24} {'SCOPES':<18} {'CREATED':<20} {'REVOKED':<20} NARROWED TO")
        for record in access.keys():
            narrowed = ", ".join(part for part in (
                f"source {record.source}" if record.source else "",
                f"types {','.join(sorted(record.types))}" if record.types else "") if part)
            print(f"{record.shown_prefix:<12} {record.name:<24} {','.join(sorted(s.value for s in record.scopes)):<18} "
                  f"{_when(record.created_at):<20} {_when(record.revoked_at):<20} {narrowed}".rstrip())
        return 0

    return _with_access("keys list", show)


def revoke_key(args: argparse.Namespace) -> int:
    def revoke(_: Settings, access: Access) -> int:
        try:
            record = access.revoke(args.prefix)
        except UnknownKey as error:
            print(f"touchpoints keys revoke: {error}", file=sys.stderr)
            return 1
        print(f"revoked {record.shown_prefix} ({record.name!r}) at {_when(record.revoked_at)}")
        return 0

    return _with_access("keys revoke", revoke)


def login_link(args: argparse.Namespace) -> int:
    def link(settings: Settings, access: Access) -> int:
        base = args.url or f"http://{settings.host}:{settings.port}"
        print(login_url(base, access.login_token()))
        return 0

    return _with_access("login-link", link)



def login_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/login?token={token}"


def _when(moment: object) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined]


def first_start_lines(access: Access, settings: Settings) -> list[str]:
    """At first start, the admin key (made now, or ``TOUCHPOINTS_ADMIN_KEY``) and where its
    hash is kept, to print once; nothing when an admin key exists. The configured key
    itself is never printed."""
    configured = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    first = access.ensure_admin_key(configured)
    if first is None:
        return []
    prefix, where = first.record.shown_prefix, access_path(settings.data)
    if first.key is None:
        return [f"TOUCHPOINTS_ADMIN_KEY is the admin key {prefix}; only its hash is kept, in {where}"]
    return [f"created the admin key {prefix}: shown this once, only its hash is kept, in {where}",
            f"  {first.key}",
            "  (make other keys with `touchpoints keys create`; set TOUCHPOINTS_ADMIN_KEY before a first start "
            "to choose it instead)"]


def login_link_line(access: Access, base_url: str) -> str:
    minutes = int(LOGIN_LINK_TTL.total_seconds() // 60)
    return (f"dashboard login link (works once, for {minutes} minutes; `touchpoints login-link` makes another): "
            f"{login_url(base_url, access.login_token())}")
