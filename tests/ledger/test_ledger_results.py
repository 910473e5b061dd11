"""Table-driven: every result code of create_accounts and create_transfers.

Each case starts from the same books (``books()``) and submits one batch; the
expected results are listed per event. A failed event must leave balances
and the change set untouched.
"""

from __future__ import annotations

import pytest

from posnet.ledger import (
    BALANCE_MAX,
    U128_MAX,
    Account,
    AccountFlags,
    CreateAccountResult as AR,
    CreateTransferResult as R,
    Ledger,
    Transfer,
    TransferFlags as F,
)

CNY = 156
USD = 840
NOW = 1_000_000
H = BALANCE_MAX // 2

# Accounts of the books
CARD = 1  # DEBITS_MUST_NOT_EXCEED_CREDITS, 1000 credited
SETTLE = 2
FUND = 3
CMNED = 4  # CREDITS_MUST_NOT_EXCEED_DEBITS, nothing debited
DOLLAR = 5  # another ledger
DOLLAR2 = 6
CLOSED = 7  # created closed
BIG = 8  # credits_posted = MAX - 5
BIG_SRC = 9  # debits_posted = MAX - 5
PEND_BIG = 10  # debits_pending = MAX - 5 (pending 9xx)
PEND_BIG_DST = 11  # credits_pending = MAX - 5
HALF_D = 12  # debits_pending = H, debits_posted = H
HALF_C = 13  # credits_pending = H, credits_posted = H
SRC_A, SRC_B, SRC_C, SRC_D = 14, 15, 16, 17  # sources/sinks for the big balances

# Transfers of the books
FUNDING = 100
HOLD = 101  # CARD -> SETTLE 300, pending, timeout 60 s
POSTED_HOLD = 102  # posted
VOIDED_HOLD = 103  # voided
EXPIRED_HOLD = 104  # expired
SINGLE = 105  # CARD -> SETTLE 10, single phase
OLD_HOLD = 106  # CARD -> SETTLE 5, pending, timeout 1 s: past its time, not yet expired
CLOSE_HOLD = 107  # closing hold on SRC_D (the debit account)


