"""Fixtures for the ledger tests: a store of each kind, reopenable.

PostgreSQL is 127.0.0.1:5432, database ``test``, trust auth. Each test gets a
fresh schema with a random name, dropped afterwards, so parallel runs do not
collide. When PostgreSQL cannot be reached the PostgreSQL cases skip and say
why, unless POSNET_REQUIRE_POSTGRES=1, when they fail.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from urllib.parse import quote

import pytest

from posnet.ledger import PostgresLedgerStore, SqliteLedgerStore
from posnet.ledger.store import open_sqlite

# POSNET_TEST_PG_URL points the tests at another server (default: the one DESIGN.md names).
PG_BASE = os.environ.get("POSNET_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")


def _pg_admin():
    """An autocommit connection to the test database, or skip/fail saying why."""
    try:
        import psycopg

        return psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001 - any failure to connect means "no PostgreSQL here"
        if os.environ.get("POSNET_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (POSNET_REQUIRE_POSTGRES=1) but unreachable at {PG_BASE}: {e}")
        pytest.skip(f"no PostgreSQL at {PG_BASE}: {e}")


class StoreFactory:
    """Opens connections to one database (a SQLite file or a PostgreSQL schema) and its store."""

    def __init__(self, kind: str, url: str, opener):
        self.kind = kind
        self.url = url
        self._opener = opener
        self._conns: list = []

    def open(self, migrate: bool = True):
        conn, store = self._opener()
        self._conns.append(conn)
        if migrate:
            store.migrate()
        return conn, store

    def close_all(self) -> None:
        for c in self._conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing after a failed test
                pass


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    with _pg_schema() as url:
        yield url


class _pg_schema:
    def __enter__(self) -> str:
        self.admin = _pg_admin()
        self.schema = f"ledger_t_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE SCHEMA "{self.schema}"')
        return f"{PG_BASE}?options={quote(f'-csearch_path={self.schema}')}"

    def __exit__(self, *exc) -> None:
        # A connection left inside a transaction would block the drop: give up after a while.
        self.admin.execute("SET lock_timeout = '20s'")
        self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_factory(request, tmp_path):
    if request.param == "sqlite":
        path = str(tmp_path / "ledger.db")

        def opener():
            conn = open_sqlite(path)
            return conn, SqliteLedgerStore(conn)

        factory = StoreFactory("sqlite", f"sqlite:///{path}", opener)
        try:
            yield factory
        finally:
            factory.close_all()
    else:
        import psycopg

        with _pg_schema() as url:

            def opener():
                conn = psycopg.connect(url)
                return conn, PostgresLedgerStore(conn)

            factory = StoreFactory("postgres", url, opener)
            try:
                yield factory
            finally:
                factory.close_all()


@pytest.fixture
def memory_sqlite():
    conn = sqlite3.connect(":memory:")
    store = SqliteLedgerStore(conn)
    store.migrate()
    yield conn, store
    conn.close()
