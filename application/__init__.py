"""The application layer: what the platform does, between the pure projections and the shells.

Ingestion (decode → encoded batch → append), the fold shell, live views, replay, verify,
exports, the demo and the settings live here. It may import ``events`` and ``projections``;
the shells (``streams/`` for Kafka and Faust, ``consumers/`` for HTTP, CLI and dashboard)
import it, never the other way round (``tests/test_dependencies.py``).
"""