def books() -> Ledger:
    led = Ledger()
    A = Account
    res = led.create_accounts(
        [
            A(CARD, CNY, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            A(SETTLE, CNY, 1201),
            A(FUND, CNY, 1501),
            A(CMNED, CNY, 1201, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
            A(DOLLAR, USD, 1101),
            A(DOLLAR2, USD, 1101),
            A(CLOSED, CNY, 1101, AccountFlags.CLOSED),
            A(BIG, CNY, 1),
            A(BIG_SRC, CNY, 1),
            A(PEND_BIG, CNY, 1),
            A(PEND_BIG_DST, CNY, 1),
            A(HALF_D, CNY, 1),
            A(HALF_C, CNY, 1),
            A(SRC_A, CNY, 1),
            A(SRC_B, CNY, 1),
            A(SRC_C, CNY, 1),
            A(SRC_D, CNY, 1),
        ],
        NOW - 10_000,
    )
    assert set(res) == {AR.OK}
    T = Transfer
    res = led.create_transfers(
        [
            T(FUNDING, FUND, CARD, 1000, CNY, 1),
            T(HOLD, CARD, SETTLE, 300, CNY, 10, F.PENDING, timeout_s=60, user_data=42),
            T(POSTED_HOLD, CARD, SETTLE, 50, CNY, 10, F.PENDING, timeout_s=60),
            T(201, 0, 0, 0, 0, 0, F.POST_PENDING, pending_id=POSTED_HOLD),
            T(VOIDED_HOLD, CARD, SETTLE, 40, CNY, 10, F.PENDING, timeout_s=60),
            T(202, 0, 0, 0, 0, 0, F.VOID_PENDING, pending_id=VOIDED_HOLD),
            T(EXPIRED_HOLD, CARD, SETTLE, 30, CNY, 10, F.PENDING, timeout_s=2),
            T(SINGLE, CARD, SETTLE, 10, CNY, 11),
            T(301, BIG_SRC, BIG, BALANCE_MAX - 5, CNY, 1),
            T(302, PEND_BIG, PEND_BIG_DST, BALANCE_MAX - 5, CNY, 1, F.PENDING),
            T(303, HALF_D, SRC_A, H, CNY, 1),
            T(304, HALF_D, SRC_B, H, CNY, 1, F.PENDING),
            T(305, SRC_C, HALF_C, H, CNY, 1),
            T(306, SRC_C, HALF_C, H, CNY, 1, F.PENDING),
        ],
        NOW - 9_000,
    )
    assert set(res) == {R.OK}, res
    assert led.expire_pending(NOW - 5_000) == [EXPIRED_HOLD]
    res = led.create_transfers(
        [
            T(OLD_HOLD, CARD, SETTLE, 5, CNY, 10, F.PENDING, timeout_s=1),
            T(CLOSE_HOLD, SRC_D, SETTLE, 0, CNY, 1, F.PENDING | F.CLOSING_DEBIT),
        ],
        NOW - 1_000,
    )
    assert set(res) == {R.OK}, res
    led.check_invariants()
    led.take_changes()
    return led


def T(id=500, dr=CARD, cr=SETTLE, amount=1, ledger=CNY, code=10, flags=F.NONE, pending_id=0, user_data=0, timeout_s=0):
    return Transfer(id, dr, cr, amount, ledger, code, flags, pending_id, user_data, timeout_s)


def P(id=500, pending_id=HOLD, amount=0, flags=F.POST_PENDING, dr=0, cr=0, ledger=0, code=0, timeout_s=0):
    return Transfer(id, dr, cr, amount, ledger, code, flags, pending_id, 0, timeout_s)


def V(id=500, pending_id=HOLD, amount=0, **kw):
    return P(id, pending_id, amount, flags=F.VOID_PENDING, **kw)


TRANSFER_CASES = [
    # (name, batch, expected results)
    ("ok single phase", [T()], [R.OK]),
    ("ok pending", [T(flags=F.PENDING, timeout_s=5)], [R.OK]),
    ("ok post", [P()], [R.OK]),
    ("ok void", [V()], [R.OK]),
    ("id zero", [T(id=0)], [R.ID_MUST_NOT_BE_ZERO]),
    ("id max", [T(id=U128_MAX)], [R.ID_MUST_NOT_BE_INT_MAX]),
    ("exists", [T(id=SINGLE, dr=CARD, cr=SETTLE, amount=10, code=11)], [R.EXISTS]),
    ("exists: the linked flag is not compared", [T(id=501, flags=F.LINKED), T(id=502), T(id=501)],
     [R.OK, R.OK, R.EXISTS]),
    ("exists fails a chain, as in TigerBeetle", [T(id=SINGLE, amount=10, code=11, flags=F.LINKED), T(id=501)],
     [R.EXISTS, R.LINKED_EVENT_FAILED]),
    ("exists, different amount", [T(id=SINGLE, amount=11, code=11)], [R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists, different user_data", [T(id=SINGLE, amount=10, code=11, user_data=1)],
     [R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists, different flags", [T(id=SINGLE, amount=10, code=11, flags=F.PENDING)],
     [R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists beats validation", [T(id=SINGLE, dr=0, cr=0, amount=10, code=11)], [R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("post retry exists", [P(id=201, pending_id=POSTED_HOLD)], [R.EXISTS]),
    ("post retry naming the full amount exists", [P(id=201, pending_id=POSTED_HOLD, amount=50)], [R.EXISTS]),
    ("post retry with another amount", [P(id=201, pending_id=POSTED_HOLD, amount=49)],
     [R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("void retry exists", [V(id=202, pending_id=VOIDED_HOLD)], [R.EXISTS]),
    ("post and void", [P(flags=F.POST_PENDING | F.VOID_PENDING)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    ("post and pending", [P(flags=F.POST_PENDING | F.PENDING)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    ("void and balancing", [P(flags=F.VOID_PENDING | F.BALANCING_DEBIT)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    ("post and closing", [P(flags=F.POST_PENDING | F.CLOSING_CREDIT)], [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    ("debit id zero", [T(dr=0)], [R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO]),
    ("debit id max", [T(dr=U128_MAX)], [R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX]),
    ("credit id zero", [T(cr=0)], [R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO]),
    ("credit id max", [T(cr=U128_MAX)], [R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX]),
    ("same account", [T(dr=CARD, cr=CARD)], [R.ACCOUNTS_MUST_BE_DIFFERENT]),
    ("pending_id on a plain transfer", [T(pending_id=HOLD)], [R.PENDING_ID_MUST_BE_ZERO]),
    ("post without pending_id", [P(pending_id=0)], [R.PENDING_ID_MUST_NOT_BE_ZERO]),
    ("post of pending_id max", [P(pending_id=U128_MAX)], [R.PENDING_ID_MUST_NOT_BE_INT_MAX]),
    ("post of itself", [P(id=HOLD + 1000, pending_id=HOLD + 1000)], [R.PENDING_ID_MUST_BE_DIFFERENT]),
    ("timeout on a single-phase transfer", [T(timeout_s=5)], [R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER]),
    ("timeout on a post", [P(timeout_s=5)], [R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER]),
    ("closing without pending", [T(flags=F.CLOSING_DEBIT)], [R.CLOSING_TRANSFER_MUST_BE_PENDING]),
    ("ledger zero", [T(ledger=0)], [R.LEDGER_MUST_NOT_BE_ZERO]),
    ("code zero", [T(code=0)], [R.CODE_MUST_NOT_BE_ZERO]),
    ("amount zero", [T(amount=0)], [R.AMOUNT_MUST_NOT_BE_ZERO]),
    ("amount zero pending", [T(amount=0, flags=F.PENDING)], [R.AMOUNT_MUST_NOT_BE_ZERO]),
    ("debit account not found", [T(dr=999)], [R.DEBIT_ACCOUNT_NOT_FOUND]),
    ("credit account not found", [T(cr=999)], [R.CREDIT_ACCOUNT_NOT_FOUND]),
    ("accounts on two ledgers", [T(dr=DOLLAR, cr=SETTLE)], [R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER]),
    ("transfer on another ledger", [T(dr=DOLLAR, cr=DOLLAR2, ledger=CNY)],
     [R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS]),
    ("pending transfer not found", [P(pending_id=999)], [R.PENDING_TRANSFER_NOT_FOUND]),
    ("pending transfer not pending", [P(pending_id=SINGLE)], [R.PENDING_TRANSFER_NOT_PENDING]),
    ("post naming another debit account", [P(dr=FUND)], [R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID]),
    ("post naming the same accounts", [P(dr=CARD, cr=SETTLE, ledger=CNY, code=10)], [R.OK]),
    ("post naming another credit account", [P(cr=FUND)], [R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID]),
    ("post naming another ledger", [P(ledger=USD)], [R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER]),
    ("post naming another code", [P(code=11)], [R.PENDING_TRANSFER_HAS_DIFFERENT_CODE]),
    ("post more than held", [P(amount=301)], [R.EXCEEDS_PENDING_TRANSFER_AMOUNT]),
    ("void of part", [V(amount=299)], [R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT]),
    ("void naming the full amount", [V(amount=300)], [R.OK]),
    ("post of a posted hold", [P(pending_id=POSTED_HOLD)], [R.PENDING_TRANSFER_ALREADY_POSTED]),
    ("void of a posted hold", [V(pending_id=POSTED_HOLD)], [R.PENDING_TRANSFER_ALREADY_POSTED]),
    ("post of a voided hold", [P(pending_id=VOIDED_HOLD)], [R.PENDING_TRANSFER_ALREADY_VOIDED]),
    ("post of an expired hold", [P(pending_id=EXPIRED_HOLD)], [R.PENDING_TRANSFER_EXPIRED]),
    ("post of a hold past its time, not yet expired", [P(pending_id=OLD_HOLD)], [R.PENDING_TRANSFER_EXPIRED]),
    ("void of a hold past its time", [V(pending_id=OLD_HOLD)], [R.PENDING_TRANSFER_EXPIRED]),
    ("debit account closed", [T(dr=CLOSED, cr=SETTLE)], [R.DEBIT_ACCOUNT_ALREADY_CLOSED]),
    ("credit account closed", [T(dr=FUND, cr=CLOSED)], [R.CREDIT_ACCOUNT_ALREADY_CLOSED]),
    ("debit account closed by a closing hold", [T(dr=SRC_D, cr=SETTLE)], [R.DEBIT_ACCOUNT_ALREADY_CLOSED]),
    ("credit into an account closed by a closing hold", [T(dr=FUND, cr=SRC_D)], [R.CREDIT_ACCOUNT_ALREADY_CLOSED]),
    ("closed beats exceeds", [T(dr=CLOSED, cr=SETTLE, amount=10**6)], [R.DEBIT_ACCOUNT_ALREADY_CLOSED]),
    ("post of the closing hold itself", [P(pending_id=CLOSE_HOLD)], [R.OK]),
    ("void of the closing hold", [V(pending_id=CLOSE_HOLD)], [R.OK]),
    ("overflows debits pending", [T(dr=PEND_BIG, cr=SETTLE, amount=10, flags=F.PENDING)],
     [R.OVERFLOWS_DEBITS_PENDING]),
    ("overflows credits pending", [T(dr=FUND, cr=PEND_BIG_DST, amount=10, flags=F.PENDING)],
     [R.OVERFLOWS_CREDITS_PENDING]),
    ("overflows debits posted", [T(dr=BIG_SRC, cr=SETTLE, amount=10)], [R.OVERFLOWS_DEBITS_POSTED]),
    ("overflows credits posted", [T(dr=FUND, cr=BIG, amount=10)], [R.OVERFLOWS_CREDITS_POSTED]),
    ("overflows debits", [T(dr=HALF_D, cr=SETTLE, amount=5)], [R.OVERFLOWS_DEBITS]),
    ("overflows credits", [T(dr=FUND, cr=HALF_C, amount=5)], [R.OVERFLOWS_CREDITS]),
    ("exceeds credits", [T(amount=1000)], [R.EXCEEDS_CREDITS]),
    ("exceeds credits by one", [T(amount=1000 - 300 - 50 - 10 - 5 + 1)], [R.EXCEEDS_CREDITS]),
    ("up to the limit exactly", [T(amount=1000 - 300 - 50 - 10 - 5)], [R.OK]),
    ("exceeds credits with a hold", [T(amount=1000, flags=F.PENDING)], [R.EXCEEDS_CREDITS]),
    ("exceeds debits", [T(dr=FUND, cr=CMNED)], [R.EXCEEDS_DEBITS]),
    ("balancing debit with nothing to give", [T(dr=SETTLE, cr=FUND, flags=F.BALANCING_DEBIT)],
     [R.OK]),  # SETTLE has credits posted 60; see the balancing tests for the amounts
    ("balancing credit with nothing to take", [T(dr=FUND, cr=CMNED, flags=F.BALANCING_CREDIT)],
     [R.EXCEEDS_DEBITS]),
    ("linked chain ok", [T(id=501, flags=F.LINKED), T(id=502)], [R.OK, R.OK]),
    ("linked chain fails as a whole", [T(id=501, flags=F.LINKED), T(id=502, amount=10**6), T(id=503)],
     [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS, R.OK]),
    ("failure in the middle of a chain",
     [T(id=501, flags=F.LINKED), T(id=502, dr=999, flags=F.LINKED), T(id=503, flags=F.LINKED), T(id=504)],
     [R.LINKED_EVENT_FAILED, R.DEBIT_ACCOUNT_NOT_FOUND, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_FAILED]),
    ("chain open", [T(id=501), T(id=502, flags=F.LINKED)], [R.OK, R.LINKED_EVENT_CHAIN_OPEN]),
    ("chain open fails the chain", [T(id=501, flags=F.LINKED), T(id=502, flags=F.LINKED)],
     [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]),
    ("open chain after a failure", [T(id=0, flags=F.LINKED), T(id=502, flags=F.LINKED)],
     [R.ID_MUST_NOT_BE_ZERO, R.LINKED_EVENT_CHAIN_OPEN]),
    ("chains are independent",
     [T(id=501, flags=F.LINKED), T(id=502, dr=999), T(id=503, flags=F.LINKED), T(id=504)],
     [R.LINKED_EVENT_FAILED, R.DEBIT_ACCOUNT_NOT_FOUND, R.OK, R.OK]),
    ("a chain sees its own hold and posts it",
     [T(id=501, flags=F.PENDING | F.LINKED, amount=20), P(id=502, pending_id=501, amount=15)], [R.OK, R.OK]),
    ("duplicate id in one batch", [T(id=501), T(id=501)], [R.OK, R.EXISTS]),
    ("duplicate id, different fields", [T(id=501), T(id=501, amount=2)], [R.OK, R.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("second post of one hold in a batch", [P(id=501), P(id=502)], [R.OK, R.PENDING_TRANSFER_ALREADY_POSTED]),
    ("post then void in a batch", [P(id=501, amount=1), V(id=502)], [R.OK, R.PENDING_TRANSFER_ALREADY_POSTED]),
    ("an earlier event makes room for a later one", [T(id=501, dr=FUND, cr=CARD, amount=1000), T(id=502, amount=1500)],
     [R.OK, R.OK]),
]


def _balances(led: Ledger):
    return [(a.id, a.flags, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            for a in led.accounts()]


@pytest.mark.parametrize("name,batch,expected", TRANSFER_CASES, ids=[c[0] for c in TRANSFER_CASES])
def test_create_transfers_result(name, batch, expected):
    led = books()
    before = _balances(led)
    n_before = led.transfer_count()
    results = led.create_transfers(batch, NOW)
    assert results == expected
    assert all(isinstance(r, R) for r in results)
    led.check_invariants()
    created = [t for t, r in zip(batch, results) if r is R.OK]
    assert led.transfer_count() == n_before + len(created)
    changes = led.take_changes()
    assert [t.id for t in changes.transfers] == [t.id for t in created]
    if not created:
        assert _balances(led) == before, "a batch with no success must not move money"
        assert not changes


def test_results_are_strings_with_tigerbeetle_names():
    assert R.EXCEEDS_CREDITS == "exceeds_credits"
    assert str(R.PENDING_TRANSFER_EXPIRED) == "pending_transfer_expired"
    for r in list(R) + list(AR):
        assert r.value == r.name.lower()


ACCOUNT_CASES = [
    ("ok", [Account(50, CNY, 1)], [AR.OK]),
    ("id zero", [Account(0, CNY, 1)], [AR.ID_MUST_NOT_BE_ZERO]),
    ("id max", [Account(U128_MAX, CNY, 1)], [AR.ID_MUST_NOT_BE_INT_MAX]),
    ("exists", [Account(CARD, CNY, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)], [AR.EXISTS]),
    ("exists, different flags", [Account(CARD, CNY, 1101)], [AR.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists, different code", [Account(CARD, CNY, 1102, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)],
     [AR.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists, different ledger", [Account(CARD, USD, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)],
     [AR.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists, different user_data",
     [Account(CARD, CNY, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, user_data=3)],
     [AR.EXISTS_WITH_DIFFERENT_FIELDS]),
    ("exists though closed since by a closing hold", [Account(SRC_D, CNY, 1)], [AR.EXISTS]),
    ("both limit flags",
     [Account(50, CNY, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)],
     [AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE]),
    ("ledger zero", [Account(50, 0, 1)], [AR.LEDGER_MUST_NOT_BE_ZERO]),
    ("code zero", [Account(50, CNY, 0)], [AR.CODE_MUST_NOT_BE_ZERO]),
    ("linked ok", [Account(50, CNY, 1, AccountFlags.LINKED), Account(51, CNY, 1)], [AR.OK, AR.OK]),
    ("linked fails as a whole", [Account(50, CNY, 1, AccountFlags.LINKED), Account(51, CNY, 0), Account(52, CNY, 1)],
     [AR.LINKED_EVENT_FAILED, AR.CODE_MUST_NOT_BE_ZERO, AR.OK]),
    ("chain open", [Account(50, CNY, 1), Account(51, CNY, 1, AccountFlags.LINKED)],
     [AR.OK, AR.LINKED_EVENT_CHAIN_OPEN]),
    ("duplicate in one batch", [Account(50, CNY, 1), Account(50, CNY, 1)], [AR.OK, AR.EXISTS]),
]


@pytest.mark.parametrize("name,batch,expected", ACCOUNT_CASES, ids=[c[0] for c in ACCOUNT_CASES])
def test_create_accounts_result(name, batch, expected):
    led = books()
    n_before = led.account_count()
    results = led.create_accounts(batch, NOW)
    assert results == expected
    created = [a for a, r in zip(batch, results) if r is AR.OK]
    assert led.account_count() == n_before + len(created)
    changes = led.take_changes()
    assert [row[1] for row in changes.accounts] == [a.id for a in created]
    led.check_invariants()
