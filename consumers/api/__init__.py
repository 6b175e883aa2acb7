"""The HTTP API (FastAPI): ingestion, the log, schemas, health; live views when wired in."""
