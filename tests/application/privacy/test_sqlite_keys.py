"""The SQLite key store: a destroyed key is gone from the file and its journal."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from application.privacy.sqlite_keys import SQLiteKeyStore


def files_hold(folder: Path, needle: bytes) -> list[str]:
    return [path.name for path in folder.iterdir() if path.is_file() and needle in path.read_bytes()]


def test_key_store__a_destroyed_key_is_in_no_file_of_the_store(tmp_path):
    keys = SQLiteKeyStore(tmp_path / "keys.db")
    key, identity = os.urandom(64), os.urandom(40)
    others = {f"pii1.other{index:021d}": (os.urandom(64), os.urandom(40)) for index in range(200)}
    keys.ensure({"pii1.anna00000000000000000000": (key, identity), **others})
    assert files_hold(tmp_path, key)  # written: in the journal or the file

    destroyed = keys.destroy(["pii1.anna00000000000000000000"])

    assert (destroyed.keys, destroyed.journal_emptied) == (1, True)
    assert files_hold(tmp_path, key) == [] and files_hold(tmp_path, identity) == []
    assert keys.keys(others) == {key_id: pair[0] for key_id, pair in others.items()}
    keys.close()


def test_key_store__each_destroy_counts_an_erasure(tmp_path):
    keys = SQLiteKeyStore(tmp_path / "keys.db")

    keys.destroy(["pii1.nobody"])
    keys.destroy([])

    assert keys.generation() == 2
    keys.close()


def test_key_store__the_pepper_is_made_once_and_kept(tmp_path):
    first = SQLiteKeyStore(tmp_path / "keys.db")
    second = SQLiteKeyStore(tmp_path / "keys.db")

    assert first.pepper() == second.pepper() and len(first.pepper()) == 32
    first.close()
    second.close()


def test_key_store__a_store_made_with_the_earlier_table_layout_keeps_working(tmp_path):
    # given: a key store file made before the keys table was a rowid table
    path = tmp_path / "keys.db"
    earlier = sqlite3.connect(path)
    earlier.executescript(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
        "CREATE TABLE keys (id TEXT PRIMARY KEY, key BLOB NOT NULL, identity BLOB NOT NULL) WITHOUT ROWID;"
    )
    earlier.execute("INSERT INTO keys VALUES ('pii1.kept000000000000000000', ?, ?)", (b"k" * 64, b"kept"))
    earlier.commit()
    earlier.close()
    keys = SQLiteKeyStore(path)
    key = os.urandom(64)

    # when: keys are made, read and destroyed through it
    made = keys.ensure({"pii1.anna00000000000000000000": (key, b"anna"), "pii1.kept000000000000000000": (b"x" * 64, b"x")})
    destroyed = keys.destroy(["pii1.anna00000000000000000000"])

    # then: the earlier key was kept, the new one made and then gone from every file
    assert made == {"pii1.anna00000000000000000000": key, "pii1.kept000000000000000000": b"k" * 64}
    assert destroyed.keys == 1 and files_hold(tmp_path, key) == []
    assert keys.identities(["pii1.kept000000000000000000", "pii1.anna00000000000000000000"]) == {
        "pii1.kept000000000000000000": (b"k" * 64, b"kept")}
    keys.close()
