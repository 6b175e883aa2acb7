"""Where the live views' refreshes spend their time: waiting for the fold's lock (held by
the feed applying a batch), computing the stale documents, encoding them. Totals and the
longest refresh go to ``LiveViews.stats`` (``/metrics``, ``/v1/views/status``), and a slow
refresh is logged with its parts: the documents' freshness is these seconds."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("application.live_views")

SLOW_REFRESH = 1.0  # seconds: a refresh this long is logged with its parts


class RefreshTimes:
    """Seconds of the refreshes so far, by part, and the longest refresh (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = self.computing = self.encoding = 0.0
        self.longest = 0.0

    def add(self, *, waiting: float, computing: float, encoding: float) -> None:
        took = waiting + computing + encoding
        with self._lock:
            self.waiting += waiting
            self.computing += computing
            self.encoding += encoding
            self.longest = max(self.longest, took)
        if took >= SLOW_REFRESH:
            log.info("refreshing the default documents took %.2f s: %.2f waiting for the views' lock, "
                     "%.2f computing, %.2f encoding", took, waiting, computing, encoding)

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "refresh_waiting_seconds": round(self.waiting, 4),
                "refresh_computing_seconds": round(self.computing, 4),
                "refresh_encoding_seconds": round(self.encoding, 4),
                "longest_refresh_seconds": round(self.longest, 4),
            }
