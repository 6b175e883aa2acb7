"""Logging of the long-running commands: the Kafka clients' shutdown noise stays out."""

import logging

from consumers.cli.logs import configure_logging


def test_a_metadata_refresh_cancelled_by_closing_a_client__is_not_logged_but_other_errors_are(caplog):
    configure_logging("INFO")
    cluster = logging.getLogger("kafka.cluster")

    with caplog.at_level(logging.INFO):
        cluster.error("Metadata refresh: failed %s", "Cancelled")
        cluster.error("Metadata refresh: failed %s", "NodeNotReadyError: 1")

    assert [record.getMessage() for record in caplog.records] == ["Metadata refresh: failed NodeNotReadyError: 1"]


def test_configuring_twice__adds_the_filter_once():
    configure_logging("INFO")
    configure_logging("INFO")

    assert sum(type(f).__name__ == "CancelledRefreshFilter" for f in logging.getLogger("kafka.cluster").filters) == 1
