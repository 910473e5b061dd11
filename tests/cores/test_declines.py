"""Each decline of the issuer, the switch and the acquirer, through the cores, with no money moved."""

import pytest

from posnet.effects import Received
from posnet.security import SecurityModule
from posnet.terminal.core import Card, Terminal, TerminalConfig

POS = "pos-10000001"


def total_held(world):
    issuer = world.parties["issuer-bank-a"].core
    return sum(a.debits_pending for a in issuer.ledger.accounts())


@pytest.fixture
def signed_on(world):
    assert world.command(POS, "sign-on").done.ok
    return world


@pytest.mark.parametrize(
    "pan, expiry, pin, amount_fen, expected",
    [
        ("6222029999999999", "3012", "123456", 100, "14"),  # a BIN of bank-a, but no such card
        ("6222020000000035", "3012", "111111", 100, "41"),  # lost
        ("6222020000000019", "2001", "123456", 100, "54"),  # expired
        ("6222020000000001", "3012", "000000", 100, "55"),  # wrong PIN
        ("6222020000000027", "3012", "654321", 10_001, "51"),  # balance 100.00
        ("6222020000000001", "3012", "123456", 5_000_001, "61"),  # over the per-transaction limit
        ("4000000000000002", "3012", "123456", 100, "15"),  # no issuer owns the BIN
    ],
)
def test_sale_declines_and_no_hold_is_placed(signed_on, pan, expiry, pin, amount_fen, expected):
    out = signed_on.command(POS, "sale", card=Card(pan, expiry), pin=pin, amount_fen=amount_fen)
    assert not out.done.ok
    assert out.done.response_code == expected
    assert out.slips == [], "a declined sale prints no receipt"
    assert total_held(signed_on) == 0


def test_three_wrong_pins_in_a_row_lock_the_card_with_75(signed_on, card):
    codes = [signed_on.command(POS, "sale", card=card, pin="999999", amount_fen=100).done.response_code for _ in range(3)]
    assert codes == ["55", "55", "75"]
    right_pin = signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert right_pin.done.response_code == "75", "locked even for the right PIN"


def test_the_pin_tries_are_forgiven_the_next_day(signed_on, card):
    for _ in range(3):
        signed_on.command(POS, "sale", card=card, pin="999999", amount_fen=100)
    signed_on.advance(24 * 3600 * 1000)
    signed_on.command(POS, "sign-on")
    assert signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100).done.ok


def test_a_right_pin_resets_the_count(signed_on, card):
    signed_on.command(POS, "sale", card=card, pin="999999", amount_fen=100)
    signed_on.command(POS, "sale", card=card, pin="999999", amount_fen=100)
    assert signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100).done.ok
    assert signed_on.command(POS, "sale", card=card, pin="999999", amount_fen=100).done.response_code == "55"


def test_an_unregistered_terminal_is_told_97(world, demo_net):
    hsm = SecurityModule(SecurityModule.generate_lmk())
    stranger = Terminal(TerminalConfig("99999999", "898310148160001", "x"), hsm, hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210"))
    world.add("pos-stranger", stranger)
    world.connect("pos-stranger", "acquirer", "acquirer", "conn:stranger")
    out = world.command("pos-stranger", "sign-on")
    assert out.done.response_code == "97"


def test_a_terminal_that_never_signed_on_is_told_77(world, card):
    terminal = world.parties[POS].core
    terminal.keys.update(signed_on=True, mak=terminal.hsm.generate_key(), pik=terminal.hsm.generate_key())
    out = world.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert out.done.response_code == "77"
    assert total_held(world) == 0


def test_a_bad_mac_is_answered_a0_and_moves_no_money(signed_on, card):
    terminal = signed_on.parties[POS].core
    terminal.keys["mak"] = terminal.hsm.generate_key()  # the terminal's MAK no longer matches the acquirer's
    out = signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert out.done.response_code == "A0"
    assert total_held(signed_on) == 0
    assert not terminal.signed_on, "after A0 the terminal must sign on again"


def test_a_sale_before_sign_on_never_leaves_the_terminal(world, card):
    out = world.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert not out.done.ok
    assert "SIGN ON" in out.displays[-1]


def test_an_unreadable_frame_is_answered_30_when_a_reply_can_be_framed(signed_on):
    acquirer = signed_on.parties["acquirer"].core
    # TPDU, header, MTI 0200, bitmap with F3 and F4, F3 fine, F4 holding hex letters.
    frame = bytes.fromhex("6000030000602200000000" + "0200" + "3000000000000000" + "000000" + "00000000AB12")
    effects = acquirer.handle(Received("conn:x", frame), signed_on.now_ms)
    from posnet.effects import LedgerWrite, Send
    from posnet.wire import decode_terminal

    sends = [e for e in effects if isinstance(e, Send)]
    assert len(sends) == 1 and sends[0].to == "conn:x"
    reply = decode_terminal(sends[0].frame)
    assert reply.mti == "0210" and reply["39"] == "30" and reply["3"] == "000000"
    assert not any(isinstance(e, LedgerWrite) for e in effects)


def test_garbage_closes_the_connection(signed_on):
    from posnet.effects import Close

    acquirer = signed_on.parties["acquirer"].core
    effects = acquirer.handle(Received("conn:x", b"\x00" * 30), signed_on.now_ms)
    assert any(isinstance(e, Close) and e.to == "conn:x" for e in effects)


def test_an_issuer_that_is_not_connected_means_91(signed_on, card):
    signed_on.parties["switch"].core.connected.discard("bank-a")
    out = signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert out.done.response_code == "91"


def test_after_a0_the_next_function_signs_on_again_first(signed_on, card):
    terminal = signed_on.parties[POS].core
    terminal.keys["mak"] = terminal.hsm.generate_key()
    assert signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100).done.response_code == "A0"
    out = signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert out.displays[0] == "重新签到 SIGNING ON AGAIN"
    assert out.done.ok and terminal.signed_on


def test_after_a_sign_off_the_operator_signs_on(signed_on, card):
    signed_on.command(POS, "sign-off")
    out = signed_on.command(POS, "sale", card=card, pin="123456", amount_fen=100)
    assert not out.done.ok and "PLEASE SIGN ON" in out.displays[-1]
