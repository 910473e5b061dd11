"""Property-based: random sequences of operations against the reference model.

Accounts, transfers (single-phase, pending, post, void, balancing, closing,
linked chains), retries of earlier requests and clock moves with expiry run
against both the Ledger and ledger_model.Model; results, balances, statuses
and stored transfers must match, and the invariants must hold, after every
step. A second property writes the change sets to SQLite as it goes and
checks that a reload equals the ledger at the end.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_model import Model

from posnet.ledger import (
    Account,
    AccountFlags,
    Ledger,
    SqliteLedgerStore,
    Transfer,
    TransferFlags,
)

# Accounts 1-6 are on ledger 1 and 7-8 on ledger 2 (see SETUP); 0 and 9 do not exist.
ACCOUNT_IDS = st.sampled_from([1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 0, 9])
TRANSFER_IDS = st.sampled_from(list(range(1, 33)) + [0])
# Mostly pairs that make sense (cardholder -> settlement, funding -> cardholder, ...), sometimes any two.
ACCOUNT_PAIRS = st.one_of(
    st.sampled_from([(1, 3), (2, 3), (1, 3), (4, 1), (4, 2), (3, 1), (6, 5), (5, 6), (4, 6), (1, 2), (7, 8), (8, 7)]),
    st.tuples(ACCOUNT_IDS, ACCOUNT_IDS),
)
LEDGERS = st.sampled_from([1, 1, 1, 2, 0])

SETUP_ACCOUNTS = [
    Account(1, 1, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),  # a cardholder
    Account(2, 1, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    Account(3, 1, 2),  # scheme settlement
    Account(4, 1, 2),  # funding
    Account(5, 1, 3, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
    Account(6, 1, 3),
    Account(7, 2, 1),
    Account(8, 2, 1),
]
SETUP_TRANSFERS = [
    Transfer(1001, 4, 1, 100, 1, 1),
    Transfer(1002, 4, 2, 40, 1, 1),
    Transfer(1003, 5, 6, 30, 1, 1),
    Transfer(1004, 1, 3, 30, 1, 1, TransferFlags.PENDING, timeout_s=2),
    Transfer(1005, 2, 3, 10, 1, 1, TransferFlags.PENDING),
    Transfer(1006, 1, 3, 20, 1, 1, TransferFlags.PENDING, timeout_s=1),
]

account_flags = st.sets(
    st.sampled_from(
        [
            AccountFlags.LINKED,
            AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
            AccountFlags.CLOSED,
        ]
    ),
    max_size=2,
).map(lambda s: AccountFlags(sum(int(f) for f in s)))


@st.composite
def accounts(draw):
    flags = draw(account_flags)
    # CLOSED at creation is rare: it makes an account useless.
    if flags & AccountFlags.CLOSED and draw(st.integers(0, 3)):
        flags &= ~AccountFlags.CLOSED
    return Account(
        id=draw(st.integers(min_value=0, max_value=11)),
        ledger=draw(LEDGERS),
        code=draw(st.sampled_from([1, 1, 2, 0])),
        flags=flags,
        user_data=draw(st.sampled_from([0, 0, 5])),
    )


@st.composite
def transfers(draw):
    kind = draw(
        st.sampled_from(["single"] * 6 + ["pending"] * 6 + ["post"] * 4 + ["void"] * 2 + ["odd"])
    )
    flags = 0
    pending_id = 0
    timeout_s = 0
    dr, cr = draw(ACCOUNT_PAIRS)
    # Mostly the accounts' own ledger.
    ledger = draw(st.sampled_from([None] * 12 + [1, 2, 0]))
    if ledger is None:
        ledger = 2 if dr in (7, 8) else 1
    code = draw(st.sampled_from([1] * 12 + [2, 0]))
    amount = draw(st.sampled_from([0, 1, 5, 10, 20, 35, 50, 80]))
    if kind == "single":
        flags |= draw(st.sampled_from([0, 0, 0, 0, TransferFlags.BALANCING_DEBIT, TransferFlags.BALANCING_CREDIT]))
    elif kind == "pending":
        flags |= TransferFlags.PENDING
        flags |= draw(
            st.sampled_from(
                [0, 0, 0, 0, 0, 0, TransferFlags.BALANCING_DEBIT, TransferFlags.CLOSING_DEBIT,
                 TransferFlags.CLOSING_CREDIT]
            )
        )
        timeout_s = draw(st.sampled_from([0, 1, 2, 3]))
    elif kind in ("post", "void"):
        flags |= TransferFlags.POST_PENDING if kind == "post" else TransferFlags.VOID_PENDING
        # Mostly one of the last pending transfers created (resolved in _run), else any id.
        pending_id = draw(st.sampled_from([-1, -1, -2, -3, None]))
        if pending_id is None:
            pending_id = draw(TRANSFER_IDS)
        # Mostly leave the optional fields zero, as callers do.
        if draw(st.integers(0, 4)):
            dr = cr = 0
            ledger = 0
            code = 0
        if draw(st.integers(0, 1)):
            amount = 0
    else:
        flags = draw(st.integers(min_value=0, max_value=255)) & ~int(TransferFlags.LINKED)
        pending_id = draw(st.sampled_from([0, 0, draw(TRANSFER_IDS)]))
        timeout_s = draw(st.sampled_from([0, 0, 1]))
    if draw(st.integers(0, 5)) == 0:
        flags |= TransferFlags.LINKED
    return Transfer(
        id=draw(TRANSFER_IDS),
        debit_account_id=dr,
        credit_account_id=cr,
        amount=amount,
        ledger=ledger,
        code=code,
        flags=TransferFlags(int(flags)),
        pending_id=pending_id,
        user_data=draw(st.sampled_from([0, 7, 8])),
        timeout_s=timeout_s,
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("accounts"), st.lists(accounts(), min_size=1, max_size=3)),
        st.tuples(st.just("transfers"), st.lists(transfers(), min_size=1, max_size=4)),
        st.tuples(st.just("transfers"), st.lists(transfers(), min_size=1, max_size=4)),
        st.tuples(st.just("transfers"), st.lists(transfers(), min_size=1, max_size=4)),
        st.tuples(st.just("transfers"), st.lists(transfers(), min_size=1, max_size=4)),
        st.tuples(st.just("retry"), st.integers(min_value=0, max_value=1000)),
        st.tuples(
            st.just("variant"),
            st.tuples(
                st.integers(min_value=0, max_value=1000),
                st.sampled_from(
                    ["user_data", "amount", "code", "ledger", "debit_account_id", "credit_account_id",
                     "timeout_s", "pending_id", "flags"]
                ),
            ),
        ),
        st.tuples(st.just("clock"), st.sampled_from([0, 300, 999, 1000, 1500, 2500])),
    ),
    min_size=3,
    max_size=40,
)


def _resolve(batch: list[Transfer], ledger: Ledger) -> list[Transfer]:
    """Replace pending_id -k with the k-th most recent pending transfer still standing.

    Pending transfers earlier in the same batch count too (a chain may hold
    and post at once); when there are not enough, any pending transfer will do.
    """
    standing = [x.id for x in ledger.transfers() if ledger.pending_status(x.id) == "pending"]
    anyp = [x.id for x in ledger.transfers() if x.flags & TransferFlags.PENDING]
    out = []
    for t in batch:
        if t.pending_id < 0:
            k = -t.pending_id
            pool = standing if len(standing) >= k else anyp
            t = dataclasses.replace(t, pending_id=pool[-k] if len(pool) >= k else 0)
        if t.flags & TransferFlags.PENDING:
            standing.append(t.id)
            anyp.append(t.id)
        out.append(t)
    return out


def _as_dict(obj) -> dict:
    d = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    d["flags"] = int(d["flags"])
    return d


def _compare(ledger: Ledger, model: Model) -> None:
    ledger.check_invariants()
    s = model.s
    assert ledger.account_count() == len(s["accounts"])
    for aid, m in s["accounts"].items():
        a = ledger.account(aid)
        assert a is not None, aid
        got = (int(a.flags), a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.timestamp_ms)
        want = (m["flags"], m["dp"], m["dpo"], m["cp"], m["cpo"], m["ts"])
        assert got == want, f"account {aid}: ledger {got} != model {want}"
    assert [t.id for t in ledger.transfers()] == s["order"]
    for tid in s["order"]:
        got = _as_dict(ledger.transfer(tid))
        assert got == s["transfers"][tid], f"transfer {tid}"
        assert ledger.pending_status(tid) == s["status"].get(tid), f"status of {tid}"


def _run(ops, on_step=None):
    ledger = Ledger()
    model = Model()
    now = 1_000
    submitted: list[Transfer] = []
    ops = [("accounts", SETUP_ACCOUNTS), ("transfers", SETUP_TRANSFERS)] + list(ops)
    for kind, arg in ops:
        if kind == "accounts":
            got = [r.value for r in ledger.create_accounts(arg, now)]
            want = model.create_accounts([_as_dict(a) for a in arg], now)
            assert got == want, f"create_accounts {arg}"
        elif kind in ("transfers", "retry", "variant"):
            if kind == "retry":
                if not submitted:
                    continue
                batch = [submitted[arg % len(submitted)]]
            elif kind == "variant":
                # The same id again with one field changed.
                if not submitted:
                    continue
                index, field = arg
                t = submitted[index % len(submitted)]
                if field == "flags":
                    new = TransferFlags(int(t.flags) ^ int(TransferFlags.LINKED if index % 2 else TransferFlags.PENDING))
                    if new & TransferFlags.LINKED:
                        new &= ~TransferFlags.LINKED
                        new |= TransferFlags.PENDING
                else:
                    new = getattr(t, field) + 1
                batch = [dataclasses.replace(t, **{field: new})]
            else:
                batch = _resolve(arg, ledger)
                submitted.extend(batch)
            got = [r.value for r in ledger.create_transfers(batch, now)]
            want = model.create_transfers([_as_dict(t) for t in batch], now)
            assert got == want, f"create_transfers {batch}"
        else:
            now += arg
            got = ledger.expire_pending(now)
            want = model.expire(now)
            assert got == want, "expired ids"
            nxt = ledger.next_expiry_ms()
            assert nxt is None or nxt > now
        _compare(ledger, model)
        if on_step is not None:
            on_step(ledger)
    return ledger, model


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_ledger_matches_the_reference_model(ops):
    _run(ops)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_change_sets_written_as_they_come_reload_to_the_same_ledger(ops):
    conn = sqlite3.connect(":memory:")
    store = SqliteLedgerStore(conn)
    store.migrate()

    def persist(ledger):
        changes = ledger.take_changes()
        store.write(changes)
        conn.commit()
        assert not ledger.take_changes()

    ledger, _model = _run(ops, on_step=persist)
    loaded = store.load()
    assert loaded.accounts() == ledger.accounts()
    assert loaded.transfers() == ledger.transfers()
    for t in ledger.transfers():
        assert loaded.pending_status(t.id) == ledger.pending_status(t.id)
    assert loaded.next_expiry_ms() == ledger.next_expiry_ms()
    conn.close()
