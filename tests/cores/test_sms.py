"""SMS to the cardholder: one message per money event, worded like a bank's, written with the movement."""

from dataclasses import replace

import pytest

from posnet.effects import Command, Delete, Put, SetTimer, TimerFired
from posnet.issuer.core import HOLD_EXPIRY_TIMER
from posnet.issuer import sms
from posnet.terminal.core import Card

POS = "pos-10000001"
PIN = "123456"
ISSUER = "issuer-bank-a"
MERCHANT = "posnet 测试商户"


def outbox(world, party=ISSUER):
    """The issuer's SMS as committed, in the outbox's order (nobody delivers them in this world), each
    with its number and its words as the notifier puts them together."""
    bank = sms.bank_of(world.parties[party].core.config)
    pages = world.tables(party).get(sms.OUTBOX, {})
    return [{**row, "number": n, "text": sms.text(bank, row)} for n, row in sms.numbered(pages)]


def events(world):
    return [r["event"] for r in outbox(world)]


@pytest.fixture
def signed_on(world):
    assert world.command(POS, "sign-on").done.ok
    return world


def test_a_sale_tells_the_cardholder_card_tail_amount_merchant_time_and_balance(signed_on, card):
    world = signed_on
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=1234)
    assert sale.done.ok
    (msg,) = outbox(world)
    assert msg["text"] == f"【甲银行】您尾号0001的卡于11月24日10:00在{MERCHANT}消费人民币12.34元，可用余额9987.66元。"
    assert card.pan not in msg["text"] and "622202" not in msg["text"], "the card shows only as 尾号 + last four"
    assert msg["phone"] == "13800000001" and msg["card"] == "622202******0001"
    (auth,) = [a for a in world.parties[ISSUER].core.auths.values() if a["kind"] == "sale"]
    assert msg["id"] == str(auth["hold_id"]), "the SMS is the hold's: its id is the hold's transfer id"
    (page,) = world.tables(ISSUER)[sms.OUTBOX].values()
    assert "text" not in page["fields"], "the outbox keeps the facts; the words are put together at delivery"


def test_the_sms_is_committed_with_the_money_it_tells_of(world):
    """The outbox row is in the very effects list that carries the hold's LedgerWrite."""
    from posnet.effects import LedgerWrite

    issuer = world.parties[ISSUER].core
    seen = []
    handle = issuer.handle

    def spy(event, now_ms):
        effects = handle(event, now_ms)
        seen.append(effects)
        return effects

    issuer.handle = spy
    world.command(POS, "sign-on")
    world.command(POS, "sale", card=Card("6222020000000001", "3012"), pin=PIN, amount_fen=500)
    (with_sms,) = [e for e in seen if any(isinstance(x, Put) and x.table == sms.OUTBOX for x in e)]
    assert any(isinstance(x, LedgerWrite) for x in with_sms)


def test_void_refund_and_their_wording(signed_on, card):
    world = signed_on
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=8800)
    world.command(POS, "void", voucher_no=int(sale.done.result["voucher_no"]))
    sale2 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=6666)
    ref = sale2.done.result["reference_no"]
    assert world.command(POS, "refund", card=card, pin=None, reference_no=ref, date_mmdd="1124", amount_fen=2000).done.ok
    texts = [r["text"] for r in outbox(world)]
    assert events(world) == ["hold", "void", "hold", "refund"]
    assert texts[1] == f"【甲银行】您尾号0001的卡于11月24日10:00在{MERCHANT}消费撤销，退回人民币88.00元，可用余额10000.00元。"
    assert texts[3] == f"【甲银行】您尾号0001的卡于11月24日10:00在{MERCHANT}退货收入人民币20.00元，可用余额9953.34元。"


def test_a_retransmitted_request_moves_money_once_and_sends_one_sms(signed_on, card):
    world = signed_on

    def twice_to_the_issuer(party, to, frame):
        return [(0, frame), (0, frame)] if (party, to) == ("switch", "issuer:bank-a") else [(0, frame)]

    world.link_fault = twice_to_the_issuer
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    world.command(POS, "void", voucher_no=int(sale.done.result["voucher_no"]))
    world.advance(60_000)
    assert events(world) == ["hold", "void"]


