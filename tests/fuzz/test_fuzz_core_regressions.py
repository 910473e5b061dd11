"""Bad input to the cores, one story each: what the fuzz tests found, pinned.

The xfail(strict=True) stories describe bugs still open; when one passes,
remove its mark and the matching step-around in test_fuzz_acquirer.py or
test_fuzz_issuer.py.
"""

from __future__ import annotations

import pytest

from posnet.effects import Close, LedgerWrite, Received, Send
from posnet.wire import Message, decode_host, decode_terminal, encode_host, encode_terminal

SOURCE = "conn:pos-10000001"
TID = "10000001"


def sale_frame(live) -> bytes:
    return live.frames_to("acquirer", "conn:")[2]


def patch(frame: bytes, offset: int, data: bytes) -> bytes:
    return frame[:offset] + data + frame[offset + len(data) :]


def handle(core, frame: bytes, now_ms: int, source: str = SOURCE) -> list:
    return core.handle(Received(source, frame), now_ms)


def replies_to(effects, source: str = SOURCE) -> list[Message]:
    return [decode_terminal(e.frame) for e in effects if isinstance(e, Send) and e.to == source]


def forwarded(effects) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and e.to == "switch"]


def maced(acquirer, message: Message) -> bytes:
    mak = acquirer.terminals[TID]["mak"]
    return encode_terminal(message, mac=lambda data: acquirer.hsm.cup_mac(mak, data))


# Offsets in the demo sale frame (docs/wire.md): MTI 11, bitmap 13, F2 21, F3 30, F4 33, F11 39, F35 48.


def test_a_sale_whose_amount_changed_in_flight_is_refused_with_a0_and_not_forwarded(live):
    acquirer = live.fresh_acquirer()
    tampered = patch(sale_frame(live), 37, bytes.fromhex("9999"))  # 88.00 becomes 99.99
    effects = handle(acquirer, tampered, live.world.now_ms)
    assert not forwarded(effects)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply["39"], reply.has(64)) == ("0210", "A0", False)


def test_a_sale_with_a_non_numeric_amount_is_answered_30(live):
    acquirer = live.fresh_acquirer()
    effects = handle(acquirer, patch(sale_frame(live), 37, bytes.fromhex("AB12")), live.world.now_ms)
    (reply,) = replies_to(effects)
    assert reply.mti == "0210" and reply.tpdu == "6000000003"  # destination and source swapped
    trace = decode_terminal(sale_frame(live))["11"]
    assert reply.fields == {"3": "000000", "11": trace, "39": "30", "41": TID, "42": "898310148160001"}


def test_a_frame_with_a_bad_tpdu_id_closes_the_connection(live):
    effects = handle(live.fresh_acquirer(), patch(sale_frame(live), 0, b"\x61"), live.world.now_ms)
    assert [e for e in effects if isinstance(e, (Send, Close))] == [Close(SOURCE)]


def test_nothing_is_forwarded_for_a_sale_from_a_terminal_that_is_not_signed_on(live):
    acquirer = live.fresh_acquirer()
    acquirer.terminals[TID]["signed_on"] = False
    (reply,) = replies_to(handle(acquirer, sale_frame(live), live.world.now_ms))
    assert reply["39"] == "77"


def test_the_issuer_answers_a0_to_a_sale_with_a_bad_mac_and_moves_no_money(live):
    issuer = live.fresh_issuer()
    sale = live.frames_to("issuer-bank-a")[1]
    balance = issuer.balance_of_card("6222020000000001")
    effects = handle(issuer, sale[:-1] + bytes([sale[-1] ^ 1]), live.world.now_ms, source="switch")
    assert issuer.balance_of_card("6222020000000001") == balance
    assert not [e for e in effects if isinstance(e, LedgerWrite)]
    (reply,) = [decode_host(e.frame) for e in effects if isinstance(e, Send)]
    assert (reply.mti, reply["39"]) == ("0210", "A0")


# -- open bugs --------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="codes.response_mti('0290') is '02100'; Acquirer._answer (kind None -> 40) passes it to "
    "encode_terminal, which raises WireError out of Acquirer.handle",
)
def test_acquirer_answers_a_frame_whose_mti_has_no_reply(live):
    effects = handle(live.fresh_acquirer(), patch(sale_frame(live), 11, bytes.fromhex("0290")), live.world.now_ms)
    assert [e.to for e in effects if isinstance(e, (Send, Close))] == [SOURCE]


@pytest.mark.xfail(
    strict=True,
    reason="codes.response_mti('0290') is '02100'; Issuer._reply for the A0 answer passes it to "
    "encode_host, which raises WireError out of Issuer.handle",
)
def test_issuer_survives_a_frame_whose_mti_has_no_reply(live):
    issuer = live.fresh_issuer()
    sale = live.frames_to("issuer-bank-a")[1]
    handle(issuer, b"0290" + sale[4:], live.world.now_ms, source="switch")


