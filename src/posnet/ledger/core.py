"""The ledger: a pure, in-memory, single-writer state machine.

No I/O, no wall clock: the caller passes ``now_ms`` (its driver's clock) and
takes the change set with ``take_changes`` to persist it in its own
transaction (DESIGN.md principles 1, 3, 4, 5).

Business outcomes are result codes; exceptions are raised only for programmer
errors (a field of the wrong type or out of its range), and then before any
event of the batch has been applied.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from ..gcpause import gc_paused
from .types import (
    BALANCE_MAX,
    EXPIRED,
    PENDING,
    POSTED,
    U16_MAX,
    U32_MAX,
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
    ACCOUNT_FLAGS_ALL,
    TRANSFER_FLAGS_ALL,
)

__all__ = ["Ledger"]

# Plain-int flag bits for the hot path.
_A_LINKED = int(AccountFlags.LINKED)
_A_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_A_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_A_CLOSED = int(AccountFlags.CLOSED)
_A_CLOSED_OFF = ~_A_CLOSED

_T_LINKED = int(TransferFlags.LINKED)
_T_PENDING = int(TransferFlags.PENDING)
_T_POST = int(TransferFlags.POST_PENDING)
_T_VOID = int(TransferFlags.VOID_PENDING)
_T_BAL_D = int(TransferFlags.BALANCING_DEBIT)
_T_BAL_C = int(TransferFlags.BALANCING_CREDIT)
_T_CLOSE_D = int(TransferFlags.CLOSING_DEBIT)
_T_CLOSE_C = int(TransferFlags.CLOSING_CREDIT)
_T_POST_OR_VOID = _T_POST | _T_VOID
_T_BALANCING = _T_BAL_D | _T_BAL_C
_T_CLOSING = _T_CLOSE_D | _T_CLOSE_C
_T_NOT_WITH_POST_OR_VOID = _T_PENDING | _T_BALANCING | _T_CLOSING
_T_NOT_LINKED = TRANSFER_FLAGS_ALL & ~_T_LINKED
_A_COMPARED = ACCOUNT_FLAGS_ALL & ~(_A_LINKED | _A_CLOSED)

_AF = {v: AccountFlags(v) for v in range(ACCOUNT_FLAGS_ALL + 1)}
_TF = {v: TransferFlags(v) for v in range(TRANSFER_FLAGS_ALL + 1)}

_AR = CreateAccountResult
_TR = CreateTransferResult
_A_OK = _AR.OK
_T_OK = _TR.OK

# Building a frozen slotted dataclass through its slot descriptors skips the
# frozen __setattr__ and is about twice as fast as calling the class.
_new = object.__new__
(
    _s_id,
    _s_dr,
    _s_cr,
    _s_amount,
    _s_ledger,
    _s_code,
    _s_flags,
    _s_pending_id,
    _s_user_data,
    _s_timeout,
    _s_ts,
) = (
    Transfer.__dict__[name].__set__
    for name in (
        "id",
        "debit_account_id",
        "credit_account_id",
        "amount",
        "ledger",
        "code",
        "flags",
        "pending_id",
        "user_data",
        "timeout_s",
        "timestamp_ms",
    )
)


def _mk_transfer(tid, dr, cr, amount, ledger, code, flags, pending_id, user_data, timeout_s, ts) -> Transfer:
    t = _new(Transfer)
    _s_id(t, tid)
    _s_dr(t, dr)
    _s_cr(t, cr)
    _s_amount(t, amount)
    _s_ledger(t, ledger)
    _s_code(t, code)
    _s_flags(t, flags)
    _s_pending_id(t, pending_id)
    _s_user_data(t, user_data)
    _s_timeout(t, timeout_s)
    _s_ts(t, ts)
    return t


class _Acct:
    """An account's hot state. Flags are a plain int here."""

    __slots__ = ("id", "ledger", "code", "flags", "user_data", "dp", "dpo", "cp", "cpo", "ts", "hist")

    def __init__(self, id, ledger, code, flags, user_data, dp, dpo, cp, cpo, ts):
        self.id = id
        self.ledger = ledger
        self.code = code
        self.flags = flags
        self.user_data = user_data
        self.dp = dp
        self.dpo = dpo
        self.cp = cp
        self.cpo = cpo
        self.ts = ts
        self.hist = None  # list[Transfer] once the account has a transfer


def _check_int(name: str, value, hi: int) -> None:
    if type(value) is not int and not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > hi:
        raise ValueError(f"{name}={value} is out of range 0..{hi}")


def _validate_account(a) -> None:
    if not isinstance(a, Account):
        raise TypeError(f"create_accounts takes Account objects, not {type(a).__name__}")
    _check_int("Account.id", a.id, U128_MAX)
    _check_int("Account.ledger", a.ledger, U32_MAX)
    _check_int("Account.code", a.code, U16_MAX)
    _check_int("Account.user_data", a.user_data, U128_MAX)
    _check_int("Account.flags", a.flags, ACCOUNT_FLAGS_ALL)
    if int(a.flags) & ~ACCOUNT_FLAGS_ALL:
        raise ValueError(f"Account.flags has unknown bits: {int(a.flags):#x}")