def test_a_reversal_repeated_until_acknowledged_releases_once_and_tells_once(signed_on, card):
    world = signed_on
    world.cut.add((ISSUER, "switch"))  # the approval and every acknowledgement are lost
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=1234)
    world.advance(10_000)  # the switch times out and reverses, and repeats while no answer comes
    world.advance(120_000)
    world.cut.clear()
    world.advance(120_000)
    assert world.parties["switch"].core.saf["bank-a"].items == {}
    assert events(world) == ["hold", "reversal"]
    assert outbox(world)[1]["text"] == f"【甲银行】您尾号0001的卡于11月24日10:00在{MERCHANT}消费冲正，退回人民币12.34元，可用余额10000.00元。"


@pytest.mark.parametrize(
    ("function", "told", "last_text"),
    [
        ("void", ["hold", "void", "void-reversal"], "消费撤销被冲正，原消费人民币50.00元恢复扣款，可用余额9950.00元。"),
        ("refund", ["hold", "refund", "refund-reversal"], "退货冲正，支出人民币20.00元，可用余额9950.00元。"),
    ],
)
def test_a_void_or_refund_whose_answer_is_lost_is_reversed_and_the_cardholder_told(signed_on, card, function, told, last_text):
    world = signed_on
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=5000)
    world.cut.add((ISSUER, "switch"))  # done at the issuer; its answer is lost, so the switch reverses it
    if function == "void":
        args = {"voucher_no": int(sale.done.result["voucher_no"])}
    else:
        args = {"card": card, "reference_no": sale.done.result["reference_no"], "date_mmdd": "1124", "amount_fen": 2000}
    world.command(POS, function, **args)
    world.advance(10_000)
    world.cut.clear()
    world.advance(120_000)
    assert events(world) == told
    assert outbox(world)[2]["text"].endswith(last_text)


def test_a_hold_nobody_claims_is_released_at_expiry_with_its_sms(signed_on, card):
    world = signed_on
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=1234).done.ok
    world.advance(48 * 3600_000)
    assert events(world) == ["hold", "expiry"]
    hold, expiry = outbox(world)
    assert expiry["text"] == (
        f"【甲银行】您尾号0001的卡11月24日10:00在{MERCHANT}消费冻结的人民币12.34元，因商户未请款已于11月26日10:00解冻，可用余额10000.00元。"
    )
    assert expiry["id"] == str(sms.expiry_event_id(int(hold["id"])))
    world.advance(48 * 3600_000)
    assert events(world) == ["hold", "expiry"], "an expiry is told once"


def test_a_card_without_a_phone_gets_no_sms(signed_on):
    world = signed_on
    assert world.command(POS, "sale", card=Card("6217000000000001", "2912"), pin="888888", amount_fen=100).done.ok
    assert outbox(world, "issuer-bank-b") == []


def test_a_decline_moves_no_money_and_sends_nothing(signed_on, card):
    world = signed_on
    assert world.command(POS, "sale", card=card, pin="000000", amount_fen=100).done.response_code == "55"
    assert outbox(world) == []


def test_a_page_leaves_the_outbox_once_every_channel_is_through_it(signed_on, card):
    world = signed_on
    issuer = world.parties[ISSUER].core
    issuer.config = replace(issuer.config, sms_channels=(sms.INBOX, sms.WEBHOOK))
    for amount in (100, 200):
        world.command(POS, "sale", card=card, pin=PIN, amount_fen=amount)
    assert [r["number"] for r in outbox(world)] == [1, 2]
    inbox_done = issuer.handle(Command(sms.DELIVERED, {"channel": sms.INBOX, "through": 2}), world.now_ms)
    assert inbox_done == [Put(sms.THROUGH, "through", {sms.INBOX: 2})], "marked: the pages wait for the webhook"
    webhook_done = issuer.handle(Command(sms.DELIVERED, {"channel": sms.WEBHOOK, "through": 1}), world.now_ms)
    assert webhook_done == [Put(sms.THROUGH, "through", {sms.INBOX: 2, sms.WEBHOOK: 1}), Delete(sms.OUTBOX, "000000000001")]
    again = issuer.handle(Command(sms.DELIVERED, {"channel": sms.WEBHOOK, "through": 1}), world.now_ms)
    assert again == [], "a mark that does not move on changes nothing"
    assert issuer.handle(Command(sms.DELIVERED, {"channel": "carrier-pigeon", "through": 9}), world.now_ms) == []
    assert [n for n, _ in sms.numbered(issuer.sms_outbox)] == [2]


