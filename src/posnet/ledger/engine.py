"""A ledger with its own store, for standalone use, tools and benchmarks.

Party cores do not use this: they hold a bare ``Ledger`` and hand its change
set to the runtime, which writes it with the party's other records. The
engine is the same thing in miniature: apply a batch in memory, then write
its changes and commit them in one database transaction (group commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .core import Ledger
from .store import open_store
from .types import Account, CreateAccountResult, CreateTransferResult, Transfer


class LedgerEngine:
    """Owns a ``Ledger`` and a store. Not thread-safe: one writer.

    ``create_accounts`` / ``create_transfers`` / ``expire_pending`` apply to
    memory and stage the change set; ``commit`` writes everything staged in
    one transaction. The ``submit_*`` methods do both: their results are
    durable when they return. If a write fails, the transaction is rolled
    back and the ledger is reloaded from the store, so memory never stays
    ahead of disk; the error is raised again.
    """

    def __init__(self, conn: Any, store: Any, ledger: Ledger | None = None) -> None:
        self.conn = conn
        self.store = store
        self.ledger = store.load() if ledger is None else ledger
        self.commits = 0

    @classmethod
    def open(cls, url: str, *, verify: bool = True) -> "LedgerEngine":
        conn, store = open_store(url)
        return cls(conn, store, store.load(verify=verify))

    # -- staged

    def create_accounts(self, accounts: Sequence[Account], now_ms: int) -> list[CreateAccountResult]:
        return self.ledger.create_accounts(accounts, now_ms)

    def create_transfers(self, transfers: Sequence[Transfer], now_ms: int) -> list[CreateTransferResult]:
        return self.ledger.create_transfers(transfers, now_ms)

    def expire_pending(self, now_ms: int) -> list[int]:
        return self.ledger.expire_pending(now_ms)

    def commit(self) -> None:
        """Write everything staged since the last commit in one transaction and commit it."""
        changes = self.ledger.take_changes()
        if not changes:
            return
        try:
            self.store.write(changes)
            self.conn.commit()
        except BaseException:
            try:
                self.conn.rollback()
            finally:
                self.ledger = self.store.load()
            raise
        self.commits += 1

    # -- applied and committed

    def submit_accounts(self, accounts: Sequence[Account], now_ms: int) -> list[CreateAccountResult]:
        results = self.ledger.create_accounts(accounts, now_ms)
        self.commit()
        return results

    def submit_transfers(self, transfers: Sequence[Transfer], now_ms: int) -> list[CreateTransferResult]:
        results = self.ledger.create_transfers(transfers, now_ms)
        self.commit()
        return results

    def submit_expiry(self, now_ms: int) -> list[int]:
        expired = self.ledger.expire_pending(now_ms)
        self.commit()
        return expired

    def close(self) -> None:
        """Commit what is staged and close the connection."""
        try:
            self.commit()
        finally:
            self.conn.close()

    def __enter__(self) -> "LedgerEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.conn.close()
