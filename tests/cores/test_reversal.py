"""No receipt, no charge: a lost message on a hop ends with the cardholder's money back."""

POS = "pos-10000001"
PIN = "123456"
START = 1_000_000


def balance(world):
    return world.parties["issuer-bank-a"].core.balance_of_card("6222020000000001")


def signed_on(world):
    assert world.command(POS, "sign-on").done.ok


def test_lost_reply_to_the_terminal_the_next_inquiry_reverses_first_and_the_hold_is_released(world, card):
    signed_on(world)
    world.cut.add(("acquirer", f"conn:{POS}"))  # the approval never reaches the terminal
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=8800)
    assert sale.done is None and balance(world) == START - 8800  # the issuer holds the money
    world.advance(30_000)
    out = world.outputs[POS]
    assert out.done.response_code == "98" and out.slips == [], "no receipt"
    terminal = world.parties[POS].core
    assert terminal.reversal is not None and terminal.reversal["fields"]["39"] == "98"
    assert "reversal" in world.tables(POS), "the reversal record is in the terminal's store"

    world.cut.clear()
    inquiry = world.command(POS, "inquiry", card=card, pin=PIN)
    assert "自动冲正成功 AUTO REVERSAL DONE" in inquiry.displays
    assert inquiry.done.ok
    assert terminal.reversal is None and "pending" not in world.tables(POS).get("reversal", {})
    assert balance(world) == START, "the reversal released the hold"
    assert inquiry.done.result["balance_fen"] == START


def test_lost_request_to_the_acquirer_leaves_nothing_held_and_the_reversal_is_acknowledged(world, card):
    signed_on(world)
    world.cut.add((POS, "acquirer"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=500)
    world.advance(30_000)
    assert world.outputs[POS].done.response_code == "98"
    world.cut.clear()
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=700)
    assert sale.displays[:2] == ["冲正中 REVERSING", "自动冲正成功 AUTO REVERSAL DONE"]
    assert sale.done.ok
    assert balance(world) == START - 700


def test_issuer_reply_lost_switch_answers_98_and_reverses_the_hold_by_store_and_forward(world, card):
    signed_on(world)
    world.cut.add(("issuer-bank-a", "switch"))  # the issuer approves, its reply is lost
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=1234)
    assert balance(world) == START - 1234
    world.advance(10_000)  # the switch's issuer timeout
    assert world.outputs[POS].done.response_code == "98"
    assert balance(world) == START, "the switch's reversal released the hold"
    # The issuer's acknowledgements are lost too: the switch repeats, the issuer releases nothing more.
    switch = world.parties["switch"].core
    assert len(switch.saf["bank-a"].items) == 1
    world.advance(60_000)
    assert balance(world) == START
    world.cut.clear()
    world.advance(120_000)
    assert switch.saf["bank-a"].items == {}, "acknowledged at last, the queue is empty"
    assert world.tables("switch").get("saf_bank-a", {}) == {}


def test_a_reversal_that_never_gets_through_prints_a_fault_slip_and_keeps_the_record(world, card):
    signed_on(world)
    world.cut.add((POS, "acquirer"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=500)
    world.advance(30_000)
    world.command(POS, "inquiry", card=card, pin=PIN)
    for _ in range(3):
        world.advance(30_000)
    out = world.outputs[POS]
    assert "冲正不成功,请联系服务商 REVERSAL FAILED, CONTACT SERVICE PROVIDER" in out.displays
    slip_texts = [s.text() for s in out.slips]
    assert any("冲正不成功,请人工处理" in t and "NOT A RECEIPT" in t for t in slip_texts)
    terminal = world.parties[POS].core
    assert terminal.reversal is not None and terminal.reversal["attempts"] == 3


def test_reverse_at_once_sends_the_reversal_right_after_the_timeout(world, card):
    import dataclasses

    terminal = world.parties[POS].core
    terminal.config = dataclasses.replace(terminal.config, reverse_at_once=True)
    signed_on(world)
    world.cut.add(("acquirer", f"conn:{POS}"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=8800)
    assert balance(world) == START - 8800
    world.cut.clear()
    world.advance(30_000)
    out = world.outputs[POS]
    assert "冲正成功 REVERSAL DONE" in out.displays
    assert out.done.ok is False and out.done.response_code == "98" and out.done.result["reversal"] == "done"
    assert terminal.reversal is None
    assert balance(world) == START


def test_a_late_approval_after_the_acquirers_timeout_is_reversed(world, card):
    signed_on(world)
    world.hold.add(("switch", "acquirer:48020000"))  # the switch's answer is slow
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    assert balance(world) == START - 3000
    world.advance(20_000)  # the acquirer gives up first: 98 to the terminal, a reversal owed upstream
    assert world.outputs[POS].done.response_code == "98"
    world.hold.clear()
    world.release_held()  # the approval arrives late; the reversal also goes out
    world.advance(60_000)
    assert balance(world) == START, "the late approval was reversed"
    assert world.parties["acquirer"].core.saf.items == {}


def test_a_sale_overtaken_by_its_own_reversal_holds_nothing(world, card):
    signed_on(world)
    world.hold.add(("switch", "issuer:bank-a"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    world.advance(10_000)  # the switch times out and sends its reversal on the same slow link
    assert len(world._held) == 2
    world._held.reverse()  # the reversal arrives first, then the sale
    world.hold.clear()
    world.release_held()
    world.advance(60_000)
    assert balance(world) == START
    issuer = world.parties["issuer-bank-a"].core
    assert sum(a.debits_pending for a in issuer.ledger.accounts()) == 0


def test_a_failed_reversal_is_sent_by_hand_later_and_the_hold_released(world, card):
    signed_on(world)
    world.cut.add(("acquirer", f"conn:{POS}"))  # approvals and reversal acknowledgements are lost
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=500)
    world.advance(30_000)
    world.command(POS, "send-reversal")
    for _ in range(3):
        world.advance(30_000)
    terminal = world.parties[POS].core
    assert terminal.reversal["failed"] and any("冲正不成功,请人工处理" in s.text() for s in world.outputs[POS].slips)
    world.cut.clear()
    out = world.command(POS, "send-reversal")
    assert out.done.ok and terminal.reversal is None
    assert balance(world) == START


def test_a_refund_whose_answer_is_lost_upstream_is_taken_back(world, card):
    signed_on(world)
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=5000)
    world.cut.add(("issuer-bank-a", "switch"))  # the issuer credits the refund; its answer is lost
    world.command(POS, "refund", card=card, reference_no=sale.done.result["reference_no"], date_mmdd="1124", amount_fen=2000)
    assert balance(world) == START - 5000 + 2000
    world.advance(10_000)
    assert world.outputs[POS].done.response_code == "98", "no refund slip"
    assert balance(world) == START - 5000, "the switch's reversal took the credit back"
