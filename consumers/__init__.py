"""Consumers of the log and the views: HTTP API, dashboard, CLI, replay, exports."""
