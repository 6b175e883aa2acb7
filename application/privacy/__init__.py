"""Personal data sealed at ingestion and erased by destroying keys (crypto-shredding).

``pseudonyms`` (tokens, pure), ``keys`` (the key store port), ``sqlite_keys`` (its SQLite
adapter), ``sealing`` (ingestion seals events), ``opening`` (readers get plaintext back
where the key exists), ``policy`` (what a process is told to do, sendable to decoder
processes), ``erasure`` (destroy a person's keys, record ``customer_erased``), ``mode``
(whether a log is sealed: fixed by its first append, checked by every entry point).
"""
