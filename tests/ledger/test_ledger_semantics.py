"""Two-phase transfers, expiry, linked chains, balancing, closing, change sets, invariants."""

from __future__ import annotations

import pytest

from posnet.ledger import (
    Account,
    AccountFlags,
    CreateTransferResult as R,
    Ledger,
    Transfer,
    TransferFlags as F,
)
from posnet.ledger import chart as C

NOW = 1_795_485_600_000
CARD, SETTLE, FUND, MERCHANT = 1, 2, 3, 4


def bal(led: Ledger, aid: int) -> tuple[int, int, int, int]:
    a = led.account(aid)
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


@pytest.fixture
def led() -> Ledger:
    led = Ledger()
    led.create_accounts(
        [
            Account(CARD, C.CNY, C.ISSUER_CARDHOLDER, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            Account(SETTLE, C.CNY, C.ISSUER_SCHEME_SETTLEMENT),
            Account(FUND, C.CNY, C.ISSUER_FUNDING),
        ],
        NOW,
    )
    assert led.create_transfers([Transfer(1, FUND, CARD, 10_000, C.CNY, C.OPENING_BALANCE)], NOW) == [R.OK]
    led.take_changes()
    return led


def hold(tid, amount, timeout_s=60, user_data=0, dr=CARD, cr=SETTLE, flags=F.NONE):
    return Transfer(tid, dr, cr, amount, C.CNY, C.PURCHASE_HOLD, F.PENDING | flags, user_data=user_data,
                    timeout_s=timeout_s)


def post(tid, pending_id, amount=0, user_data=0):
    return Transfer(tid, 0, 0, amount, 0, 0, F.POST_PENDING, pending_id=pending_id, user_data=user_data)


def void(tid, pending_id):
    return Transfer(tid, 0, 0, 0, 0, 0, F.VOID_PENDING, pending_id=pending_id)


# ------------------------------------------------------------------ two phases


def test_a_hold_reserves_and_limits_what_is_left(led):
    assert led.create_transfers([hold(10, 6_000)], NOW) == [R.OK]
    assert bal(led, CARD) == (6_000, 0, 0, 10_000)
    assert bal(led, SETTLE) == (0, 0, 6_000, 0)
    assert led.account(CARD).available_credit_balance == 4_000
    assert led.pending_status(10) == "pending"
    assert led.create_transfers([hold(11, 4_001)], NOW) == [R.EXCEEDS_CREDITS]
    assert led.create_transfers([hold(11, 4_000)], NOW) == [R.OK]
    led.check_invariants()


def test_post_with_amount_zero_posts_the_full_hold(led):
    led.create_transfers([hold(10, 6_000, user_data=77)], NOW)
    assert led.create_transfers([post(11, 10)], NOW + 1) == [R.OK]
    assert bal(led, CARD) == (0, 6_000, 0, 10_000)
    assert bal(led, SETTLE) == (0, 0, 0, 6_000)
    assert led.pending_status(10) == "posted"
    p = led.transfer(11)
    assert (p.debit_account_id, p.credit_account_id, p.amount, p.ledger, p.code) == (CARD, SETTLE, 6_000, C.CNY,
                                                                                      C.PURCHASE_HOLD)
    assert p.user_data == 77, "a post without user_data takes the hold's"
    assert p.timestamp_ms == NOW + 1
    led.check_invariants()


def test_partial_post_releases_the_rest(led):
    led.create_transfers([hold(10, 6_000)], NOW)
    assert led.create_transfers([post(11, 10, amount=4_500, user_data=5)], NOW) == [R.OK]
    assert bal(led, CARD) == (0, 4_500, 0, 10_000)
    assert bal(led, SETTLE) == (0, 0, 0, 4_500)
    assert led.transfer(11).user_data == 5
    assert led.account(CARD).available_credit_balance == 5_500
    led.check_invariants()


def test_void_releases_all(led):
    led.create_transfers([hold(10, 6_000)], NOW)
    assert led.create_transfers([void(11, 10)], NOW) == [R.OK]
    assert bal(led, CARD) == (0, 0, 0, 10_000)
    assert bal(led, SETTLE) == (0, 0, 0, 0)
    assert led.pending_status(10) == "voided"
    assert led.transfer(11).amount == 6_000
    led.check_invariants()


def test_a_hold_resolves_once(led):
    led.create_transfers([hold(10, 6_000)], NOW)
    assert led.create_transfers([post(11, 10, 1_000)], NOW) == [R.OK]
    assert led.create_transfers([post(12, 10, 1_000)], NOW) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    assert led.create_transfers([void(13, 10)], NOW) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    assert led.create_transfers([post(11, 10, 1_000)], NOW) == [R.EXISTS], "the same post again is harmless"
    assert bal(led, CARD) == (0, 1_000, 0, 10_000)
    assert led.expire_pending(NOW + 3_600_000) == []


# ---------------------------------------------------------------------- expiry


def test_expiry_releases_the_hold_once_at_its_time(led):
    led.create_transfers([hold(10, 6_000, timeout_s=30)], NOW)
    assert led.next_expiry_ms() == NOW + 30_000
    assert led.expire_pending(NOW + 29_999) == []
    assert led.pending_status(10) == "pending"
    assert led.expire_pending(NOW + 30_000) == [10]
    assert led.pending_status(10) == "expired"
    assert bal(led, CARD) == (0, 0, 0, 10_000)
    assert bal(led, SETTLE) == (0, 0, 0, 0)
    assert led.expire_pending(NOW + 60_000) == []
    assert led.next_expiry_ms() is None
    changes = led.take_changes()
    assert changes.expiries == [(10, NOW + 30_000)]
    assert [t.id for t in changes.transfers] == [10]
    assert led.create_transfers([post(11, 10)], NOW + 60_000) == [R.PENDING_TRANSFER_EXPIRED]
    assert led.create_transfers([void(11, 10)], NOW + 60_000) == [R.PENDING_TRANSFER_EXPIRED]
    led.check_invariants()


def test_a_hold_past_its_time_cannot_be_posted_before_the_driver_expires_it(led):
    led.create_transfers([hold(10, 6_000, timeout_s=30)], NOW)
    assert led.create_transfers([post(11, 10)], NOW + 30_000) == [R.PENDING_TRANSFER_EXPIRED]
    assert led.pending_status(10) == "pending", "the hold stands until expire_pending runs"
    assert bal(led, CARD)[0] == 6_000
    assert led.expire_pending(NOW + 30_000) == [10]


def test_expiries_come_in_time_order_then_creation_order(led):
    led.create_transfers([hold(10, 1, timeout_s=20), hold(11, 1, timeout_s=10), hold(12, 1, timeout_s=10),
                          hold(13, 1, timeout_s=0)], NOW)
    led.create_transfers([post(14, 11)], NOW)
    assert led.next_expiry_ms() == NOW + 10_000
    assert led.expire_pending(NOW + 100_000) == [12, 10]
    assert led.pending_status(13) == "pending", "a hold without timeout never expires"
    assert led.next_expiry_ms() is None


def test_next_expiry_skips_resolved_holds(led):
    led.create_transfers([hold(10, 1, timeout_s=10), hold(11, 1, timeout_s=20)], NOW)
    led.create_transfers([void(12, 10)], NOW)
    assert led.next_expiry_ms() == NOW + 20_000


# -------------------------------------------------------------------- chains


def test_a_failed_chain_undoes_everything_it_did(led):
    led.create_transfers([hold(10, 6_000)], NOW)
    led.take_changes()
    before = [bal(led, a) for a in (CARD, SETTLE, FUND)]
    results = led.create_transfers(
        [
            Transfer(20, FUND, CARD, 500, C.CNY, C.MANUAL_CREDIT, F.LINKED, user_data=9),
            Transfer(21, 0, 0, 0, 0, 0, F.POST_PENDING | F.LINKED, pending_id=10),
            hold(22, 100, flags=F.LINKED, timeout_s=1),
            Transfer(23, CARD, SETTLE, 10**9, C.CNY, C.PURCHASE_POST),
        ],
        NOW,
    )
    assert results == [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert [bal(led, a) for a in (CARD, SETTLE, FUND)] == before
    assert led.pending_status(10) == "pending", "the rolled-back post must not resolve the hold"
    assert led.transfer(20) is None and led.transfer(22) is None
    assert led.transfers_by_user_data(9) == []
    assert not led.take_changes()
    assert led.next_expiry_ms() == NOW + 60_000, "the rolled-back hold's timer is gone"
    led.check_invariants()
    # The same ids can be used again.
    assert led.create_transfers([post(21, 10)], NOW) == [R.OK]
    assert led.expire_pending(NOW + 10_000) == []


def test_a_chain_that_succeeds_is_all_there(led):
    results = led.create_transfers(
        [
            hold(10, 100, flags=F.LINKED),
            Transfer(11, 0, 0, 60, 0, 0, F.POST_PENDING | F.LINKED, pending_id=10),
            Transfer(12, SETTLE, FUND, 60, C.CNY, C.SETTLEMENT),
        ],
        NOW,
    )
    assert results == [R.OK, R.OK, R.OK]
    assert bal(led, CARD) == (0, 60, 0, 10_000)
    assert bal(led, SETTLE) == (0, 60, 0, 60)
    assert [t.id for t in led.take_changes().transfers] == [10, 11, 12]
    led.check_invariants()


def test_linked_accounts_are_all_or_nothing():
    led = Ledger()
    res = led.create_accounts(
        [Account(1, C.CNY, 1, AccountFlags.LINKED), Account(2, C.CNY, 1, AccountFlags.LINKED), Account(3, 0, 1)], NOW
    )
    assert [r.value for r in res] == ["linked_event_failed", "linked_event_failed", "ledger_must_not_be_zero"]
    assert led.account(1) is None and led.account(2) is None
    assert not led.take_changes()
    assert led.create_accounts([Account(1, C.CNY, 1)], NOW) == ["ok"]


# ----------------------------------------------------------------- balancing


def test_balancing_debit_takes_what_is_there(led):
    led.create_transfers([hold(10, 2_500)], NOW)
    t = Transfer(20, CARD, SETTLE, 9_000, C.CNY, C.PURCHASE_POST, F.BALANCING_DEBIT)
    assert led.create_transfers([t], NOW) == [R.OK]
    assert led.transfer(20).amount == 7_500
    assert led.account(CARD).available_credit_balance == 0
    assert led.create_transfers([t], NOW) == [R.EXISTS], "a retry asking as much is the same request"
    assert led.create_transfers([Transfer(20, CARD, SETTLE, 7_000, C.CNY, C.PURCHASE_POST, F.BALANCING_DEBIT)],
                                NOW) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert led.create_transfers([Transfer(21, CARD, SETTLE, 1, C.CNY, C.PURCHASE_POST, F.BALANCING_DEBIT)],
                                NOW) == [R.EXCEEDS_CREDITS]
    led.check_invariants()


def test_balancing_with_amount_zero_takes_everything(led):
    assert led.create_transfers([Transfer(20, CARD, SETTLE, 0, C.CNY, 1, F.BALANCING_DEBIT)], NOW) == [R.OK]
    assert led.transfer(20).amount == 10_000


def test_balancing_credit_fills_up_to_the_debits(led):
    led.create_transfers([Transfer(20, SETTLE, FUND, 300, C.CNY, 1)], NOW)  # FUND: debits 10000, credits 300
    assert led.create_transfers([Transfer(21, SETTLE, FUND, 0, C.CNY, 1, F.BALANCING_CREDIT)], NOW) == [R.OK]
    assert led.transfer(21).amount == 9_700
    assert led.create_transfers([Transfer(22, SETTLE, FUND, 0, C.CNY, 1, F.BALANCING_CREDIT)], NOW) == [
        R.EXCEEDS_DEBITS
    ]


def test_pending_balancing_hold(led):
    assert led.create_transfers([hold(10, 20_000, flags=F.BALANCING_DEBIT)], NOW) == [R.OK]
    assert led.transfer(10).amount == 10_000
    assert led.create_transfers([post(11, 10, 4_000)], NOW) == [R.OK]
    assert bal(led, CARD) == (0, 4_000, 0, 10_000)


# ------------------------------------------------------------------- closing


def test_closing_hold_closes_and_void_or_expiry_reopens(led):
    close = Transfer(10, CARD, SETTLE, 0, C.CNY, 1, F.PENDING | F.CLOSING_DEBIT, timeout_s=10)
    assert led.create_transfers([close], NOW) == [R.OK]
    assert led.account(CARD).flags & AccountFlags.CLOSED
    assert led.create_transfers([hold(11, 1)], NOW) == [R.DEBIT_ACCOUNT_ALREADY_CLOSED]
    assert led.expire_pending(NOW + 10_000) == [10]
    assert not led.account(CARD).flags & AccountFlags.CLOSED
    assert led.create_transfers([hold(11, 1)], NOW + 10_000) == [R.OK]
    # A hold made before the close can be voided, not posted, while closed; the close itself posts.
    led.create_transfers([Transfer(12, CARD, SETTLE, 0, C.CNY, 1, F.PENDING | F.CLOSING_DEBIT)], NOW + 10_000)
    assert led.create_transfers([post(13, 11)], NOW + 10_000) == [R.DEBIT_ACCOUNT_ALREADY_CLOSED]
    assert led.create_transfers([void(13, 11)], NOW + 10_000) == [R.OK]
    assert led.create_transfers([post(14, 12)], NOW + 10_000) == [R.OK]
    assert led.account(CARD).flags & AccountFlags.CLOSED, "a posted close stays closed"
    led.check_invariants()


# ----------------------------------------------------------- clock and errors


def test_timestamps_never_go_backwards(led):
    led.create_transfers([hold(10, 1)], NOW + 5_000)
    assert led.create_transfers([hold(11, 1)], NOW + 1_000) == [R.OK]
    assert led.transfer(11).timestamp_ms == NOW + 5_000
    led.check_invariants()


def test_programmer_errors_raise_before_anything_is_applied(led):
    with pytest.raises(ValueError, match="amount"):
        led.create_transfers([hold(10, 1), Transfer(11, CARD, SETTLE, -5, C.CNY, 1)], NOW)
    assert led.transfer(10) is None
    with pytest.raises(ValueError, match="id"):
        led.create_transfers([Transfer(1 << 128, CARD, SETTLE, 5, C.CNY, 1)], NOW)
    with pytest.raises(TypeError):
        led.create_transfers([Transfer("12", CARD, SETTLE, 5, C.CNY, 1)], NOW)
    with pytest.raises(TypeError):
        led.create_transfers([Account(9, C.CNY, 1)], NOW)
    with pytest.raises(ValueError, match="timeout"):
        led.create_transfers([hold(12, 1, timeout_s=1 << 32)], NOW)
    with pytest.raises(ValueError, match="ledger"):
        led.create_accounts([Account(9, -1, 1)], NOW)
    assert not led.take_changes()


# --------------------------------------------------------------- the queries


def test_history_and_lifecycle_index(led):
    led.create_transfers([hold(10, 100, user_data=555), Transfer(11, SETTLE, FUND, 5, C.CNY, 1)], NOW)
    led.create_transfers([post(12, 10)], NOW)
    assert [t.id for t in led.transfers_by_user_data(555)] == [10, 12]
    assert led.transfers_by_user_data(0) == []
    assert led.transfers_by_user_data(1234) == []
    assert [t.id for t in led.account_history(CARD)] == [1, 10, 12]
    assert [t.id for t in led.account_history(SETTLE)] == [10, 11, 12]
    assert led.account_history(999) == []
    assert led.account(999) is None and led.transfer(999) is None and led.pending_status(999) is None
    assert led.pending_status(11) is None, "a single-phase transfer has no pending status"
    assert led.totals(C.CNY) == (0, 10_105, 0, 10_105)


# ---------------------------------------------------------------- change sets


def test_change_sets():
    led = Ledger()
    empty = led.take_changes()
    assert not empty and empty.empty and len(empty) == 0
    led.create_accounts([Account(1, C.CNY, 1), Account(2, C.CNY, 1)], NOW)
    led.create_transfers([Transfer(5, 1, 2, 7, C.CNY, 1)], NOW)
    ch = led.take_changes()
    assert ch and not ch.empty
    assert ch.accounts == [(1, 1, C.CNY, 1, 0, 0, NOW), (2, 2, C.CNY, 1, 0, 0, NOW)]
    assert [t.id for t in ch.transfers] == [5] and ch.first_transfer_seq == 1
    assert not led.take_changes()
    led.create_transfers([Transfer(6, 1, 2, 3, C.CNY, 1, F.PENDING, timeout_s=1)], NOW)
    led.expire_pending(NOW + 1_000)
    ch = led.take_changes()
    assert ch.first_transfer_seq == 2
    assert [t.id for t in ch.transfers] == [6]
    assert ch.expiries == [(6, NOW + 1_000)]
    assert len(ch) == 2
    # An account is written with the flags it was created with, even if a closing hold closed it at once.
    led.create_accounts([Account(3, C.CNY, 1)], NOW)
    led.create_transfers([Transfer(7, 3, 1, 0, C.CNY, 1, F.PENDING | F.CLOSING_DEBIT)], NOW)
    ch = led.take_changes()
    assert ch.accounts == [(3, 3, C.CNY, 1, 0, 0, NOW + 1_000)]
    assert led.account(3).flags == AccountFlags.CLOSED


# ---------------------------------------------------------------- invariants


def test_check_invariants_finds_a_balance_that_is_not_the_sum_of_its_transfers(led):
    led.check_invariants()
    led._accounts[CARD].cpo += 1
    with pytest.raises(AssertionError, match="sum of its transfers"):
        led.check_invariants()


def test_check_invariants_finds_running_totals_gone_astray():
    led = Ledger()
    led.create_accounts([Account(1, C.CNY, 1), Account(2, C.CNY, 1)], NOW)
    led.create_transfers([Transfer(5, 1, 2, 7, C.CNY, 1)], NOW)
    led.check_invariants()
    led._totals[C.CNY][1] += 1
    with pytest.raises(AssertionError, match="running totals"):
        led.check_invariants()


def test_check_invariants_finds_a_double_resolution(led):
    led.create_transfers([hold(10, 100)], NOW)
    led.create_transfers([post(11, 10, 50)], NOW)
    led._transfers[12] = Transfer(12, CARD, SETTLE, 0, C.CNY, C.PURCHASE_HOLD, F.VOID_PENDING, pending_id=10,
                                  timestamp_ms=NOW)
    led._accounts[CARD].hist.append(led._transfers[12])
    led._accounts[SETTLE].hist.append(led._transfers[12])
    with pytest.raises(AssertionError, match="resolved twice"):
        led.check_invariants()


def test_the_commit_check_catches_a_one_sided_change(led, monkeypatch):
    """A bug that moved only one side would be caught at the end of the call."""
    from posnet.ledger import core

    real = core._mk_transfer

    def lopsided(*args):
        t = real(*args)
        led._accounts[SETTLE].cpo += 1  # an extra credit from nowhere
        return t

    monkeypatch.setattr(core, "_mk_transfer", lopsided)
    with pytest.raises(AssertionError, match="ledger 156"):
        led.create_transfers([Transfer(20, CARD, SETTLE, 5, C.CNY, 1)], NOW)


def test_the_commit_check_catches_a_broken_limit(monkeypatch):
    """A decision that let an overdraft through would be caught at the end of the call."""
    from posnet.ledger import core

    led = Ledger()
    led.create_accounts([Account(1, C.CNY, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS), Account(2, C.CNY, 1)],
                        NOW)
    monkeypatch.setattr(core.Ledger, "_create_transfer", _overdrafting_create)
    with pytest.raises(AssertionError, match="debits exceed credits"):
        led.create_transfers([Transfer(20, 1, 2, 5, C.CNY, 1)], NOW)


def _overdrafting_create(self, t, now):
    dr = self._accounts[t.debit_account_id]
    cr = self._accounts[t.credit_account_id]
    self._touch(dr)
    self._touch(cr)
    dr.dpo += t.amount
    cr.cpo += t.amount
    return R.OK


# ------------------------------------------------------------- a purchase story


def test_the_issuers_purchase_story():
    """Opening balance, a purchase hold, clearing for less, a refund, an expired hold (docs/ledger.md)."""
    led = Ledger()
    CARDHOLDER, SCHEME, FUNDING = 1001, 1, 2
    led.create_accounts(
        [
            Account(SCHEME, C.CNY, C.ISSUER_SCHEME_SETTLEMENT),
            Account(FUNDING, C.CNY, C.ISSUER_FUNDING),
            Account(CARDHOLDER, C.CNY, C.ISSUER_CARDHOLDER, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        ],
        NOW,
    )
    lifecycle = 0xABC
    assert led.create_transfers([Transfer(1, FUNDING, CARDHOLDER, 50_000, C.CNY, C.OPENING_BALANCE)], NOW) == [R.OK]
    purchase = Transfer(2, CARDHOLDER, SCHEME, 12_000, C.CNY, C.PURCHASE_HOLD, F.PENDING, user_data=lifecycle,
                        timeout_s=7 * 86_400)
    assert led.create_transfers([purchase], NOW) == [R.OK]
    assert led.create_transfers([purchase], NOW + 5) == [R.EXISTS], "a repeated authorization holds once"
    assert led.account(CARDHOLDER).available_credit_balance == 38_000
    clearing = Transfer(3, 0, 0, 11_500, 0, 0, F.POST_PENDING, pending_id=2)
    assert led.create_transfers([clearing], NOW + 86_400_000) == [R.OK]
    refund = Transfer(4, SCHEME, CARDHOLDER, 2_000, C.CNY, C.REFUND_CREDIT, user_data=lifecycle)
    assert led.create_transfers([refund], NOW + 2 * 86_400_000) == [R.OK]
    assert led.account(CARDHOLDER).available_credit_balance == 50_000 - 11_500 + 2_000
    unmatched = Transfer(5, CARDHOLDER, SCHEME, 3_000, C.CNY, C.PURCHASE_HOLD, F.PENDING, timeout_s=7 * 86_400)
    led.create_transfers([unmatched], NOW + 2 * 86_400_000)
    assert led.expire_pending(NOW + 9 * 86_400_000) == [5]
    assert led.account(CARDHOLDER).available_credit_balance == 40_500
    assert [t.code for t in led.transfers_by_user_data(lifecycle)] == [C.PURCHASE_HOLD, C.PURCHASE_HOLD,
                                                                       C.REFUND_CREDIT]
    assert led.totals(C.CNY) == (0, 63_500, 0, 63_500)
    led.check_invariants()


def test_the_next_expiry_is_found_after_thousands_of_holds_were_posted_at_once(led):
    """Past a few thousand resolved holds at the top of the expiry queue, the queue is swept whole."""
    holds = [hold(100 + i, 1, timeout_s=60 + i % 7, dr=FUND) for i in range(10_000)]
    later = [hold(50_000 + i, 1, timeout_s=3_600 + i, dr=FUND) for i in range(3)]
    assert set(led.create_transfers(holds + later, NOW)) == {R.OK}
    posts = [Transfer(20_000 + i, 0, 0, 0, 0, 0, F.POST_PENDING, pending_id=h.id) for i, h in enumerate(holds)]
    assert set(led.create_transfers(posts, NOW)) == {R.OK}
    assert led.next_expiry_ms() == NOW + 3_600_000
    assert led.expire_pending(NOW + 3_601_000) == [50_000, 50_001]
    assert led.next_expiry_ms() == NOW + 3_602_000
