"""A party's store: its records and, for a party with books, its ledger.

One SQLite file per party (WAL, ``synchronous=FULL``: an acknowledged
reversal or approval must survive a power cut), or a PostgreSQL schema.
Records are JSON documents in one table keyed by (table, key); the ledger
keeps its own tables (posnet.ledger). Both are written in one transaction:
what a core decided is committed as a whole or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from ..effects import Delete, LedgerWrite, Put
from ..ledger import Ledger, PostgresLedgerStore, SqliteLedgerStore

RECORDS_SCHEMA_VERSION = 1
# SQLite's page cache per party, an upper bound (pages are taken as a transaction needs them):
# a commit of a million records touches more pages than the default 2 MiB holds, and every
# page it must drop mid-transaction is written to the WAL, sometimes again and again.
SQLITE_CACHE_KIB = 256 * 1024


def _row_order(row: tuple[str, str, str]) -> str:
    return row[0] + "\0" + row[1]


class PartyStore:
    """Records and ledger of one party, in SQLite (``path``) or PostgreSQL (``postgresql://`` URL)."""

    def __init__(self, location: str | Path, *, with_ledger: bool = False, schema: str | None = None):
        self.location = str(location)
        self.is_postgres = self.location.startswith(("postgresql://", "postgres://"))
        self.ledger_store: SqliteLedgerStore | PostgresLedgerStore | None = None
        if self.is_postgres:
            import psycopg

            self.conn = psycopg.connect(self.location, autocommit=True)
            if schema:
                self.conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self.conn.execute(f'SET search_path TO "{schema}"')
            self._ph = "%s"
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (tbl, key))"
            )
            self.conn.autocommit = False
            if with_ledger:
                self.ledger_store = PostgresLedgerStore(self.conn)
        else:
            Path(self.location).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            self._ph = "?"
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (tbl, key)) WITHOUT ROWID"
            )
            if with_ledger:
                self.ledger_store = SqliteLedgerStore(self.conn)
        if self.ledger_store is not None:
            self.ledger_store.migrate()
            if self.is_postgres:
                self.conn.commit()

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        for tbl, key, value in self.conn.execute("SELECT tbl, key, value FROM records").fetchall():
            tables.setdefault(tbl, {})[key] = json.loads(value)
        if self.is_postgres:
            self.conn.commit()
        return tables

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        """One table's records (for a reader beside the running party, e.g. `posnet sms --outbox`)."""
        sql = f"SELECT key, value FROM records WHERE tbl = {self._ph}"
        out = {key: json.loads(value) for key, value in self.conn.execute(sql, (table,)).fetchall()}
        if self.is_postgres:
            self.conn.commit()
        return out

    def load_ledger(self) -> Ledger:
        assert self.ledger_store is not None, "this party keeps no books"
        ledger = self.ledger_store.load()
        if self.is_postgres:
            self.conn.commit()
        return ledger

    def commit(self, records: Iterable[Put | Delete | LedgerWrite]) -> None:
        """Write a group of records in one transaction (group commit)."""
        ph = self._ph
        upsert = (
            f"INSERT INTO records (tbl, key, value) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value"
        )
        delete = f"DELETE FROM records WHERE tbl = {ph} AND key = {ph}"
        puts: dict[tuple[str, str], str | None] = {}
        ledger_writes = []
        for r in records:
            if isinstance(r, Put):
                puts[(r.table, r.key)] = r.encoded
            elif isinstance(r, Delete):
                puts[(r.table, r.key)] = None
            elif isinstance(r, LedgerWrite):
                ledger_writes.append(r.changes)
        if not puts and not ledger_writes:
            return
        cur = self.conn.cursor()
        if not self.is_postgres:
            cur.execute("BEGIN IMMEDIATE")
        try:
            # In key order: each row then lands beside the last in the table's B-tree, not on a
            # random page (an input's records come in any key order). Invisible to readers.
            # Sorted on one string (list.sort compares plain strings fast, tuples of equal tables slowly);
            # "\0" sorts before any character, so this is SQLite's (tbl, key) order.
            rows = sorted(((t, k, v) for (t, k), v in puts.items() if v is not None), key=_row_order)
            gone = [(t, k) for (t, k), v in puts.items() if v is None]
            if rows:
                cur.executemany(upsert, rows)
            if gone:
                cur.executemany(delete, gone)
            for changes in ledger_writes:
                assert self.ledger_store is not None
                self.ledger_store.write(changes)
            self.conn.commit() if self.is_postgres else cur.execute("COMMIT")
        except BaseException:
            self.conn.rollback() if self.is_postgres else cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()
