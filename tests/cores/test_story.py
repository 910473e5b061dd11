"""The whole story through the four cores in one process: no sockets, a clock the test moves.

This is the proof that the cores are free of I/O: the same cores the TCP
runtime runs, wired by an in-memory world.
"""

from posnet.terminal.receipt import CARDHOLDER_COPY, MERCHANT_COPY

POS = "pos-10000001"
PIN = "123456"


def balance(world, pan="6222020000000001"):
    return world.parties["issuer-bank-a"].core.balance_of_card(pan)


def test_sign_on_inquiry_sale_void_sale_refund_moves_the_balance_to_match(world, card):
    signed = world.command(POS, "sign-on")
    assert signed.done.ok and signed.done.result["batch_no"] == "000001"

    inquiry = world.command(POS, "inquiry", card=card, pin=PIN)
    assert inquiry.done.ok
    assert inquiry.done.result["balance_fen"] == 1_000_000 == balance(world)

    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=8800)
    assert sale.done.ok, sale.displays
    assert balance(world) == 1_000_000 - 8800
    receipts = sale.slips
    assert [r.copy for r in receipts] == [MERCHANT_COPY, CARDHOLDER_COPY]
    merchant = receipts[0]
    assert merchant.voucher_no == sale.done.result["voucher_no"]
    assert merchant.reference_no == sale.done.result["reference_no"] != ""
    assert len(merchant.auth_code) == 6
    assert merchant.batch_no == "000001"
    text = merchant.text()
    assert "622202******0001 /S" in text and "6222020000000001" not in text
    assert "RMB 88.00" in text and "持卡人签名" in text
    assert "持卡人签名" not in receipts[1].text()

    void = world.command(POS, "void", voucher_no=int(sale.done.result["voucher_no"]))
    assert void.done.ok, void.displays
    assert balance(world) == 1_000_000, "a void releases the hold"
    assert f"原凭证号(ORIG. VOUCHER): {sale.done.result['voucher_no']}" in void.slips[0].text()

    sale2 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=6666)
    assert sale2.done.ok
    ref = sale2.done.result["reference_no"]
    refund = world.command(POS, "refund", card=card, reference_no=ref, date_mmdd="1124", amount_fen=2000)
    assert refund.done.ok, refund.displays
    assert balance(world) == 1_000_000 - 6666 + 2000

    after = world.command(POS, "inquiry", card=card, pin=PIN)
    assert after.done.result["balance_fen"] == balance(world)


def test_the_issuer_books_balance_after_the_story(world, card):
    world.command(POS, "sign-on")
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=500)
    issuer = world.parties["issuer-bank-a"].core
    issuer.ledger.check_invariants()
    assert world.parties["issuer-bank-a"].ledger_writes > 0


def test_partial_refunds_stop_at_the_original_amount(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=1000)
    ref = sale.done.result["reference_no"]
    first = world.command(POS, "refund", card=card, reference_no=ref, date_mmdd="1124", amount_fen=600)
    second = world.command(POS, "refund", card=card, reference_no=ref, date_mmdd="1124", amount_fen=400)
    third = world.command(POS, "refund", card=card, reference_no=ref, date_mmdd="1124", amount_fen=1)
    assert first.done.ok and second.done.ok
    assert third.done.response_code == "61"
    assert balance(world) == 1_000_000


def test_refund_of_an_unknown_reference_is_25(world, card):
    world.command(POS, "sign-on")
    out = world.command(POS, "refund", card=card, reference_no="999999999999", date_mmdd="1124", amount_fen=100)
    assert out.done.response_code == "25"


def test_void_of_a_voided_sale_is_refused_at_the_terminal_and_moves_nothing(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=1000)
    voucher = int(sale.done.result["voucher_no"])
    assert world.command(POS, "void", voucher_no=voucher).done.ok
    again = world.command(POS, "void", voucher_no=voucher)
    assert not again.done.ok
    assert balance(world) == 1_000_000


def test_a_retransmitted_sale_gets_the_first_answer_and_is_charged_once(world, card):
    from posnet.effects import Received, Send
    from posnet.wire import decode_terminal

    world.command(POS, "sign-on")
    sent = []
    world.cut.add(("acquirer", f"conn:{POS}"))  # keep the first answer from the terminal
    original_apply = world._apply

    def spy(party, effects):
        if party == POS:
            sent.extend(e.frame for e in effects if isinstance(e, Send))
        original_apply(party, effects)

    world._apply = spy
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=4321)
    world._apply = original_apply
    assert balance(world) == 1_000_000 - 4321
    acquirer = world.parties["acquirer"].core
    replies = [e for e in acquirer.handle(Received("conn:again", sent[-1]), world.now_ms) if isinstance(e, Send)]
    assert len(replies) == 1 and replies[0].to == "conn:again"
    reply = decode_terminal(replies[0].frame)
    assert reply["39"] == "00" and reply["11"] == decode_terminal(sent[-1])["11"] and len(reply["38"]) == 6
    world.run()
    assert balance(world) == 1_000_000 - 4321, "charged once"
