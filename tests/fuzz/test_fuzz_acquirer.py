"""The acquirer fed mutated copies of a signed-on terminal's real frames.

Whatever arrives, the acquirer does not raise, never moves money, never
forwards to the switch a frame whose MAC no longer verifies, and either
answers the terminal with a reply that decodes (the request's MTI + 10, an
F39 the acquirer can give) or closes the connection. It closes exactly when
no reply can be framed: the frame is not a request (a reply, an MTI whose
third digit is 9, …), or it does not decode and not even a request's MTI
could be read from it. A frame that does not decode but whose MTI is a
request's is answered 30, with only fields that decoded and validate.
"""

from __future__ import annotations

from fuzz_support import FUZZ, digits, mutated, rewritten
from hypothesis import event, given
from hypothesis import strategies as st

from posnet.effects import Close, LedgerWrite, Received, Send
from posnet.wire import Message, WireError, decode_host, decode_terminal, encode_terminal, response_mti
from posnet.wire.codec import reply_tpdu
from posnet.wire.codes import Kind, is_request, terminal_kind
from posnet.wire.fields import parse_f60

SOURCE = "conn:x"
TID = "10000001"

# What the acquirer answers on its own, without the switch: 00 (sign-on, echo,
# sign-off, reversal acknowledged, or the first answer repeated to a
# retransmitted sale), 03, 12, 25, 30, 40, 64, 77, 94, 97, 99, A0.
ANSWERS = {"00", "03", "12", "25", "30", "40", "64", "77", "94", "97", "99", "A0"}
UNMACED_MTIS = ("0800", "0820")  # sign-on, sign-off and echo carry no MAC on the CUP terminal leg


def classify(acquirer, frame: bytes) -> tuple[Message | None, WireError | None, bool]:
    """The request as the acquirer will see it, the decode error, and whether its MAC verifies."""
    try:
        req = decode_terminal(frame)
    except WireError as e:
        return None, e, False
    state = acquirer.terminals.get(req.get(41) or "")
    mac_ok = bool(
        req.has(64)
        and state
        and state.get("mak")
        and acquirer.hsm.verify_cup_mac(state["mak"], req.mac_input(), bytes.fromhex(req["64"]))
    )
    return req, None, mac_ok


def kind_of(req: Message) -> Kind | None:
    """The request's kind as the acquirer classifies it (F60 shorter than 11 digits counts as absent)."""
    f60 = req.get(60) or ""
    parts = parse_f60(f60) if len(f60) >= 11 else None
    return terminal_kind(req.mti, req.get(3), parts.tx_type if parts else "", parts.network_code if parts else "")


def base_frames(live) -> list[bytes]:
    sign_on, inquiry, sale = live.frames_to("acquirer", "conn:")
    return [sale, sale, inquiry, sign_on]  # the sale most of all


def base_messages(live) -> list[Message]:
    """The real frames decoded, and a void and a refund of the real sale built from it."""
    sign_on, inquiry, sale = (decode_terminal(f) for f in live.frames_to("acquirer", "conn:"))
    (rrn,) = [r for r, t in live.acquirer.txns.items() if t["kind"] == "sale"]
    void = Message("0200", {**sale.fields, "3": "200000", "37": rrn, "60": "23000001000", "61": "000001" + sale["11"]}, tpdu=sale.tpdu, header=sale.header)
    refund = Message("0220", {**sale.fields, "3": "200000", "37": rrn, "60": "25000001000", "61": "0000000000001124"}, tpdu=sale.tpdu, header=sale.header)
    return [sale, inquiry, sign_on, void, refund]


def test_the_base_frames_are_a_signed_on_terminals(live):
    sign_on, inquiry, sale = (decode_terminal(f) for f in live.frames_to("acquirer", "conn:"))
    assert (sign_on.mti, inquiry["3"], sale["3"]) == ("0800", "310000", "000000")
    acquirer = live.fresh_acquirer()
    for frame in live.frames_to("acquirer", "conn:")[1:]:
        assert classify(acquirer, frame)[2], "the real frames carry a good MAC"


@FUZZ
@given(data=st.data())
def test_acquirer_survives_mutated_terminal_frames(live, data):
    original = data.draw(st.sampled_from(base_frames(live)))
    check_acquirer(live, data.draw(mutated(original)))