def _validate_transfer(t) -> None:
    if type(t) is not Transfer and not isinstance(t, Transfer):
        raise TypeError(f"create_transfers takes Transfer objects, not {type(t).__name__}")
    # Fast path: plain ints in range.
    if (
        type(t.id) is int
        and type(t.debit_account_id) is int
        and type(t.credit_account_id) is int
        and type(t.amount) is int
        and type(t.ledger) is int
        and type(t.code) is int
        and type(t.pending_id) is int
        and type(t.user_data) is int
        and type(t.timeout_s) is int
        and 0 <= t.id <= U128_MAX
        and 0 <= t.debit_account_id <= U128_MAX
        and 0 <= t.credit_account_id <= U128_MAX
        and 0 <= t.amount <= U128_MAX
        and 0 <= t.ledger <= U32_MAX
        and 0 <= t.code <= U16_MAX
        and 0 <= t.pending_id <= U128_MAX
        and 0 <= t.user_data <= U128_MAX
        and 0 <= t.timeout_s <= U32_MAX
        and 0 <= t.flags <= TRANSFER_FLAGS_ALL
    ):
        return
    _check_int("Transfer.id", t.id, U128_MAX)
    _check_int("Transfer.debit_account_id", t.debit_account_id, U128_MAX)
    _check_int("Transfer.credit_account_id", t.credit_account_id, U128_MAX)
    _check_int("Transfer.amount", t.amount, U128_MAX)
    _check_int("Transfer.ledger", t.ledger, U32_MAX)
    _check_int("Transfer.code", t.code, U16_MAX)
    _check_int("Transfer.pending_id", t.pending_id, U128_MAX)
    _check_int("Transfer.user_data", t.user_data, U128_MAX)
    _check_int("Transfer.timeout_s", t.timeout_s, U32_MAX)
    _check_int("Transfer.flags", t.flags, TRANSFER_FLAGS_ALL)


# Resolved holds found at the top of the expiry queue before it is swept whole: at least this many, and
# at least a quarter of the queue, so the sweep (all of it) costs no more than the pops it saves. A fixed
# number alone swept a million entries after each clearing file of 20,000 postings.
_STALE_BEFORE_SWEEP = 4096


def _expiry_ms(t: Transfer) -> int:
    return t.timestamp_ms + t.timeout_s * 1000


