"""Where the ledger's truth lives on disk: SQLite (stdlib, WAL) and PostgreSQL (psycopg 3).

One schema and one list of migrations serve both dialects; the only
differences are two type spellings (see ``_DIALECTS``).

Identifiers (account and transfer ids, pending_id, user_data) are unsigned
128-bit integers. They are stored as decimal numbers: ``TEXT`` holding the
decimal digits on SQLite (whose INTEGER is only 64-bit) and ``NUMERIC(39, 0)``
on PostgreSQL. Amounts, balances and times are ``BIGINT`` (signed 64-bit)
in both; the ledger never lets a balance pass 2**63 - 1.

The tables are append-only: accounts, transfers and expiry records are
immutable, and balances are not stored but rebuilt from the transfers at
load (the ``ledger_balances`` view computes them in SQL for people).

A store never commits the caller's work: ``write`` runs its statements on the
caller's connection inside the caller's transaction, so the ledger's changes
commit together with the party's other records (persist, then speak).
``migrate`` is the exception: it commits the schema change it makes.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .core import Ledger
from .types import LedgerChanges

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SqliteLedgerStore",
    "PostgresLedgerStore",
    "open_store",
]

_DIALECTS = {
    "sqlite": {
        "u128": "TEXT",
        "seq_pk": "INTEGER PRIMARY KEY",  # an alias of the rowid
    },
    "postgresql": {
        "u128": "NUMERIC(39, 0)",
        "seq_pk": "BIGINT PRIMARY KEY",
    },
}

# For people and reports, not for the ledger: balances as the sum of the transfers. A pending
# transfer counts while nothing resolved it.
_BALANCES_VIEW = """CREATE VIEW ledger_balances AS
            WITH standing AS (
                SELECT t.* FROM ledger_transfers t
                WHERE (t.flags & 2) = 0
                   OR (NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)
                       AND NOT EXISTS (SELECT 1 FROM ledger_expiries e WHERE e.pending_id = t.id))
            ),
            moves AS (
                SELECT debit_account_id AS account_id,
                       CASE WHEN (flags & 2) <> 0 THEN amount ELSE 0 END AS dp,
                       CASE WHEN (flags & 10) = 0 THEN amount ELSE 0 END AS dpo,
                       0 AS cp, 0 AS cpo
                FROM standing
                UNION ALL
                SELECT credit_account_id,
                       0, 0,
                       CASE WHEN (flags & 2) <> 0 THEN amount ELSE 0 END,
                       CASE WHEN (flags & 10) = 0 THEN amount ELSE 0 END
                FROM standing
            )
            SELECT a.id, a.ledger, a.code, a.flags, a.user_data,
                   COALESCE(SUM(m.dp), 0) AS debits_pending,
                   COALESCE(SUM(m.dpo), 0) AS debits_posted,
                   COALESCE(SUM(m.cp), 0) AS credits_pending,
                   COALESCE(SUM(m.cpo), 0) AS credits_posted
            FROM ledger_accounts a LEFT JOIN moves m ON m.account_id = a.id
            GROUP BY a.id, a.ledger, a.code, a.flags, a.user_data"""

#: (version, description, statements). Statements use {u128}, {seq_pk}, filled
#: in per dialect. Append new steps; never edit old ones once released.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "ledger accounts, transfers, expiries; balances view",
        [
            # Everything is append-only and keyed by a sequence number, so a
            # commit writes a few pages at the end of each table. Balances are
            # not stored: they are the sum of the transfers (ledger_balances).
            # No secondary indexes: the hot state is in memory, and an index
            # on random 128-bit ids would dirty a page per row.
            """CREATE TABLE ledger_accounts (
                seq {seq_pk},
                id {u128} NOT NULL UNIQUE,
                ledger BIGINT NOT NULL,
                code INTEGER NOT NULL,
                flags INTEGER NOT NULL,
                user_data {u128} NOT NULL,
                timestamp_ms BIGINT NOT NULL
            )""",
            """CREATE TABLE ledger_transfers (
                seq {seq_pk},
                id {u128} NOT NULL,
                debit_account_id {u128} NOT NULL,
                credit_account_id {u128} NOT NULL,
                amount BIGINT NOT NULL CHECK (amount >= 0),
                ledger BIGINT NOT NULL,
                code INTEGER NOT NULL,
                flags INTEGER NOT NULL,
                pending_id {u128} NOT NULL,
                user_data {u128} NOT NULL,
                timeout_s BIGINT NOT NULL,
                timestamp_ms BIGINT NOT NULL
            )""",
            """CREATE TABLE ledger_expiries (
                pending_id {u128} NOT NULL PRIMARY KEY,
                timestamp_ms BIGINT NOT NULL
            )""",
            _BALANCES_VIEW,
        ],
    ),
    (
        2,
        "expiries appended in the order they happen, numbered like transfers",
        [
            # Keyed by pending id, each expiry of a sweep landed on a random page of the table and of its
            # index; numbered, a million of them are written at the end, in a third of the time. A
            # change set written twice is still refused (its numbers are taken), and the ledger refuses
            # at load an expiry of a transfer that is not pending.
            "DROP VIEW ledger_balances",
            """CREATE TABLE ledger_expiries_in_order (
                seq {seq_pk},
                pending_id {u128} NOT NULL,
                timestamp_ms BIGINT NOT NULL
            )""",
            """INSERT INTO ledger_expiries_in_order (seq, pending_id, timestamp_ms)
               SELECT ROW_NUMBER() OVER (ORDER BY timestamp_ms, pending_id), pending_id, timestamp_ms FROM ledger_expiries""",
            "DROP TABLE ledger_expiries",
            "ALTER TABLE ledger_expiries_in_order RENAME TO ledger_expiries",
            _BALANCES_VIEW,
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS ledger_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL
)"""