TERMINAL_MTIS = ["0100", "0200", "0210", "0220", "0290", "0320", "0400", "0401", "0500", "0800", "0820", "0830"]
TERMINAL_VALUES = {
    "3": st.sampled_from(["000000", "310000", "200000", "030000", "999999"]),
    "4": st.integers(0, 10**12 - 1).map("{:012d}".format),
    "11": digits(6, 6),
    "37": st.sampled_from(["000000000002", "999999999999", " " * 12]),
    "39": st.sampled_from(["00", "06", "98"]),
    "41": st.sampled_from(["10000001", "10000002", "99999999"]),
    "42": st.sampled_from(["898310148160001", "898310148160002", " " * 15]),
    "48": digits(0, 62),
    "60": st.one_of(
        st.builds(
            lambda t, n: f"{t}000001{n}",
            st.sampled_from(["00", "01", "10", "20", "22", "23", "25"]),
            st.sampled_from(["000", "001", "002", "003", "004", "201", "202", "301"]),
        ),
        digits(0, 17),
    ),
    "61": digits(0, 29),
}


@FUZZ
@given(data=st.data())
def test_acquirer_survives_rewritten_terminal_frames(live, data):
    original = data.draw(st.sampled_from(base_messages(live)))
    message = data.draw(rewritten(original, TERMINAL_MTIS, TERMINAL_VALUES))
    check_acquirer(live, encode_terminal(message))


def check_acquirer(live, frame: bytes) -> None:
    acquirer = live.fresh_acquirer()
    req, err, mac_ok = classify(acquirer, frame)

    effects = acquirer.handle(Received(SOURCE, frame), live.world.now_ms)

    assert not [e for e in effects if isinstance(e, LedgerWrite)], "the acquirer keeps no ledger"
    to_switch = [e for e in effects if isinstance(e, Send) and e.to == "switch"]
    replies = [e for e in effects if isinstance(e, Send) and e.to == SOURCE]
    closes = [e for e in effects if isinstance(e, Close)]
    assert {e.to for e in effects if isinstance(e, (Send, Close))} <= {SOURCE, "switch"}

    if to_switch:
        assert mac_ok, "forwarded a frame whose MAC does not verify"
        event("forwarded: the MAC still verifies")
    else:
        assert len(replies) + len(closes) == 1, effects

    request_mti = req.mti if req is not None else err.partial.get("t", "")
    if not is_request(request_mti):
        assert [e for e in effects if isinstance(e, (Send, Close))] == [Close(SOURCE)], effects
        event("closed: not a request" if req is not None else "closed: unreadable, no request MTI")
        return
    assert not closes, "closed on a frame a reply can be framed for"

    request_tpdu = req.tpdu if req is not None else frame[:5].hex().upper()
    for sent in replies:
        reply = decode_terminal(sent.frame)
        assert reply.mti == response_mti(request_mti)
        assert reply.tpdu == reply_tpdu(request_tpdu)
        rc = reply["39"]
        assert rc in ANSWERS, rc
        if err is not None:
            assert rc == "30", "an unreadable request is answered 30"
            assert all(err.partial.get(k) == v for k, v in reply.fields.items() if k != "39"), "echoed a field that did not decode"
            assert err.field not in reply.fields, "echoed the field that failed"
        if rc == "00":
            assert req is not None and (mac_ok or req.mti in UNMACED_MTIS), "approved a frame whose MAC fails"
        event(f"answered {rc}")


@FUZZ
@given(data=st.data())
def test_acquirer_survives_odd_requests_under_a_good_mac(live, data):
    """What a faulty terminal could send: well formed, MACed with its own key, odd content."""
    original = data.draw(st.sampled_from(base_messages(live)))
    message = data.draw(rewritten(original, TERMINAL_MTIS, TERMINAL_VALUES))
    acquirer = live.fresh_acquirer()
    mak = acquirer.terminals[TID]["mak"]
    frame = encode_terminal(message, mac=lambda d: acquirer.hsm.cup_mac(mak, d))
    effects = acquirer.handle(Received(SOURCE, frame), live.world.now_ms)
    if not is_request(message.mti):
        assert [e for e in effects if isinstance(e, (Send, Close))] == [Close(SOURCE)], effects
        event("closed: not a request")
        return
    assert not [e for e in effects if isinstance(e, Close)]
    replies = [e for e in effects if isinstance(e, Send) and e.to == SOURCE]
    for sent in replies:
        reply = decode_terminal(sent.frame)
        assert reply.mti == response_mti(message.mti) and reply["39"] in ANSWERS
        if kind_of(message) is None:
            assert reply["39"] == "40", "a kind the acquirer does not handle"
        event(f"answered {reply['39']}")
    for sent in (e for e in effects if isinstance(e, Send) and e.to == "switch"):
        upstream = decode_host(sent.frame)
        assert acquirer.hsm.verify_retail_mac(acquirer.config.zak, upstream.mac_input(), bytes.fromhex(upstream[upstream.mac_field]))
        event(f"forwarded {upstream.mti}")
    assert replies or any(isinstance(e, Send) and e.to == "switch" for e in effects)

