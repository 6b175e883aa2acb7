"""Logging for the long-running commands: one format, and the Kafka clients' chatter
(every connection and metadata refresh at INFO) kept out unless DEBUG is asked for."""

from __future__ import annotations

import logging

CHATTY_LIBRARIES = ("kafka", "aiokafka")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    cluster = logging.getLogger("kafka.cluster")
    if not any(isinstance(f, CancelledRefreshFilter) for f in cluster.filters):
        cluster.addFilter(CancelledRefreshFilter())


class CancelledRefreshFilter(logging.Filter):
    """kafka-python logs the metadata refresh that closing a client cancels as an ERROR:
    every clean shutdown printed one. Only a close cancels a refresh, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Metadata refresh: failed Cancelled")
