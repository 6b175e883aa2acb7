"""Access control: API keys with scopes, emit keys narrowed to a source and event types,
one-time dashboard login links and read-only sessions. ``keys`` and ``narrowing`` are pure;
``store`` is the port, ``sqlite`` its default adapter (``<data>/access.db``), ``service``
the use cases over it."""

from application.access.keys import KeyFormatError, KeyRecord, Principal, Scope, parse_scopes
from application.access.service import Access, FirstAdminKey, Unauthorized, UnknownKey, access_path, open_access

__all__ = ["Access", "FirstAdminKey", "KeyFormatError", "KeyRecord", "Principal", "Scope", "Unauthorized",
           "UnknownKey", "access_path", "open_access", "parse_scopes"]