@pytest.mark.xfail(
    strict=True,
    reason="REQUIRED in acquirer/core.py has no entry for SETTLEMENT and BATCH_UPLOAD, so nothing is "
    "missing and _from_terminal reads req['41'] and raises KeyError",
)
@pytest.mark.parametrize("mti, f60", [("0500", "00000001201"), ("0320", "00000001202")])
def test_settlement_without_terminal_id_is_answered_30(live, mti, f60):
    frame = encode_terminal(Message(mti, {"11": "000009", "60": f60}, tpdu="6000030000", header="602200000000"))
    (reply,) = replies_to(handle(live.fresh_acquirer(), frame, live.world.now_ms))
    assert reply["39"] == "30"


@pytest.mark.xfail(
    strict=True,
    reason="Acquirer._financial calls parse_f61 unguarded: a void or refund under a good MAC whose F61 "
    "has fewer than 12 digits raises WireError out of Acquirer.handle instead of answering 30",
)
@pytest.mark.parametrize("mti, f3, f60", [("0200", "200000", "23000001000"), ("0220", "200000", "25000001000")], ids=["void", "refund"])
def test_void_or_refund_with_a_short_f61_is_answered_30(live, mti, f3, f60):
    acquirer = live.fresh_acquirer()
    sale = decode_terminal(sale_frame(live))
    (rrn,) = [r for r, t in acquirer.txns.items() if t["kind"] == "sale"]
    fields = {k: v for k, v in sale.fields.items() if k != "64"}
    fields.update({"3": f3, "37": rrn, "60": f60, "61": "000001"})
    effects = handle(acquirer, maced(acquirer, Message(mti, fields, tpdu=sale.tpdu, header=sale.header)), live.world.now_ms)
    (reply,) = replies_to(effects)
    assert reply["39"] == "30" and not forwarded(effects)


@pytest.mark.xfail(
    strict=True,
    reason="WireError.partial keeps the field that failed ('4': ''), the acquirer echoes it, "
    "encode_terminal refuses, and _format_error closes although MTI 0200 is known",
)
def test_a_sale_cut_short_inside_the_amount_is_answered_30(live):
    effects = handle(live.fresh_acquirer(), sale_frame(live)[:36], live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply["39"]) == ("0210", "30")


@pytest.mark.xfail(
    strict=True,
    reason="a bit for a field the spec lacks gives a WireError with an empty partial, so "
    "_format_error has no MTI and closes instead of answering 30",
)
def test_a_sale_with_a_bit_for_an_unknown_field_is_answered_30(live):
    effects = handle(live.fresh_acquirer(), patch(sale_frame(live), 13, bytes([sale_frame(live)[13] | 0x08])), live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply["39"]) == ("0210", "30")


@pytest.mark.xfail(
    strict=True,
    reason="_format_error echoes F3/F4/F11 and the MTI from WireError.partial, which holds unvalidated "
    "values (and encode_terminal writes hex letters into BCD): the 30 reply does not decode",
)
@pytest.mark.parametrize(
    "edits",
    [
        [(37, "AB12"), (40, "AB12")],  # F4 and F11 not numeric
        [(37, "AB12"), (60, None)],  # F4 not numeric, frame cut inside track 2
        [(11, "0A00"), (60, None)],  # MTI 0A00, frame cut inside track 2
    ],
    ids=["F4 and F11 not numeric", "bad F4 then cut", "bad MTI then cut"],
)
def test_the_30_reply_to_a_garbled_sale_decodes(live, edits):
    frame = sale_frame(live)
    for offset, data in edits:
        frame = frame[:offset] if data is None else patch(frame, offset, bytes.fromhex(data))
    effects = handle(live.fresh_acquirer(), frame, live.world.now_ms)
    sent = [e for e in effects if isinstance(e, Send)]
    for e in sent:
        decode_terminal(e.frame)


def test_a_replayed_sale_gets_the_first_answer_and_is_not_forwarded_again(live):
    acquirer = live.fresh_acquirer()
    (rrn,) = [r for r, t in acquirer.txns.items() if t["kind"] == "sale"]
    effects = handle(acquirer, sale_frame(live), live.world.now_ms)
    assert not forwarded(effects)
    (reply,) = replies_to(effects)
    assert (reply["39"], reply["37"]) == ("00", rrn)


def test_host_reply_to_the_acquirer_with_a_bad_mac_is_dropped(live):
    acquirer = live.fresh_acquirer()
    reply = live.frames_to("acquirer", "switch")[-1]
    effects = handle(acquirer, reply[:-1] + bytes([reply[-1] ^ 1]), live.world.now_ms, source="switch")
    assert not [e for e in effects if isinstance(e, (Send, Close))]


def test_an_issuer_reply_survives_being_encoded_again(live):
    for frame in live.frames_to("switch", "issuer:"):
        msg = decode_host(frame)
        assert encode_host(Message(msg.mti, dict(msg.fields))) == frame
