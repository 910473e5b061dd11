"""Double-entry books with holds: TigerBeetle's model, in memory, persisted to SQLite or PostgreSQL.

``Ledger`` is the pure state machine a party core holds; ``take_changes``
hands what changed to a store (``SqliteLedgerStore``, ``PostgresLedgerStore``)
that writes it in the caller's transaction, and ``load`` rebuilds the ledger
at start. ``LedgerEngine`` pairs a ledger with a store for standalone use.
See docs/ledger.md.
"""

from .core import Ledger
from .engine import LedgerEngine
from .store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresLedgerStore,
    SqliteLedgerStore,
    open_store,
)
from .types import (
    BALANCE_MAX,
    EXPIRED,
    PENDING,
    POSTED,
    U128_MAX,
    VOIDED,
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    LedgerChanges,
    Transfer,
    TransferFlags,
)

__all__ = [
    "Account",
    "AccountBalance",
    "AccountFlags",
    "BALANCE_MAX",
    "CreateAccountResult",
    "CreateTransferResult",
    "EXPIRED",
    "Ledger",
    "LedgerChanges",
    "LedgerEngine",
    "MIGRATIONS",
    "PENDING",
    "POSTED",
    "PostgresLedgerStore",
    "SCHEMA_VERSION",
    "SqliteLedgerStore",
    "Transfer",
    "TransferFlags",
    "U128_MAX",
    "VOIDED",
    "open_store",
]
