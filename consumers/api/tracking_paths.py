"""The tracking API's paths (Segment spec) and the message type each implies (None: a batch).

Its own module so the access gate and admission control can name these paths without
importing the routes (which import them)."""

from __future__ import annotations

PATH_TYPES: dict[str, str | None] = {
    "/v1/track": "track", "/t": "track",
    "/v1/identify": "identify", "/i": "identify",
    "/v1/page": "page", "/p": "page",
    "/v1/screen": "screen", "/s": "screen",
    "/v1/group": "group", "/g": "group",
    "/v1/alias": "alias", "/a": "alias",
    "/v1/batch": None, "/b": None,
}
# analytics.js appends its short paths to ``apiHost``, whose default (api.segment.io/v1) ends in /v1.
PATH_TYPES.update({f"/v1{path}": kind for path, kind in list(PATH_TYPES.items()) if not path.startswith("/v1/")})
TRACKING_PATHS = frozenset(PATH_TYPES)
