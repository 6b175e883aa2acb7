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
