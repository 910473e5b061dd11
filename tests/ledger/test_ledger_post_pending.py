"""``Ledger.post_pending`` is ``create_transfers`` of plain posts: after random histories (from the
reference-model property test), the same posts given to both on two copies of the ledger must give
the same results, the same stored transfers, balances, statuses and change sets: posts of standing
holds, of holds posted, voided, expired (swept or only past their time), unknown, not pending, ids
that exist already, repeated in the batch, zero and too large."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger_property import _run, operations

from posnet.ledger import Ledger, Transfer, TransferFlags
from posnet.ledger.types import U128_MAX

# Ids of earlier transfers (1-32, the setup's 1001-1006), new ones, and the two forbidden.
POST_IDS = st.sampled_from(list(range(1, 33)) + [1001, 1004, 2001, 2002, 2003, 2004, 0, U128_MAX])
# -k: the k-th most recent hold still standing; else as given (1001: not pending, 9999: unknown, 2001: the
# post's own id when it is 2001, 0).
PENDING_IDS = st.sampled_from([-1, -1, -2, -3, 1004, 1005, 1006, 1001, 9999, 2001, 0, U128_MAX])
AMOUNTS = st.sampled_from([0, 0, 1, 5, 10, 20, 30, 50])
posts = st.lists(st.tuples(POST_IDS, PENDING_IDS, AMOUNTS), min_size=1, max_size=6)


def _resolve(batch, ledger: Ledger):
    standing = [t.id for t in ledger.transfers() if ledger.pending_status(t.id) == "pending"]
    out = []
    for tid, pid, amount in batch:
        if pid < 0:
            pid = standing[pid] if len(standing) >= -pid else 9999
        out.append((tid, pid, amount))
    return out


def _state(ledger: Ledger):
    ledger.check_invariants()
    ids = [t.id for t in ledger.transfers()]
    return (
        ledger.accounts(),
        ledger.transfers(),
        {tid: ledger.pending_status(tid) for tid in ids},
        ledger.take_changes(),
        ledger.next_expiry_ms(),
        ledger.totals(1),
        ledger.now_ms,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, posts, st.sampled_from([0, 0, 500, 1000, 2500]))
def test_post_pending_is_create_transfers_of_posts(ops, batch, later_ms):
    one, _ = _run(ops)
    other, _ = _run(ops)
    assert _state(one) == _state(other)
    batch = _resolve(batch, one)
    now = one.now_ms + later_ms  # holds past their time but not swept: expired all the same
    want = one.create_transfers(
        [Transfer(tid, 0, 0, amount, 0, 0, TransferFlags.POST_PENDING, pending_id=pid) for tid, pid, amount in batch], now
    )
    got = other.post_pending(batch, now)
    assert got == want, batch
    assert _state(other) == _state(one)


def test_post_pending_checks_every_post_before_it_applies_any():
    """A field out of range fails as ``create_transfers`` fails it, and nothing of the batch is applied."""
    ledger, _ = _run([])
    before = [t.id for t in ledger.transfers()]
    for bad, error in (((2001, 1004, -1), ValueError), ((2001, 1004, 1.5), TypeError), ((2001, U128_MAX + 1, 0), ValueError)):
        with pytest.raises(error) as raised:
            ledger.post_pending([(2002, 1005, 0), bad], 5_000)
        with pytest.raises(error) as also:
            ledger.create_transfers([Transfer(bad[0], 0, 0, bad[2], 0, 0, TransferFlags.POST_PENDING, pending_id=bad[1])], 5_000)
        assert str(raised.value) == str(also.value)
        assert [t.id for t in ledger.transfers()] == before
        assert ledger.pending_status(1005) == "pending"
