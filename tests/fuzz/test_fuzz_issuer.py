"""The issuer fed mutated copies of the switch's real requests.

A frame whose MAC does not verify moves no money: the ledger's balances and
transfers, the authorizations and the PIN tries stay as they were. The issuer
does not raise, answers a readable request whose MAC fails with A0, and
drops, unanswered, an unreadable frame and one that is not a request (a
reply, an MTI whose third digit is 9, …): no reply MTI exists for it.
"""

from __future__ import annotations

import json

from fuzz_support import FUZZ, digits, mutated, rewritten
from hypothesis import event, given
from hypothesis import strategies as st

from posnet.effects import LedgerWrite, Put, Received, Send, Trace
from posnet.wire import Message, WireError, decode_host, encode_host, response_mti
from posnet.wire.codes import is_request
from posnet.wire.fields import OriginalData

SOURCE = "switch"


def books(issuer) -> tuple:
    """Everything that money or a cardholder's standing is made of."""
    ledger = issuer.ledger
    accounts = tuple(
        (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) for a in ledger.accounts()
    )
    return accounts, ledger.transfer_count(), json.dumps(issuer.auths, sort_keys=True), json.dumps(issuer.pin_tries, sort_keys=True)


def classify(issuer, frame: bytes) -> tuple[Message | None, bool]:
    try:
        req = decode_host(frame)
    except WireError:
        return None, False
    mac = req.get(req.mac_field)
    return req, bool(mac and issuer.hsm.verify_retail_mac(issuer.config.zak, req.mac_input(), bytes.fromhex(mac)))


def base_frames(live) -> list[bytes]:
    return live.frames_to("issuer-bank-a")  # the inquiry and the sale, as the switch sent them


def test_the_base_frames_are_the_switchs_inquiry_and_sale(live):
    inquiry, sale = (decode_host(f) for f in base_frames(live))
    assert (inquiry["3"], sale["3"], sale["4"]) == ("310000", "000000", "000000008800")
    issuer = live.fresh_issuer()
    assert all(classify(issuer, f)[1] for f in base_frames(live))


@FUZZ
@given(data=st.data())
def test_issuer_moves_no_money_on_mutated_frames(live, data):
    frame = data.draw(mutated(data.draw(st.sampled_from(base_frames(live)))))
    check_issuer(live, frame)


HOST_MTIS = ["0100", "0200", "0210", "0220", "0290", "0400", "0401", "0420", "0800", "0820"]
HOST_VALUES = {
    "2": st.sampled_from(["6222020000000001", "6222020000000019", "6222020000000027", "4000000000000002"]),
    "3": st.sampled_from(["000000", "310000", "200000", "030000"]),
    "4": st.integers(0, 10**12 - 1).map("{:012d}".format),
    "11": digits(6, 6),
    "14": st.sampled_from(["3012", "2001", "9912"]),
    "35": st.sampled_from(["6222020000000001=30122010000000000", "6222020000000001=3012", "=", "6222020000000001"]),
    "90": st.one_of(digits(42, 42), st.just(OriginalData("0200", "000001", "1124020000", "48020000").encode())),
    "100": st.sampled_from(["01020000", "99999999"]),
}


@FUZZ
@given(data=st.data())
def test_issuer_moves_no_money_on_rewritten_frames(live, data):
    original = decode_host(data.draw(st.sampled_from(base_frames(live))))
    message = data.draw(rewritten(original, HOST_MTIS, HOST_VALUES))
    check_issuer(live, encode_host(message))


def check_issuer(live, frame: bytes) -> None:
    issuer = live.fresh_issuer()
    req, mac_ok = classify(issuer, frame)
    if mac_ok:
        event("MAC still verifies: not a bad-MAC frame")
        return
    before = books(issuer)

    effects = issuer.handle(Received(SOURCE, frame), live.world.now_ms)

    assert books(issuer) == before, "money or standing changed on a frame with a bad MAC"
    assert not [e for e in effects if isinstance(e, (LedgerWrite, Put))], effects
    replies = [e for e in effects if isinstance(e, Send)]
    if req is None:
        assert not replies, "an unreadable frame is dropped, not answered"
        event("dropped: unreadable")
        return
    if not is_request(req.mti):
        assert not replies, "a frame that is not a request is dropped, not answered"
        event("dropped: not a request")
        return
    assert len(replies) == 1 and replies[0].to == SOURCE
    reply = decode_host(replies[0].frame)
    assert reply.mti == response_mti(req.mti)
    assert reply["39"] == "A0"
    assert issuer.hsm.verify_retail_mac(issuer.config.zak, reply.mac_input(), bytes.fromhex(reply[reply.mac_field]))
    event("answered A0")


ISSUER_ANSWERS = {"00", "05", "12", "13", "14", "25", "30", "40", "41", "43", "51", "54", "55", "57", "61", "62", "64", "75", "94", "96", "99"}


@FUZZ
@given(data=st.data())
def test_issuer_survives_odd_requests_under_a_good_mac(live, data):
    """What a faulty acquirer could send through the switch: well formed, well MACed, odd content."""
    original = decode_host(data.draw(st.sampled_from(base_frames(live))))
    message = data.draw(rewritten(original, HOST_MTIS, HOST_VALUES))
    issuer = live.fresh_issuer()
    frame = encode_host(message, mac=lambda d: issuer.hsm.retail_mac(issuer.config.zak, d))
    before = books(issuer)
    effects = issuer.handle(Received(SOURCE, frame), live.world.now_ms)
    issuer.ledger.check_invariants()
    replies = [e for e in effects if isinstance(e, Send)]
    if not is_request(message.mti):
        assert all(isinstance(e, Trace) for e in effects), "no reply, not even A0, and nothing stored"
        assert books(issuer) == before, "a frame that is not a request moved money"
        event("dropped: not a request")
        return
    assert len(replies) == 1
    reply = decode_host(replies[0].frame)
    assert reply.mti == response_mti(message.mti)
    assert reply["39"] in ISSUER_ANSWERS, reply["39"]
    event(f"answered {reply['39']}")