_ACCOUNT_COLS = "seq, id, ledger, code, flags, user_data, timestamp_ms"
_TRANSFER_COLS = (
    "seq, id, debit_account_id, credit_account_id, amount, ledger, code, flags,"
    " pending_id, user_data, timeout_s, timestamp_ms"
)


def _statements(dialect: str, statements: list[str]) -> list[str]:
    return [s.format(**_DIALECTS[dialect]) for s in statements]


def _check_version(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the ledger schema in this database is version {current}; this code knows up to {SCHEMA_VERSION}"
        )


# ---------------------------------------------------------------------- SQLite


class SqliteLedgerStore:
    """The ledger's tables in a SQLite database (stdlib ``sqlite3``, WAL)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def schema_version(self) -> int:
        row = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ledger_schema_version'"
        ).fetchone()
        if row is None:
            return 0
        (v,) = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version").fetchone()
        return v

    def migrate(self) -> None:
        """Bring the schema up to date, in one transaction, and commit it."""
        conn = self.conn
        if conn.in_transaction:
            raise RuntimeError("migrate() runs its own transaction; commit or roll back first")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_VERSION_TABLE)
            (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version").fetchone()
            _check_version(current)
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for sql in _statements(self.dialect, statements):
                    conn.execute(sql)
                conn.execute(
                    "INSERT INTO ledger_schema_version (version, description) VALUES (?, ?)",
                    (version, description),
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def write(self, changes: LedgerChanges) -> None:
        """Write a change set on the caller's connection. Does not commit.

        Opens a transaction if none is open. If this raises, the caller's
        transaction holds part of the change set: roll it back (and reload
        the ledger, which is now ahead of the database).
        """
        if not changes:
            return
        conn = self.conn
        if not conn.in_transaction:
            conn.execute("BEGIN")
        if changes.accounts:
            conn.executemany(
                f"INSERT INTO ledger_accounts ({_ACCOUNT_COLS}) VALUES (?,?,?,?,?,?,?)",
                [(seq, str(aid), ledger, code, flags, str(ud), ts) for seq, aid, ledger, code, flags, ud, ts in
                 changes.accounts],
            )
        if changes.transfers:
            seq = changes.first_transfer_seq
            rows = []
            append = rows.append
            for t in changes.transfers:
                append(
                    (
                        seq,
                        str(t.id),
                        str(t.debit_account_id),
                        str(t.credit_account_id),
                        t.amount,
                        t.ledger,
                        t.code,
                        t.flags.value,
                        str(t.pending_id),
                        str(t.user_data),
                        t.timeout_s,
                        t.timestamp_ms,
                    )
                )
                seq += 1
            conn.executemany(
                f"INSERT INTO ledger_transfers ({_TRANSFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
        if changes.expiries:  # appended in the order they expired, at the end of the table
            conn.executemany(
                "INSERT INTO ledger_expiries (seq, pending_id, timestamp_ms) VALUES (?, ?, ?)",
                [(seq, str(pid), ts) for seq, (pid, ts) in enumerate(changes.expiries, changes.first_expiry_seq)],
            )

    def load(self, verify: bool = True) -> Ledger:
        """Rebuild the ledger from the tables; with ``verify``, run ``check_invariants`` on it."""
        conn = self.conn
        ledger = Ledger()
        accounts = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM ledger_accounts ORDER BY seq")
        transfers = conn.execute(f"SELECT {_TRANSFER_COLS} FROM ledger_transfers ORDER BY seq")
        expiries = conn.execute("SELECT pending_id, timestamp_ms FROM ledger_expiries ORDER BY seq")
        ledger._restore(accounts, transfers, expiries)
        if verify:
            ledger.check_invariants()
        return ledger


# ------------------------------------------------------------------ PostgreSQL


def _pg_int_loader():
    from psycopg.adapt import Loader

    class IntFromNumeric(Loader):
        """Load NUMERIC(39, 0) as int rather than Decimal."""

        def load(self, data: Any) -> int:
            return int(bytes(data))

    return IntFromNumeric


class PostgresLedgerStore:
    """The ledger's tables in PostgreSQL (psycopg 3), in the connection's search_path schema."""

    dialect = "postgresql"
    _loader = None

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def schema_version(self) -> int:
        from psycopg.pq import TransactionStatus

        conn = self.conn
        was_idle = conn.info.transaction_status == TransactionStatus.IDLE
        (exists,) = conn.execute("SELECT to_regclass('ledger_schema_version') IS NOT NULL").fetchone()
        v = 0
        if exists:
            (v,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version").fetchone()
        if was_idle and not conn.autocommit:
            conn.rollback()
        return v

    def migrate(self) -> None:
        """Bring the schema up to date, in one transaction, and commit it."""
        from psycopg.pq import TransactionStatus

        conn = self.conn
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("migrate() runs its own transaction; commit or roll back first")
        with conn.transaction():
            # Two processes migrating the same schema at once take turns.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ledger_schema'))")
            conn.execute(_VERSION_TABLE)
            (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version").fetchone()
            _check_version(current)
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for sql in _statements(self.dialect, statements):
                    conn.execute(sql)
                conn.execute(
                    "INSERT INTO ledger_schema_version (version, description) VALUES (%s, %s)",
                    (version, description),
                )
        if not conn.autocommit:
            conn.commit()

    def write(self, changes: LedgerChanges) -> None:
        """Write a change set on the caller's connection, in its transaction. Does not commit.

        Each table gets one statement, whatever the batch size: rows travel
        as arrays and are unnested on the server.
        """
        if not changes:
            return
        from psycopg.pq import TransactionStatus

        conn = self.conn
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            raise RuntimeError("write() needs a transaction: use a non-autocommit connection or open one")
        with conn.cursor() as cur:
            if changes.accounts:
                cols = [list(c) for c in zip(*changes.accounts)]
                cols[1] = [str(v) for v in cols[1]]
                cols[5] = [str(v) for v in cols[5]]
                cur.execute(
                    f"INSERT INTO ledger_accounts ({_ACCOUNT_COLS}) SELECT * FROM unnest("
                    "%s::bigint[], %s::text[]::numeric[], %s::bigint[], %s::int[], %s::int[],"
                    " %s::text[]::numeric[], %s::bigint[])",
                    cols,
                )
            if changes.transfers:
                ts = changes.transfers
                n = len(ts)
                first = changes.first_transfer_seq
                cur.execute(
                    f"INSERT INTO ledger_transfers ({_TRANSFER_COLS}) SELECT * FROM unnest("
                    "%s::bigint[], %s::text[]::numeric[], %s::text[]::numeric[], %s::text[]::numeric[],"
                    " %s::bigint[], %s::bigint[], %s::int[], %s::int[], %s::text[]::numeric[],"
                    " %s::text[]::numeric[], %s::bigint[], %s::bigint[])",
                    [
                        list(range(first, first + n)),
                        [str(t.id) for t in ts],
                        [str(t.debit_account_id) for t in ts],
                        [str(t.credit_account_id) for t in ts],
                        [t.amount for t in ts],
                        [t.ledger for t in ts],
                        [t.code for t in ts],
                        [t.flags.value for t in ts],
                        [str(t.pending_id) for t in ts],
                        [str(t.user_data) for t in ts],
                        [t.timeout_s for t in ts],
                        [t.timestamp_ms for t in ts],
                    ],
                )
            if changes.expiries:
                first = changes.first_expiry_seq
                cur.execute(
                    "INSERT INTO ledger_expiries (seq, pending_id, timestamp_ms)"
                    " SELECT * FROM unnest(%s::bigint[], %s::text[]::numeric[], %s::bigint[])",
                    [list(range(first, first + len(changes.expiries))), [str(pid) for pid, _ in changes.expiries],
                     [ts for _, ts in changes.expiries]],
                )

    def load(self, verify: bool = True) -> Ledger:
        """Rebuild the ledger from the tables; with ``verify``, run ``check_invariants`` on it.

        Rows stream through server-side cursors, 20,000 at a time, so the
        rows never sit in memory all at once beside the ledger built from them.
        """
        if PostgresLedgerStore._loader is None:
            PostgresLedgerStore._loader = _pg_int_loader()
        conn = self.conn
        ledger = Ledger()

        def rows(name: str, sql: str):
            with conn.cursor(name=name) as cur:
                cur.adapters.register_loader("numeric", PostgresLedgerStore._loader)
                cur.itersize = 20_000
                cur.execute(sql)
                yield from cur

        # A transaction of its own (or a savepoint in the caller's): committed, so
        # the connection is left as it was found.
        with conn.transaction():
            ledger._restore(
                rows("ledger_load_accounts", f"SELECT {_ACCOUNT_COLS} FROM ledger_accounts ORDER BY seq"),
                rows("ledger_load_transfers", f"SELECT {_TRANSFER_COLS} FROM ledger_transfers ORDER BY seq"),
                rows("ledger_load_expiries", "SELECT pending_id, timestamp_ms FROM ledger_expiries ORDER BY seq"),
            )
        if verify:
            ledger.check_invariants()
        return ledger


# --------------------------------------------------------------------- opening


def open_sqlite(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A SQLite connection set up the way posnet uses it: WAL, foreign work in explicit transactions."""
    conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
    return conn


def open_store(url: str, *, migrate: bool = True):
    """Open a connection and its ledger store from a URL; returns ``(conn, store)``.

    ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` or
    ``sqlite:///:memory:`` (optional ``?synchronous=normal``; the default is
    FULL), or a PostgreSQL URL such as
    ``postgresql://127.0.0.1:5432/test?options=-csearch_path%3Dmyschema``.
    With ``migrate`` (the default) the schema is brought up to date.
    """
    if url.startswith("sqlite://"):
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(f"no file in {url!r}")
        query = parse_qs(parts.query)
        sync = query.get("synchronous", ["FULL"])[0].upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={sync!r} is not one of OFF, NORMAL, FULL, EXTRA")
        conn = open_sqlite(path, sync)
        store: Any = SqliteLedgerStore(conn)
    elif url.startswith(("postgresql://", "postgres://")):
        import psycopg

        conn = psycopg.connect(url)
        store = PostgresLedgerStore(conn)
    else:
        raise ValueError(f"unsupported store URL {url!r}: use sqlite:///path or postgresql://...")
    if migrate:
        store.migrate()
    return conn, store