def test_a_restarted_issuer_keeps_its_undelivered_sms_and_sends_none_twice(signed_on, card):
    world = signed_on
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=700)
    before = outbox(world)
    world.crash(ISSUER)
    world.restart(ISSUER)
    assert outbox(world) == before
    assert sms.numbered(world.parties[ISSUER].core.sms_outbox) == [(r["number"], {k: v for k, v in r.items() if k not in ("number", "text")}) for r in before]
    world.command(POS, "inquiry", card=card, pin=PIN)
    assert outbox(world) == before, "an inquiry moves no money"


def test_the_outbox_keeps_the_order_the_sms_were_written_in_across_a_restart(signed_on, card):
    world = signed_on
    for amount in (100, 200):
        assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=amount).done.ok
    world.crash(ISSUER)
    world.restart(ISSUER)
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=300).done.ok
    rows = outbox(world)
    assert [r["amount_fen"] for r in rows] == [100, 200, 300], "oldest first: the order of their numbers"
    assert [r["number"] for r in rows] == [1, 2, 3], "the numbers go on after the restart"
    assert sorted(world.tables(ISSUER)[sms.OUTBOX]) == ["000000000001", "000000000002", "000000000003"], "a page per input"


def test_numbers_go_on_after_every_page_was_delivered_and_removed(signed_on, card):
    world = signed_on
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=100).done.ok
    world.submit(ISSUER, Command(sms.DELIVERED, {"channel": sms.INBOX, "through": 1}))
    world.run()
    assert world.tables(ISSUER).get(sms.OUTBOX, {}) == {}, "delivered everywhere: gone"
    world.crash(ISSUER)
    world.restart(ISSUER)
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=200).done.ok
    assert [r["number"] for r in outbox(world)] == [2], "not 1 again: the inbox has 1 already"


def test_pages_every_channel_is_through_are_removed_at_start_and_rows_of_the_first_form_become_pages():
    one = sms.page([("11", "hold", "13800000001", "622202******0001", "m", 0, 100, 900, "1", None)])
    two = sms.page([("12", "void", "13800000001", "622202******0001", "m", 0, 100, 1000, "1", None)] * 2)
    legacy = {"id": "99", "event": "hold", "phone": "13800000001", "card": "622202******0001", "text": "【甲银行】您尾号0001的卡…",
              "at_ms": 5, "rrn": "1", "amount_fen": 100, "balance_fen": 900, "delivered": []}
    records = {"000000000001": one, "000000000002": two, "99": legacy}
    pages, newest, effects = sms.restore(records, {sms.INBOX: 2}, (sms.INBOX,))
    assert sorted(pages) == ["000000000002", "000000000004"] and newest == 4
    assert Delete(sms.OUTBOX, "000000000001") in effects and Delete(sms.OUTBOX, "99") in effects
    ((number, row),) = sms.page_rows("000000000004", pages["000000000004"])
    assert number == 4 and row["id"] == "99" and sms.text("甲银行", row) == legacy["text"], "its words as they were written"


def test_posted_is_told_only_when_the_bank_says_so(world):
    issuer = world.parties[ISSUER].core
    card = issuer.config.cards["6222020000000001"]
    auth = {"pan": card.pan, "rrn": "000000000001", "merchant": MERCHANT, "at_ms": world.now_ms}
    later = world.now_ms + 15 * 3600_000
    assert sms.posted(issuer.config, auth, card, 1234, 42, later, 998766) is None
    row = sms.as_row(sms.posted(replace(issuer.config, sms_on_post=True), auth, card, 1234, 42, later, 998766))
    assert row["id"] == "42"
    assert sms.text("甲银行", row) == f"【甲银行】您尾号0001的卡11月24日10:00在{MERCHANT}消费人民币12.34元已于11月25日01:00入账，可用余额9987.66元。"


