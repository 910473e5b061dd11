"""Bad input to the cores, one story each: what the fuzz tests found, pinned.

Each story was a bug the fuzz tests found; they stay as regressions. A new
bug found here is pinned as a strict xfail naming the code at fault until
it is fixed.
"""

from __future__ import annotations

import pytest

from posnet.effects import Close, LedgerWrite, Received, Send, Trace
from posnet.wire import Message, decode_host, decode_terminal, encode_host, encode_terminal, response_mti

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


# -- a frame that is not a request: no reply MTI exists for it --------------------


@pytest.mark.parametrize("mti", ["0290", "0210", "0202"])
def test_acquirer_closes_on_a_frame_from_a_terminal_that_is_not_a_request(live, mti):
    effects = handle(live.fresh_acquirer(), patch(sale_frame(live), 11, bytes.fromhex(mti)), live.world.now_ms)
    assert [e for e in effects if isinstance(e, (Send, Close))] == [Close(SOURCE)]
    (trace,) = [e for e in effects if isinstance(e, Trace)]
    assert trace.event == "not a request from a terminal" and trace.detail["mti"] == mti


@pytest.mark.parametrize("mti", [b"0290", b"0210", b"0410"])
def test_issuer_drops_a_frame_from_the_switch_that_is_not_a_request(live, mti):
    issuer = live.fresh_issuer()
    sale = live.frames_to("issuer-bank-a")[1]
    balance = issuer.balance_of_card("6222020000000001")
    effects = handle(issuer, mti + sale[4:], live.world.now_ms, source="switch")
    assert [(e.event, e.detail) for e in effects if isinstance(e, Trace)] == [
        ("not a request from the switch: dropped", {"mti": mti.decode()})
    ]
    assert effects == [e for e in effects if isinstance(e, Trace)], "no reply, not even A0, and nothing stored"
    assert issuer.balance_of_card("6222020000000001") == balance


@pytest.mark.parametrize("mti", [b"0290", b"0210"])
def test_switch_drops_a_frame_from_an_acquirer_that_is_not_a_request(live, mti):
    sale = live.frames_to("switch", "acquirer:")[1]
    effects = handle(live.fresh_switch(), mti + sale[4:], live.world.now_ms, source="acquirer:48020000")
    assert effects == [Trace("", "not a request from an acquirer: dropped", {"mti": mti.decode()})], "no reply, not even A0"


def test_switch_still_answers_a0_to_a_request_whose_mac_fails(live):
    sale = live.frames_to("switch", "acquirer:")[1]
    effects = handle(live.fresh_switch(), sale[:-1] + bytes([sale[-1] ^ 1]), live.world.now_ms, source="acquirer:48020000")
    (reply,) = [decode_host(e.frame) for e in effects if isinstance(e, Send)]
    assert (reply.mti, reply["39"]) == ("0210", "A0")


# -- settlement and batch upload: the fields they need ------------------------------


@pytest.mark.parametrize(
    "mti, fields, code",
    [
        ("0500", {"11": "000009", "60": "00000001201"}, "30"),
        ("0320", {"11": "000009", "60": "00000001202"}, "30"),
        ("0500", {"11": "000009", "41": TID, "42": "898310148160001", "60": "00000001201"}, "30"),
        ("0320", {"11": "000009", "41": TID, "42": "898310148160001", "48": "0003", "60": "00000001202"}, "30"),
    ],
    ids=["settlement without F41/F42", "batch upload without F41/F42", "settlement without F48/F64", "batch upload without F64"],
)
def test_settlement_and_batch_upload_missing_fields_are_answered_30_before_f41_and_f42_are_read(live, mti, fields, code):
    frame = encode_terminal(Message(mti, fields, tpdu="6000030000", header="602200000000"))
    effects = handle(live.fresh_acquirer(), frame, live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply["39"], reply.has(64)) == (response_mti(mti), code, False)
    assert not forwarded(effects)


# -- a field that decodes but does not parse ----------------------------------------


@pytest.mark.parametrize("mti, f3, f60", [("0200", "200000", "23000001000"), ("0220", "200000", "25000001000")], ids=["void", "refund"])
@pytest.mark.parametrize("f61", ["000001", ""], ids=["6 digits", "empty"])
def test_void_or_refund_with_a_short_f61_is_answered_30(live, mti, f3, f60, f61):
    acquirer = live.fresh_acquirer()
    sale = decode_terminal(sale_frame(live))
    (rrn,) = [r for r, t in acquirer.txns.items() if t["kind"] == "sale"]
    fields = {k: v for k, v in sale.fields.items() if k != "64"}
    fields.update({"3": f3, "37": rrn, "60": f60, "61": f61})
    effects = handle(acquirer, maced(acquirer, Message(mti, fields, tpdu=sale.tpdu, header=sale.header)), live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply["39"], reply.has(64)) == (response_mti(mti), "30", False)
    assert not forwarded(effects)


# -- a frame that does not decode: 30 with what can be trusted, or close -----------


def test_a_sale_cut_short_inside_the_amount_is_answered_30(live):
    effects = handle(live.fresh_acquirer(), sale_frame(live)[:36], live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply.fields) == ("0210", {"3": "000000", "39": "30"})  # F4, which failed, is not echoed


def test_a_sale_with_a_bit_for_an_unknown_field_is_answered_30(live):
    effects = handle(live.fresh_acquirer(), patch(sale_frame(live), 13, bytes([sale_frame(live)[13] | 0x08])), live.world.now_ms)
    (reply,) = replies_to(effects)
    assert (reply.mti, reply.tpdu, reply.fields) == ("0210", "6000000003", {"39": "30"})  # only the MTI is known


@pytest.mark.parametrize(
    "edits, fields",
    [
        ([(37, "AB12"), (40, "AB12")], {"3": "000000", "41": TID, "42": "898310148160001"}),
        ([(37, "AB12"), (60, None)], {"3": "000000", "11": "000003"}),
        ([(11, "0A00"), (60, None)], None),
    ],
    ids=["F4 and F11 not numeric", "bad F4 then cut", "bad MTI then cut"],
)
def test_the_30_reply_to_a_garbled_sale_echoes_only_fields_that_validate(live, edits, fields):
    frame = sale_frame(live)
    for offset, data in edits:
        frame = frame[:offset] if data is None else patch(frame, offset, bytes.fromhex(data))
    effects = handle(live.fresh_acquirer(), frame, live.world.now_ms)
    if fields is None:  # no MTI to frame a reply with
        assert [e for e in effects if isinstance(e, (Send, Close))] == [Close(SOURCE)]
        return
    (reply,) = replies_to(effects)
    assert (reply.mti, reply.fields) == ("0210", {**fields, "39": "30"})


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
