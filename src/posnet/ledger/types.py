"""The ledger's vocabulary: flags, accounts, transfers, results, change sets.

The model is TigerBeetle's (DESIGN.md principle 5). Amounts are integers of
minor units (principle 7). Identifiers are unsigned 128-bit integers chosen
by the caller; zero and 2**128 - 1 are reserved.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

U128_MAX = (1 << 128) - 1
U32_MAX = (1 << 32) - 1
U16_MAX = (1 << 16) - 1
#: Largest value any balance field (and so any stored amount) may reach: it is
#: stored as a signed 64-bit integer in both SQL dialects.
BALANCE_MAX = (1 << 63) - 1


class AccountFlags(enum.IntFlag):
    NONE = 0
    #: This account's creation is linked to the next one in the batch: all or nothing.
    LINKED = 1 << 0
    #: debits_pending + debits_posted may never exceed credits_posted (a liability
    #: the bank owes, such as a cardholder's deposit account).
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    #: credits_pending + credits_posted may never exceed debits_posted.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    #: The account takes no new transfers (voids of its pending transfers still work).
    CLOSED = 1 << 3


class TransferFlags(enum.IntFlag):
    NONE = 0
    #: This transfer is linked to the next one in the batch: all or nothing.
    LINKED = 1 << 0
    #: Reserve the amount (debits_pending / credits_pending) until posted, voided or expired.
    PENDING = 1 << 1
    #: Post the pending transfer named by pending_id (all of it, or part: the rest is released).
    POST_PENDING = 1 << 2
    #: Release the pending transfer named by pending_id.
    VOID_PENDING = 1 << 3
    #: Clamp the amount to what the debit account's credits allow.
    BALANCING_DEBIT = 1 << 4
    #: Clamp the amount to what the credit account's debits allow.
    BALANCING_CREDIT = 1 << 5
    #: A pending transfer that closes its debit account while it stands (void or expiry reopens).
    CLOSING_DEBIT = 1 << 6
    #: A pending transfer that closes its credit account while it stands (void or expiry reopens).
    CLOSING_CREDIT = 1 << 7


ACCOUNT_FLAGS_ALL = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.CLOSED
)
TRANSFER_FLAGS_ALL = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING
    | TransferFlags.VOID_PENDING
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
    | TransferFlags.CLOSING_DEBIT
    | TransferFlags.CLOSING_CREDIT
)


@dataclass(frozen=True, slots=True)
class Account:
    """An account to create. Balances start at zero and live in the Ledger."""

    id: int
    ledger: int
    code: int
    flags: AccountFlags = AccountFlags.NONE
    user_data: int = 0


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account as it stands now (``Ledger.account``)."""

    id: int
    ledger: int
    code: int
    flags: AccountFlags
    user_data: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    timestamp_ms: int

    @property
    def debits(self) -> int:
        return self.debits_pending + self.debits_posted

    @property
    def credits(self) -> int:
        return self.credits_pending + self.credits_posted

    @property
    def available_credit_balance(self) -> int:
        """credits_posted - debits_posted - debits_pending: what a liability account can still spend."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def available_debit_balance(self) -> int:
        """debits_posted - credits_posted - credits_pending: the mirror for asset accounts."""
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(frozen=True, slots=True)
class Transfer:
    """An immutable movement of ``amount`` minor units from one account to another.

    ``id`` is chosen by the caller (nonzero, 128-bit) and makes a retry harmless.
    ``user_data`` carries the transaction's lifecycle id. ``timestamp_ms`` is
    ignored on input and set by the ledger. For a post or void, the account ids,
    ledger, code, amount and user_data may be left zero: the stored transfer
    takes them from the pending transfer (a post's amount 0 means the full
    pending amount).
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: TransferFlags = TransferFlags.NONE
    pending_id: int = 0
    user_data: int = 0
    timeout_s: int = 0
    timestamp_ms: int = 0


class CreateAccountResult(str, enum.Enum):
    """The outcome of one account in ``create_accounts``, listed in order of precedence."""

    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    EXISTS = "exists"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"

    def __str__(self) -> str:
        return self.value


class CreateTransferResult(str, enum.Enum):
    """The outcome of one transfer in ``create_transfers``, listed in order of precedence."""

    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    EXISTS = "exists"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "debit_account_id_must_not_be_zero"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = "debit_account_id_must_not_be_int_max"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "credit_account_id_must_not_be_zero"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = "credit_account_id_must_not_be_int_max"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_NOT_BE_INT_MAX = "pending_id_must_not_be_int_max"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    CLOSING_TRANSFER_MUST_BE_PENDING = "closing_transfer_must_be_pending"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = "accounts_must_have_the_same_ledger"
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = "transfer_must_have_the_same_ledger_as_accounts"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = "pending_transfer_has_different_debit_account_id"
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = "pending_transfer_has_different_credit_account_id"
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = "pending_transfer_has_different_ledger"
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = "pending_transfer_has_different_code"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    DEBIT_ACCOUNT_ALREADY_CLOSED = "debit_account_already_closed"
    CREDIT_ACCOUNT_ALREADY_CLOSED = "credit_account_already_closed"
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"

    def __str__(self) -> str:
        return self.value


#: Values of ``Ledger.pending_status``.
PENDING = "pending"
POSTED = "posted"
VOIDED = "voided"
EXPIRED = "expired"


@dataclass(slots=True)
class LedgerChanges:
    """What the ledger created since the last ``take_changes``, for a store to append.

    Everything in it is new: accounts, transfers and expiry records are
    immutable once created, and balances are not part of it because the
    stores do not keep them: they are the sum of the transfers and are
    rebuilt at load (as TigerBeetle derives them from its transfers). So
    writing is append-only. Several change sets written in the order they
    were taken, in one transaction, are fine.

    - ``accounts``: new accounts as rows ``(seq, id, ledger, code, flags,
      user_data, timestamp_ms)``, flags as created;
    - ``transfers``: new transfers in creation order; the first has sequence
      number ``first_transfer_seq`` and the rest follow one by one;
    - ``expiries``: pending transfers that expired, ``(pending_id, timestamp_ms)``,
      in the order they expired; the first has sequence number
      ``first_expiry_seq`` and the rest follow one by one.
    """

    accounts: list[tuple] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    first_transfer_seq: int = 0
    expiries: list[tuple[int, int]] = field(default_factory=list)
    first_expiry_seq: int = 0

    @property
    def empty(self) -> bool:
        return not (self.accounts or self.transfers or self.expiries)

    def __bool__(self) -> bool:
        return not self.empty

    def __len__(self) -> int:
        return len(self.accounts) + len(self.transfers) + len(self.expiries)