@pytest.mark.parametrize(
    ("fen", "shown"), [(0, "0.00"), (5, "0.05"), (1234, "12.34"), (100_000_000, "1000000.00"), (-2000, "-20.00")]
)
def test_amounts_are_yuan_with_two_decimals(fen, shown):
    assert sms.yuan(fen) == shown


def test_the_display_name_signs_the_sms_and_a_merchant_without_a_name_is_named_by_its_id(world):
    issuer = world.parties[ISSUER].core
    config = replace(issuer.config, display_name="posnet银行")
    card = issuer.config.cards["6222020000000001"]
    row = sms.as_row(sms.notice(config, "hold", {"pan": card.pan, "merchant_id": "898310148160001"}, card, 100, 7, world.now_ms, 0))
    assert sms.text(sms.bank_of(config), row).startswith("【posnet银行】您尾号0001的卡于11月24日10:00在商户898310148160001消费人民币1.00元")


def test_every_event_has_its_wording_and_no_release_reads_like_a_charge():
    assert set(sms.EVENTS) == {"hold", "void", "reversal", "expiry", "refund", "void-reversal", "refund-reversal", "posted"}
    for event in ("void", "reversal", "expiry", "refund"):
        assert "消费人民币" not in sms.WORDING[event], event


def test_the_simulators_rule_finds_a_money_event_without_its_sms_and_an_sms_without_an_event(signed_on, card):
    from posnet.sim import sms_rule

    world = signed_on
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=300)
    world.command(POS, "void", voucher_no=int(sale.done.result["voucher_no"]))
    issuer = world.parties[ISSUER].core
    rows = dict(sms.numbered(world.tables(ISSUER)[sms.OUTBOX]))
    assert sms_rule.check(issuer, rows) == []
    hold_number, hold = next((n, r) for n, r in rows.items() if r["event"] == "hold")
    missing = {n: r for n, r in rows.items() if n != hold_number}
    assert sms_rule.check(issuer, missing) == [f"bank-a: money event {hold['id']} of 622202******0001 has no SMS"]
    extra = {**rows, 99: {**hold, "id": "99"}}
    assert sms_rule.check(issuer, extra) == ["bank-a: SMS 99 (hold, 622202******0001) tells of no money event"]
    twice = {**rows, 99: hold}
    assert sms_rule.check(issuer, twice) == [f"bank-a: money event {hold['id']} of 622202******0001 told twice (SMS number 99)"]


def test_a_big_sweep_goes_in_slices_each_hold_released_and_told_once(signed_on, card):
    world = signed_on
    issuer = world.parties[ISSUER].core
    issuer.config = replace(issuer.config, expiry_slice=2)
    start = issuer.balance_of_card(card.pan)
    for amount in (100, 200, 300, 400, 500):
        assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=amount).done.ok
    due_ms = world.now_ms + 49 * 3600_000
    slices = []
    for _ in range(3):  # the issuer's own timer, as the driver fires it
        effects = issuer.handle(TimerFired(HOLD_EXPIRY_TIMER), due_ms)
        slices.append(sum(len(e.value["sms"]) for e in effects if isinstance(e, Put) and e.table == sms.OUTBOX))
        again = [e for e in effects if isinstance(e, SetTimer) and e.key == HOLD_EXPIRY_TIMER]
        assert bool(again and again[0].at_ms <= due_ms) == (len(slices) < 3), "re-armed at once while holds are due"
    assert slices == [2, 2, 1], "each input releases at most expiry_slice holds, each told once"
    assert issuer.balance_of_card(card.pan) == start, "every hold released"
    assert all(a["status"] == "expired" for a in issuer.auths.values() if a["kind"] == "sale")
    assert issuer.handle(TimerFired(HOLD_EXPIRY_TIMER), due_ms) == [], "nothing left to release"
