"""Touchpoint events: schemas, the registry, the event-store port and its adapters.

Depends only on pydantic, orjson and the standard library (adapters also on the
client of the storage they wrap).
"""