class Ledger:
    """Double-entry books with two-phase transfers, TigerBeetle's semantics.

    Single writer. Every public method that changes state checks, before it
    returns, that the accounts it touched still balance per ledger and stay
    within their limit flags (``AssertionError`` otherwise); the full check,
    balances against the sum of all transfers, is ``check_invariants``.
    """

    def __init__(self) -> None:
        self._accounts: dict[int, _Acct] = {}
        self._transfers: dict[int, Transfer] = {}
        self._by_ud: dict[int, Transfer | list[Transfer]] = {}
        self._status: dict[int, str] = {}
        # (expires_ms, seq, pending_id); entries of resolved transfers are skipped lazily.
        self._heap: list[tuple[int, int, int]] = []
        self._now = 0
        self._next_tseq = 1
        self._next_aseq = 1
        # ledger -> [debits_pending, debits_posted, credits_pending, credits_posted]
        self._totals: dict[int, list[int]] = {}
        # The change set being gathered for take_changes.
        self._new_accounts: list[tuple] = []
        self._new_transfers: list[Transfer] = []
        self._first_tseq = 1
        self._expiries: list[tuple[int, int]] = []
        self._first_eseq = 1  # the sequence number of the first expiry of the change set
        # Scratch of one call: balances of touched accounts before the call.
        self._snap: dict[_Acct, tuple] = {}
        # Scratch of one linked chain: balances before the chain, objects created in it.
        self._chain_snap: dict[_Acct, tuple] | None = None
        self._chain_log: list = []

    # ------------------------------------------------------------------ clock

    def _advance(self, now_ms: int) -> int:
        if type(now_ms) is not int:
            _check_int("now_ms", now_ms, (1 << 63) - 1)
            now_ms = int(now_ms)
        if now_ms > self._now:
            self._now = now_ms
        # A clock that steps back (a restart, an NTP step) never makes
        # timestamps go backwards: the ledger keeps the latest time it saw.
        return self._now

    @property
    def now_ms(self) -> int:
        """The latest time the ledger has seen (timestamps never go backwards)."""
        return self._now

    # --------------------------------------------------------------- accounts

    def create_accounts(self, accounts: Sequence[Account], now_ms: int) -> list[CreateAccountResult]:
        for a in accounts:
            _validate_account(a)
        now = self._advance(now_ms)
        n = len(accounts)
        results = [_A_OK] * n
        chain_start = -1
        chain_broken = False
        for i, a in enumerate(accounts):
            linked = int(a.flags) & _A_LINKED
            if linked and chain_start < 0:
                chain_start = i
                self._chain_log = []
                self._chain_snap = {}
            if linked and i == n - 1:
                r = _AR.LINKED_EVENT_CHAIN_OPEN
            elif chain_broken:
                r = _AR.LINKED_EVENT_FAILED
            else:
                r = self._create_account(a, now)
            if r is not _A_OK:
                if chain_start >= 0 and not chain_broken:
                    chain_broken = True
                    self._rollback_accounts()
                    for j in range(chain_start, i):
                        results[j] = _AR.LINKED_EVENT_FAILED
                results[i] = r
            if chain_start >= 0 and (not linked or r is _AR.LINKED_EVENT_CHAIN_OPEN):
                chain_start = -1
                chain_broken = False
                self._chain_snap = None
                self._chain_log = []
        return results

    def _create_account(self, a: Account, now: int) -> CreateAccountResult:
        aid = a.id
        if aid == 0:
            return _AR.ID_MUST_NOT_BE_ZERO
        if aid == U128_MAX:
            return _AR.ID_MUST_NOT_BE_INT_MAX
        e = self._accounts.get(aid)
        flags = int(a.flags)
        if e is not None:
            if (
                (flags & _A_COMPARED) != (e.flags & _A_COMPARED)
                or a.ledger != e.ledger
                or a.code != e.code
                or a.user_data != e.user_data
            ):
                return _AR.EXISTS_WITH_DIFFERENT_FIELDS
            return _AR.EXISTS
        if flags & _A_DMNEC and flags & _A_CMNED:
            return _AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if a.ledger == 0:
            return _AR.LEDGER_MUST_NOT_BE_ZERO
        if a.code == 0:
            return _AR.CODE_MUST_NOT_BE_ZERO
        seq = self._next_aseq
        acct = _Acct(aid, a.ledger, a.code, flags, a.user_data, 0, 0, 0, 0, now)
        self._next_aseq = seq + 1
        self._accounts[aid] = acct
        self._new_accounts.append((seq, aid, a.ledger, a.code, flags, a.user_data, now))
        if a.ledger not in self._totals:
            self._totals[a.ledger] = [0, 0, 0, 0]
        if self._chain_snap is not None:
            self._chain_log.append(acct)
        return _A_OK

    def _rollback_accounts(self) -> None:
        for acct in reversed(self._chain_log):
            del self._accounts[acct.id]
            popped = self._new_accounts.pop()
            if popped[1] != acct.id:
                raise AssertionError("account rollback out of order")
            self._next_aseq -= 1
        self._chain_log = []

    # -------------------------------------------------------------- transfers

    def create_transfers(self, transfers: Sequence[Transfer], now_ms: int) -> list[CreateTransferResult]:
        for t in transfers:
            _validate_transfer(t)
        now = self._advance(now_ms)
        n = len(transfers)
        results = [_T_OK] * n
        self._snap = {}
        chain_start = -1
        chain_broken = False
        create = self._create_transfer
        for i, t in enumerate(transfers):
            linked = int(t.flags) & _T_LINKED
            if linked and chain_start < 0:
                chain_start = i
                self._chain_log = []
                self._chain_snap = {}
            if linked and i == n - 1:
                r = _TR.LINKED_EVENT_CHAIN_OPEN
            elif chain_broken:
                r = _TR.LINKED_EVENT_FAILED
            else:
                r = create(t, now)
            if r is not _T_OK:
                results[i] = r
                if chain_start >= 0 and not chain_broken:
                    chain_broken = True
                    self._rollback_transfers()
                    for j in range(chain_start, i):
                        results[j] = _TR.LINKED_EVENT_FAILED
            if chain_start >= 0 and (not linked or r is _TR.LINKED_EVENT_CHAIN_OPEN):
                chain_start = -1
                chain_broken = False
                self._chain_snap = None
                self._chain_log = []
        self._end_call()
        return results

    def post_pending(self, posts: Sequence[tuple[int, int, int]], now_ms: int) -> list[CreateTransferResult]:
        """``create_transfers`` of plain posts, each ``(id, pending_id, amount)`` standing for
        ``Transfer(id, 0, 0, amount, 0, 0, POST_PENDING, pending_id)``: the same checks, results and
        changes, without a ``Transfer`` built and validated for each (a clearing file posts a
        million holds). A new id goes to ``_post_or_void``, anything else to ``_create_transfer``."""
        for tid, pid, amount in posts:
            if not (type(tid) is int and type(pid) is int and type(amount) is int
                    and 0 <= tid <= U128_MAX and 0 <= pid <= U128_MAX and 0 <= amount <= U128_MAX):
                _validate_transfer(Transfer(tid, 0, 0, amount, 0, 0, _TF[_T_POST], pid))
        now = self._advance(now_ms)
        self._snap = {}
        transfers = self._transfers
        post = self._post_or_void
        results = []
        append = results.append
        for tid, pid, amount in posts:
            if tid in transfers or tid == 0 or tid == U128_MAX:
                append(self._create_transfer(Transfer(tid, 0, 0, amount, 0, 0, _TF[_T_POST], pid), now))
            else:
                append(post(tid, 0, 0, amount, 0, 0, _T_POST, pid, 0, 0, now))
        self._end_call()
        return results

    def _touch(self, acct: _Acct) -> None:
        snap = self._snap
        if acct not in snap:
            snap[acct] = (acct.flags, acct.dp, acct.dpo, acct.cp, acct.cpo)
        cs = self._chain_snap
        if cs is not None and acct not in cs:
            cs[acct] = (acct.flags, acct.dp, acct.dpo, acct.cp, acct.cpo)

    def _create_transfer(self, t: Transfer, now: int) -> CreateTransferResult:
        tid = t.id
        if tid == 0:
            return _TR.ID_MUST_NOT_BE_ZERO
        if tid == U128_MAX:
            return _TR.ID_MUST_NOT_BE_INT_MAX
        e = self._transfers.get(tid)
        if e is not None:
            return self._transfer_exists(t, e)
        flags = int(t.flags)
        if flags & _T_POST_OR_VOID:
            return self._post_or_void(
                tid, t.debit_account_id, t.credit_account_id, t.amount, t.ledger, t.code, flags, t.pending_id,
                t.user_data, t.timeout_s, now,
            )

        dr_id = t.debit_account_id
        cr_id = t.credit_account_id
        if dr_id == 0:
            return _TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if dr_id == U128_MAX:
            return _TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if cr_id == 0:
            return _TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if cr_id == U128_MAX:
            return _TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if dr_id == cr_id:
            return _TR.ACCOUNTS_MUST_BE_DIFFERENT
        if t.pending_id != 0:
            return _TR.PENDING_ID_MUST_BE_ZERO
        pending = flags & _T_PENDING
        if not pending:
            if t.timeout_s != 0:
                return _TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if flags & _T_CLOSING:
                return _TR.CLOSING_TRANSFER_MUST_BE_PENDING
        ledger = t.ledger
        if ledger == 0:
            return _TR.LEDGER_MUST_NOT_BE_ZERO
        if t.code == 0:
            return _TR.CODE_MUST_NOT_BE_ZERO
        amount = t.amount
        balancing = flags & _T_BALANCING
        if amount == 0 and not balancing and not flags & _T_CLOSING:
            return _TR.AMOUNT_MUST_NOT_BE_ZERO
        accounts = self._accounts
        dr = accounts.get(dr_id)
        if dr is None:
            return _TR.DEBIT_ACCOUNT_NOT_FOUND
        cr = accounts.get(cr_id)
        if cr is None:
            return _TR.CREDIT_ACCOUNT_NOT_FOUND
        if dr.ledger != cr.ledger:
            return _TR.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if ledger != dr.ledger:
            return _TR.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if dr.flags & _A_CLOSED:
            return _TR.DEBIT_ACCOUNT_ALREADY_CLOSED
        if cr.flags & _A_CLOSED:
            return _TR.CREDIT_ACCOUNT_ALREADY_CLOSED
        if balancing:
            if amount == 0:
                amount = BALANCE_MAX
            if flags & _T_BAL_D:
                room = dr.cpo - dr.dp - dr.dpo
                if room < amount:
                    amount = room if room > 0 else 0
                if amount == 0:
                    return _TR.EXCEEDS_CREDITS
            if flags & _T_BAL_C:
                room = cr.dpo - cr.cp - cr.cpo
                if room < amount:
                    amount = room if room > 0 else 0
                if amount == 0:
                    return _TR.EXCEEDS_DEBITS
        if pending:
            if dr.dp + amount > BALANCE_MAX:
                return _TR.OVERFLOWS_DEBITS_PENDING
            if cr.cp + amount > BALANCE_MAX:
                return _TR.OVERFLOWS_CREDITS_PENDING
        else:
            if dr.dpo + amount > BALANCE_MAX:
                return _TR.OVERFLOWS_DEBITS_POSTED
            if cr.cpo + amount > BALANCE_MAX:
                return _TR.OVERFLOWS_CREDITS_POSTED
        dr_debits = dr.dp + dr.dpo + amount
        if dr_debits > BALANCE_MAX:
            return _TR.OVERFLOWS_DEBITS
        cr_credits = cr.cp + cr.cpo + amount
        if cr_credits > BALANCE_MAX:
            return _TR.OVERFLOWS_CREDITS
        if dr.flags & _A_DMNEC and dr_debits > dr.cpo:
            return _TR.EXCEEDS_CREDITS
        if cr.flags & _A_CMNED and cr_credits > cr.dpo:
            return _TR.EXCEEDS_DEBITS

        # Apply.
        self._touch(dr)
        self._touch(cr)
        if pending:
            dr.dp += amount
            cr.cp += amount
            if flags & _T_CLOSE_D:
                dr.flags |= _A_CLOSED
            if flags & _T_CLOSE_C:
                cr.flags |= _A_CLOSED
        else:
            dr.dpo += amount
            cr.cpo += amount
        stored = _mk_transfer(
            tid, dr.id, cr.id, amount, ledger, t.code, _TF[flags], 0, t.user_data, t.timeout_s, now
        )
        seq = self._insert(stored, dr, cr)
        if pending:
            self._status[tid] = PENDING
            if t.timeout_s:
                heapq.heappush(self._heap, (now + t.timeout_s * 1000, seq, tid))
        return _T_OK

    def _post_or_void(
        self, tid, dr_id, cr_id, amount, ledger, code, flags: int, pid, user_data, timeout_s, now: int
    ) -> CreateTransferResult:
        """A post or void of a new id, its fields given one by one: the one code of both
        ``create_transfers`` and ``post_pending``."""
        post = flags & _T_POST
        if post and flags & _T_VOID:
            return _TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & _T_NOT_WITH_POST_OR_VOID:
            return _TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if pid == 0:
            return _TR.PENDING_ID_MUST_NOT_BE_ZERO
        if pid == U128_MAX:
            return _TR.PENDING_ID_MUST_NOT_BE_INT_MAX
        if pid == tid:
            return _TR.PENDING_ID_MUST_BE_DIFFERENT
        if timeout_s != 0:
            return _TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        p = self._transfers.get(pid)
        if p is None:
            return _TR.PENDING_TRANSFER_NOT_FOUND
        if not int(p.flags) & _T_PENDING:
            return _TR.PENDING_TRANSFER_NOT_PENDING
        if dr_id and dr_id != p.debit_account_id:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if cr_id and cr_id != p.credit_account_id:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if ledger and ledger != p.ledger:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if code and code != p.code:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        amount = amount or p.amount
        if amount > p.amount:
            return _TR.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and amount < p.amount:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        status = self._status[pid]
        if status != PENDING:
            if status == POSTED:
                return _TR.PENDING_TRANSFER_ALREADY_POSTED
            if status == VOIDED:
                return _TR.PENDING_TRANSFER_ALREADY_VOIDED
            return _TR.PENDING_TRANSFER_EXPIRED
        if p.timeout_s and p.timestamp_ms + p.timeout_s * 1000 <= now:
            return _TR.PENDING_TRANSFER_EXPIRED
        dr = self._accounts[p.debit_account_id]
        cr = self._accounts[p.credit_account_id]
        if post:
            if dr.flags & _A_CLOSED and not int(p.flags) & _T_CLOSE_D:
                return _TR.DEBIT_ACCOUNT_ALREADY_CLOSED
            if cr.flags & _A_CLOSED and not int(p.flags) & _T_CLOSE_C:
                return _TR.CREDIT_ACCOUNT_ALREADY_CLOSED

        self._touch(dr)
        self._touch(cr)
        pamount = p.amount
        dr.dp -= pamount
        cr.cp -= pamount
        if post:
            # No overflow or limit check is needed: the hold already counted
            # the full amount in debits/credits and a post moves at most that
            # much from pending to posted. _end_call asserts the limits.
            dr.dpo += amount
            cr.cpo += amount
            self._status[pid] = POSTED
        else:
            self._reopen(p, dr, cr)
            self._status[pid] = VOIDED
        stored = _mk_transfer(
            tid,
            p.debit_account_id,
            p.credit_account_id,
            amount,
            p.ledger,
            p.code,
            _TF[flags],
            pid,
            user_data or p.user_data,
            0,
            now,
        )
        self._insert(stored, dr, cr)
        return _T_OK

    @staticmethod
    def _reopen(p: Transfer, dr: _Acct, cr: _Acct) -> None:
        if int(p.flags) & _T_CLOSE_D:
            dr.flags &= _A_CLOSED_OFF
        if int(p.flags) & _T_CLOSE_C:
            cr.flags &= _A_CLOSED_OFF

    def _transfer_exists(self, t: Transfer, e: Transfer) -> CreateTransferResult:
        flags = int(t.flags)
        if (flags & _T_NOT_LINKED) != (int(e.flags) & _T_NOT_LINKED):
            return _TR.EXISTS_WITH_DIFFERENT_FIELDS
        if t.pending_id != e.pending_id or t.timeout_s != e.timeout_s:
            return _TR.EXISTS_WITH_DIFFERENT_FIELDS
        if flags & _T_POST_OR_VOID:
            # Zero means "as the pending transfer" for these fields.
            p = self._transfers[e.pending_id]
            if (
                (t.debit_account_id and t.debit_account_id != e.debit_account_id)
                or (t.credit_account_id and t.credit_account_id != e.credit_account_id)
                or (t.ledger and t.ledger != e.ledger)
                or (t.code and t.code != e.code)
                or (t.amount or p.amount) != e.amount
                or (t.user_data or p.user_data) != e.user_data
            ):
                return _TR.EXISTS_WITH_DIFFERENT_FIELDS
            return _TR.EXISTS
        if (
            t.debit_account_id != e.debit_account_id
            or t.credit_account_id != e.credit_account_id
            or t.ledger != e.ledger
            or t.code != e.code
            or t.user_data != e.user_data
        ):
            return _TR.EXISTS_WITH_DIFFERENT_FIELDS
        if flags & _T_BALANCING:
            # The stored amount was clamped; a retry asking for at least as much is the same request.
            if t.amount and t.amount < e.amount:
                return _TR.EXISTS_WITH_DIFFERENT_FIELDS
        elif t.amount != e.amount:
            return _TR.EXISTS_WITH_DIFFERENT_FIELDS
        return _TR.EXISTS

    def _insert(self, t: Transfer, dr: _Acct, cr: _Acct) -> int:
        self._transfers[t.id] = t
        h = dr.hist
        if h is None:
            dr.hist = [t]
        else:
            h.append(t)
        h = cr.hist
        if h is None:
            cr.hist = [t]
        else:
            h.append(t)
        ud = t.user_data
        if ud:
            by_ud = self._by_ud
            x = by_ud.get(ud)
            if x is None:
                by_ud[ud] = t
            elif type(x) is list:
                x.append(t)
            else:
                by_ud[ud] = [x, t]
        self._new_transfers.append(t)
        seq = self._next_tseq
        self._next_tseq = seq + 1
        if self._chain_snap is not None:
            self._chain_log.append(t)
        return seq

    def _rollback_transfers(self) -> None:
        """Undo the transfers of the current chain, last first, and restore balances."""
        accounts = self._accounts
        for t in reversed(self._chain_log):
            del self._transfers[t.id]
            for acct in (accounts[t.debit_account_id], accounts[t.credit_account_id]):
                if acct.hist.pop() is not t:
                    raise AssertionError("history rollback out of order")
            ud = t.user_data
            if ud:
                x = self._by_ud[ud]
                if x is t:
                    del self._by_ud[ud]
                else:
                    if x.pop() is not t:
                        raise AssertionError("user_data index rollback out of order")
                    if len(x) == 1:
                        self._by_ud[ud] = x[0]
            if self._new_transfers.pop() is not t:
                raise AssertionError("change set rollback out of order")
            self._next_tseq -= 1
            f = int(t.flags)
            if f & _T_PENDING:
                del self._status[t.id]
            elif f & _T_POST_OR_VOID:
                self._status[t.pending_id] = PENDING
        for acct, (flags, dp, dpo, cp, cpo) in self._chain_snap.items():
            acct.flags = flags
            acct.dp = dp
            acct.dpo = dpo
            acct.cp = cp
            acct.cpo = cpo
        self._chain_snap = {}
        self._chain_log = []

    # ----------------------------------------------------------------- expiry

    def expire_pending(self, now_ms: int, limit: int | None = None) -> list[int]:
        """Release every pending transfer whose timeout has passed (the ``limit`` earliest, when
        given: ``next_expiry_ms`` then tells whether more are due); return their ids.

        A pending transfer expires when ``timestamp_ms + timeout_s * 1000 <= now``.
        Each one expires once; the expiry is recorded in the change set.
        """
        now = self._advance(now_ms)
        heap = self._heap
        out: list[int] = []
        if not heap or heap[0][0] > now:
            return out
        self._snap = {}
        status = self._status
        transfers = self._transfers
        accounts = self._accounts
        room = len(heap) if limit is None else limit
        while heap and heap[0][0] <= now and len(out) < room:
            exp, _seq, pid = heapq.heappop(heap)
            if status.get(pid) != PENDING:
                continue
            p = transfers[pid]
            if _expiry_ms(p) != exp:
                continue
            dr = accounts[p.debit_account_id]
            cr = accounts[p.credit_account_id]
            self._touch(dr)
            self._touch(cr)
            dr.dp -= p.amount
            cr.cp -= p.amount
            self._reopen(p, dr, cr)
            status[pid] = EXPIRED
            self._expiries.append((pid, now))
            out.append(pid)
        self._end_call()
        return out

    def next_expiry_ms(self) -> int | None:
        """When the earliest standing pending transfer expires, or None."""
        heap = self._heap
        status = self._status
        transfers = self._transfers
        dropped = 0
        sweep_after = max(_STALE_BEFORE_SWEEP, len(heap) // 4)
        while heap:
            exp, _seq, pid = heap[0]
            if status.get(pid) == PENDING and _expiry_ms(transfers[pid]) == exp:
                return exp
            heapq.heappop(heap)  # resolved or rolled back: drop the stale entry
            dropped += 1
            if dropped == sweep_after:
                # Many resolved at once (a clearing file posted a million holds): keep the standing
                # ones and heapify them, once, instead of popping the rest one by one.
                heap[:] = [e for e in heap if status.get(e[2]) == PENDING and _expiry_ms(transfers[e[2]]) == e[0]]
                heapq.heapify(heap)
        return None

    # ----------------------------------------------------- the commit's check

    def _end_call(self) -> None:
        """Assert, for the accounts this call touched, that the books still balance."""
        snap = self._snap
        if not snap:
            return
        deltas: dict[int, list[int]] = {}
        for acct, before in snap.items():
            _flags, dp, dpo, cp, cpo = before
            if (acct.flags, acct.dp, acct.dpo, acct.cp, acct.cpo) == before:
                continue  # touched by a chain that was rolled back
            d = deltas.get(acct.ledger)
            if d is None:
                d = deltas[acct.ledger] = [0, 0, 0, 0]
            d[0] += acct.dp - dp
            d[1] += acct.dpo - dpo
            d[2] += acct.cp - cp
            d[3] += acct.cpo - cpo
            f = acct.flags
            if f & _A_DMNEC and acct.dp + acct.dpo > acct.cpo:
                raise AssertionError(f"account {acct.id}: debits exceed credits despite its flag")
            if f & _A_CMNED and acct.cp + acct.cpo > acct.dpo:
                raise AssertionError(f"account {acct.id}: credits exceed debits despite its flag")
            if acct.dp < 0 or acct.cp < 0:
                raise AssertionError(f"account {acct.id}: negative pending balance")
        totals = self._totals
        for ledger, (ddp, ddpo, dcp, dcpo) in deltas.items():
            if ddp != dcp or ddpo != dcpo:
                raise AssertionError(
                    f"ledger {ledger}: this call moved debits {ddp}/{ddpo} but credits {dcp}/{dcpo}"
                    " (pending/posted)"
                )
            tot = totals[ledger]
            tot[0] += ddp
            tot[1] += ddpo
            tot[2] += dcp
            tot[3] += dcpo
        self._snap = {}

    # ---------------------------------------------------------------- queries

    def account(self, account_id: int) -> AccountBalance | None:
        a = self._accounts.get(account_id)
        if a is None:
            return None
        return AccountBalance(
            a.id, a.ledger, a.code, _AF[a.flags], a.user_data, a.dp, a.dpo, a.cp, a.cpo, a.ts
        )

    def available(self, account_id: int) -> int | None:
        """Credits posted less debits posted and pending: what a card account can still spend
        (``account`` without building its balance record; None for an unknown account)."""
        a = self._accounts.get(account_id)
        return None if a is None else a.cpo - a.dpo - a.dp

    def transfer(self, transfer_id: int) -> Transfer | None:
        return self._transfers.get(transfer_id)

    def pending_status(self, transfer_id: int) -> str | None:
        """The state of a pending transfer: "pending", "posted", "voided" or "expired".

        None for an unknown id or a transfer that was not created pending.

        A pending transfer past its timeout stays "pending" (and keeps its
        hold) until ``expire_pending`` runs; it can no longer be posted or
        voided meanwhile.
        """
        return self._status.get(transfer_id)

    def transfers_by_user_data(self, user_data: int) -> list[Transfer]:
        """The transfers carrying this lifecycle id, in creation order (user_data 0 is not indexed)."""
        x = self._by_ud.get(user_data)
        if x is None:
            return []
        if type(x) is list:
            return list(x)
        return [x]

    def account_history(self, account_id: int) -> list[Transfer]:
        """The transfers that debit or credit this account, in creation order."""
        a = self._accounts.get(account_id)
        if a is None or a.hist is None:
            return []
        return list(a.hist)

    def account_count(self) -> int:
        return len(self._accounts)

    def transfer_count(self) -> int:
        return len(self._transfers)

    def accounts(self) -> list[AccountBalance]:
        """Every account, in creation order (for tests, reports and the console; not the hot path)."""
        return [self.account(aid) for aid in self._accounts]

    def transfers(self) -> list[Transfer]:
        """Every transfer, in creation order."""
        return list(self._transfers.values())

    def totals(self, ledger: int) -> tuple[int, int, int, int]:
        """(debits_pending, debits_posted, credits_pending, credits_posted) summed over a ledger."""
        t = self._totals.get(ledger)
        return (0, 0, 0, 0) if t is None else (t[0], t[1], t[2], t[3])

    # ---------------------------------------------------------------- changes

    def take_changes(self) -> LedgerChanges:
        """Everything created since the last call, for a store to persist."""
        if not (self._new_accounts or self._new_transfers or self._expiries):
            return LedgerChanges(first_transfer_seq=self._next_tseq, first_expiry_seq=self._first_eseq)
        changes = LedgerChanges(
            accounts=self._new_accounts,
            transfers=self._new_transfers,
            first_transfer_seq=self._first_tseq,
            expiries=self._expiries,
            first_expiry_seq=self._first_eseq,
        )
        if self._first_tseq + len(self._new_transfers) != self._next_tseq:
            raise AssertionError("transfer sequence numbers are not contiguous")
        self._new_accounts = []
        self._new_transfers = []
        self._first_tseq = self._next_tseq
        self._first_eseq += len(self._expiries)
        self._expiries = []
        return changes

    # ------------------------------------------------------------- invariants

    def check_invariants(self) -> None:
        """The full check: every balance equals the sum of its transfers, and more.

        O(accounts + transfers). Raises AssertionError saying what is wrong.
        """
        with gc_paused():
            self._check_invariants()

    def _check_invariants(self) -> None:
        accounts = self._accounts
        transfers = self._transfers
        status = self._status
        # 1. Each transfer on its own, and the resolutions of pending transfers.
        resolved: dict[int, int] = {}
        last_ts = -1
        n_ud = 0
        for tid, t in transfers.items():
            if t.id != tid:
                raise AssertionError(f"transfer stored under {tid} has id {t.id}")
            dr_id = t.debit_account_id
            cr_id = t.credit_account_id
            if dr_id not in accounts or cr_id not in accounts:
                raise AssertionError(f"transfer {tid} names an unknown account")
            if dr_id == cr_id:
                raise AssertionError(f"transfer {tid} debits and credits the same account")
            if not 0 <= t.amount <= BALANCE_MAX:
                raise AssertionError(f"transfer {tid} amount {t.amount} out of range")
            if t.timestamp_ms < last_ts:
                raise AssertionError(f"transfer {tid} timestamp goes backwards")
            last_ts = t.timestamp_ms
            if t.user_data:
                n_ud += 1
            f = int(t.flags)
            if f & _T_PENDING:
                st = status.get(tid)
                if st is None:
                    raise AssertionError(f"pending transfer {tid} has no status")
                if st == PENDING:
                    if f & _T_CLOSE_D and not accounts[dr_id].flags & _A_CLOSED:
                        raise AssertionError(f"closing transfer {tid} stands but its debit account is open")
                    if f & _T_CLOSE_C and not accounts[cr_id].flags & _A_CLOSED:
                        raise AssertionError(f"closing transfer {tid} stands but its credit account is open")
            elif f & _T_POST_OR_VOID:
                pid = t.pending_id
                p = transfers.get(pid)
                if p is None or not int(p.flags) & _T_PENDING:
                    raise AssertionError(f"transfer {tid} resolves {pid}, which is not pending")
                if (p.debit_account_id, p.credit_account_id, p.ledger) != (dr_id, cr_id, t.ledger):
                    raise AssertionError(f"transfer {tid} does not match its pending transfer")
                if pid in resolved:
                    raise AssertionError(f"pending transfer {pid} resolved twice")
                resolved[pid] = tid
                want = POSTED if f & _T_POST else VOIDED
                if status.get(pid) != want:
                    raise AssertionError(f"pending transfer {pid} should be {want}")
                if t.amount > p.amount:
                    raise AssertionError(f"transfer {tid} posts more than its pending transfer")
            elif tid in status:
                raise AssertionError(f"single-phase transfer {tid} has a pending status")
        for pid, st in status.items():
            if st not in (PENDING, POSTED, VOIDED, EXPIRED):
                raise AssertionError(f"pending transfer {pid} has status {st!r}")
            if (st == POSTED or st == VOIDED) and pid not in resolved:
                raise AssertionError(f"pending transfer {pid} is {st} but nothing resolved it")
            if pid not in transfers:
                raise AssertionError(f"status for unknown transfer {pid}")

        # 2. Each account: its balances are the sum of its own history.
        totals: dict[int, list[int]] = {}
        n_hist = 0
        for aid, a in accounts.items():
            dp = dpo = cp = cpo = 0
            h = a.hist
            if h:
                n_hist += len(h)
                for t in h:
                    f = int(t.flags)
                    amount = t.amount
                    if t.debit_account_id == aid:
                        if f & _T_PENDING:
                            if status[t.id] == PENDING:
                                dp += amount
                        elif not f & _T_VOID:
                            dpo += amount
                    elif t.credit_account_id == aid:
                        if f & _T_PENDING:
                            if status[t.id] == PENDING:
                                cp += amount
                        elif not f & _T_VOID:
                            cpo += amount
                    else:
                        raise AssertionError(f"transfer {t.id} is in the history of account {aid}")
            if a.dp != dp or a.dpo != dpo or a.cp != cp or a.cpo != cpo:
                raise AssertionError(
                    f"account {aid}: balances (dp, dpo, cp, cpo) {(a.dp, a.dpo, a.cp, a.cpo)}"
                    f" != sum of its transfers {(dp, dpo, cp, cpo)}"
                )
            if a.flags & _A_DMNEC and dp + dpo > cpo:
                raise AssertionError(f"account {aid}: debits exceed credits despite its flag")
            if a.flags & _A_CMNED and cp + cpo > dpo:
                raise AssertionError(f"account {aid}: credits exceed debits despite its flag")
            if dp + dpo > BALANCE_MAX or cp + cpo > BALANCE_MAX:
                raise AssertionError(f"account {aid}: a balance is out of range")
            tot = totals.get(a.ledger)
            if tot is None:
                tot = totals[a.ledger] = [0, 0, 0, 0]
            tot[0] += dp
            tot[1] += dpo
            tot[2] += cp
            tot[3] += cpo
        if n_hist != 2 * len(transfers):
            raise AssertionError(f"histories hold {n_hist} entries for {len(transfers)} transfers")
        for ledger, tot in totals.items():
            if tot[0] != tot[2] or tot[1] != tot[3]:
                raise AssertionError(
                    f"ledger {ledger}: debits {tot[0]}/{tot[1]} != credits {tot[2]}/{tot[3]} (pending/posted)"
                )
            if tot != self._totals.get(ledger):
                raise AssertionError(f"ledger {ledger}: running totals {self._totals.get(ledger)} != {tot}")

        # 3. The indexes.
        indexed = sum(len(x) if type(x) is list else 1 for x in self._by_ud.values())
        if indexed != n_ud:
            raise AssertionError(f"user_data index holds {indexed} transfers, expected {n_ud}")
        queued = {pid for exp, _s, pid in self._heap if _expiry_ms(transfers.get(pid) or _NO_T) == exp}
        for pid, st in status.items():
            if st == PENDING and transfers[pid].timeout_s and pid not in queued:
                raise AssertionError(f"pending transfer {pid} is missing from the expiry queue")

    # ---------------------------------------------------------------- restore

    def _restore(
        self,
        account_rows: Iterable[Sequence],
        transfer_rows: Iterable[Sequence],
        expiry_rows: Iterable[Sequence],
    ) -> None:
        """Rebuild from stored rows (the stores' ``load``). Ids may be int or decimal str.

        account_rows: (seq, id, ledger, code, flags, user_data, timestamp_ms), flags as created
        transfer_rows, in seq order: (seq, id, debit_account_id, credit_account_id, amount,
            ledger, code, flags, pending_id, user_data, timeout_s, timestamp_ms)
        expiry_rows, in seq order: (pending_id, timestamp_ms)

        Balances are not stored: they are the sum of the transfers, replayed here.
        """
        with gc_paused():
            self._restore_rows(account_rows, transfer_rows, expiry_rows)

    def _restore_rows(self, account_rows, transfer_rows, expiry_rows) -> None:
        if self._accounts or self._transfers:
            raise ValueError("restore needs an empty ledger")
        accounts = self._accounts
        totals = self._totals
        now = 0
        max_aseq = 0
        # One int object per distinct small value (codes, ledgers, times): ints
        # read from a database are new objects each, 28-32 bytes apiece.
        shared: dict[int, int] = {}
        share = shared.setdefault
        for seq, aid, ledger, code, flags, ud, ts in account_rows:
            aid = int(aid)
            if aid in accounts:
                raise AssertionError(f"account {aid} is stored twice")
            ud = int(ud)
            accounts[aid] = _Acct(
                aid, share(ledger, ledger), share(code, code), flags, ud or 0, 0, 0, 0, 0, share(ts, ts)
            )
            if ledger not in totals:
                totals[ledger] = [0, 0, 0, 0]
            if seq > max_aseq:
                max_aseq = seq
            if ts > now:
                now = ts
        self._next_aseq = max_aseq + 1

        transfers = self._transfers
        by_ud = self._by_ud
        status = self._status
        closing: list[Transfer] = []
        timed: list[tuple[int, Transfer]] = []
        last_ts = None
        last_seq = 0
        tf = _TF
        mk = _mk_transfer
        for seq, tid, dr_id, cr_id, amount, ledger, code, flags, pid, ud, timeout_s, ts in transfer_rows:
            if seq != last_seq + 1:
                raise AssertionError(f"transfer sequence jumps from {last_seq} to {seq}: a change set is missing")
            last_seq = seq
            tid = int(tid)
            if tid in transfers:
                raise AssertionError(f"transfer {tid} is stored twice")
            dr = accounts.get(int(dr_id))
            cr = accounts.get(int(cr_id))
            if dr is None or cr is None:
                raise AssertionError(f"transfer {tid} names an account that is not stored")
            if ts == last_ts:
                ts = last_ts  # share one int object between neighbours
            else:
                last_ts = ts
            pid = int(pid)
            ud = int(ud)
            t = mk(
                tid, dr.id, cr.id, amount, share(ledger, ledger), share(code, code), tf[flags],
                pid or 0, ud or 0, share(timeout_s, timeout_s), ts,
            )
            transfers[tid] = t
            h = dr.hist
            if h is None:
                dr.hist = [t]
            else:
                h.append(t)
            h = cr.hist
            if h is None:
                cr.hist = [t]
            else:
                h.append(t)
            if ud:
                x = by_ud.get(ud)
                if x is None:
                    by_ud[ud] = t
                elif type(x) is list:
                    x.append(t)
                else:
                    by_ud[ud] = [x, t]
            if flags & _T_PENDING:
                dr.dp += amount
                cr.cp += amount
                status[tid] = PENDING
                if timeout_s:
                    timed.append((seq, t))
                if flags & _T_CLOSING:
                    closing.append(t)
            elif flags & _T_POST_OR_VOID:
                p = transfers.get(pid)
                if p is None or status.get(pid) != PENDING:
                    raise AssertionError(f"transfer {tid} resolves {pid}, which is not a standing pending transfer")
                # Share the pending transfer's int objects.
                _s_pending_id(t, p.id)
                if ud == p.user_data:
                    _s_user_data(t, p.user_data)
                dr.dp -= p.amount
                cr.cp -= p.amount
                if flags & _T_POST:
                    dr.dpo += amount
                    cr.cpo += amount
                    status[pid] = POSTED
                else:
                    status[pid] = VOIDED
            else:
                dr.dpo += amount
                cr.cpo += amount
        if last_ts is not None and last_ts > now:
            now = last_ts
        self._next_tseq = last_seq + 1
        self._first_tseq = self._next_tseq
        expired = 0
        for pid, ts in expiry_rows:
            expired += 1
            pid = int(pid)
            if status.get(pid) != PENDING:
                raise AssertionError(f"expiry recorded for {pid}, which is {status.get(pid)}")
            p = transfers[pid]
            accounts[p.debit_account_id].dp -= p.amount
            accounts[p.credit_account_id].cp -= p.amount
            status[pid] = EXPIRED
            if ts > now:
                now = ts
        self._first_eseq = expired + 1
        # A closing transfer keeps its account closed while it stands or once posted.
        for t in closing:
            if status[t.id] in (PENDING, POSTED):
                if int(t.flags) & _T_CLOSE_D:
                    accounts[t.debit_account_id].flags |= _A_CLOSED
                if int(t.flags) & _T_CLOSE_C:
                    accounts[t.credit_account_id].flags |= _A_CLOSED
        for a in accounts.values():
            tot = totals[a.ledger]
            tot[0] += a.dp
            tot[1] += a.dpo
            tot[2] += a.cp
            tot[3] += a.cpo
        heap = [(_expiry_ms(t), seq, t.id) for seq, t in timed if status[t.id] == PENDING]
        heapq.heapify(heap)
        self._heap = heap
        self._now = now


class _NoTransfer:
    timestamp_ms = -1
    timeout_s = 0


_NO_T = _NoTransfer()
