"""The terminal leg (CUP POS 8583): every message of the message set survives a
round trip, and the bytes are the ones a real CUP terminal sends.

Layout of a frame (DOMAIN.md §2): 2-byte length (added by ``frame()``), TPDU
(5), header (6), BCD MTI (2), binary bitmap (8), fields. Numbers are BCD,
left-aligned and right-padded with ``0`` when odd, but for F23 (card sequence
number), right-aligned as real terminals send it; LL/LLL prefixes are BCD
and count digits for numeric fields, bytes for the rest.
"""

from __future__ import annotations

import pytest

from posnet.wire import FrameReader, Message, WireError, decode_terminal, encode_terminal, frame
from posnet.wire.codes import Kind, terminal_kind
from posnet.wire.fields import F60, F61, Totals, WorkingKeys, build_balance, build_settlement_totals, parse_f60

TPDU = "6000030000"
HEADER = "602200000000"
PAN = "6222020000000001"
TRACK2 = "6222020000000001D30122010000000000"
TID, MID = "10000001", "898310148160001"


def fake_mac(data: bytes) -> bytes:
    """Stands in for the MAK: the codec only places the 8 bytes, the HSM computes them."""
    return b"%08X" % (sum(data) & 0xFFFFFFFF)


def card_fields(**extra: str) -> dict[str, str]:
    fields = {
        "2": PAN,
        "11": "000002",
        "14": "3012",
        "22": "021",
        "25": "00",
        "26": "12",
        "35": TRACK2,
        "41": TID,
        "42": MID,
        "49": "156",
        "52": "54C4406EC8B0BC42",
        "53": "2600000000000000",
    }
    fields.update(extra)
    return fields


SETTLEMENT_TOTALS = build_settlement_totals(Totals(debit_amount=15466, debit_count=2, credit_amount=2000, credit_count=1))
KEYS = WorkingKeys(bytes(range(16)), b"\x01\x02\x03\x04", bytes(range(16, 32)), b"\x05\x06\x07\x08")

# (name, MTI, fields, MACed, kind on the terminal leg or None for a reply)
MESSAGE_SET = [
    ("sign-on", "0800", {"11": "000001", "41": TID, "42": MID, "60": "00000001003", "63": "01 "}, False, Kind.SIGN_ON),
    (
        "sign-on with data key",
        "0800",
        {"11": "000001", "41": TID, "42": MID, "60": "00000001004", "63": "01 "},
        False,
        Kind.SIGN_ON,
    ),
    (
        "sign-on reply",
        "0810",
        {
            "11": "000001",
            "12": "100000",
            "13": "1124",
            "32": "48020000",
            "37": "000000000001",
            "39": "00",
            "41": TID,
            "42": MID,
            "60": "00000001003",
            "62": KEYS.encode(),
        },
        False,
        None,
    ),
    ("sign-off", "0820", {"11": "000009", "41": TID, "42": MID, "60": "00000001002"}, False, Kind.SIGN_OFF),
    ("echo", "0820", {"11": "000010", "41": TID, "42": MID, "60": "00000001301"}, False, Kind.ECHO),
    ("inquiry", "0200", card_fields(**{"3": "310000", "60": "01000001000"}), True, Kind.INQUIRY),
    (
        "inquiry reply with balance",
        "0210",
        {"3": "310000", "11": "000002", "39": "00", "41": TID, "42": MID, "54": build_balance(991200)},
        True,
        None,
    ),
    ("sale", "0200", card_fields(**{"3": "000000", "4": "000000008800", "60": "22000001000"}), True, Kind.SALE),
    (
        "sale, 19-digit PAN and no PIN",
        "0200",
        {
            "2": "6222020000000000019",
            "3": "000000",
            "4": "000000000001",
            "11": "000003",
            "22": "022",
            "25": "00",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "22000001000",
        },
        True,
        Kind.SALE,
    ),
    (
        "sale reply",
        "0210",
        {
            "2": PAN,
            "3": "000000",
            "4": "000000008800",
            "11": "000002",
            "12": "100000",
            "13": "1124",
            "32": "48020000",
            "37": "000000000002",
            "38": "000001",
            "39": "00",
            "41": TID,
            "42": MID,
            "44": "01020000   48020000   ",
            "49": "156",
            "60": "22000001000",
            "63": "CUP",
        },
        True,
        None,
    ),
    (
        "void",
        "0200",
        card_fields(
            **{
                "3": "200000",
                "4": "000000008800",
                "11": "000004",
                "37": "000000000002",
                "38": "000001",
                "60": "23000001000",
                "61": F61("000001", "000002").encode(),
            }
        ),
        True,
        Kind.VOID,
    ),
    (
        "refund",
        "0220",
        card_fields(
            **{
                "3": "200000",
                "4": "000000002000",
                "11": "000005",
                "37": "000000000003",
                "60": "25000001000",
                "61": F61("000000", "000000", "1124").encode(),
            }
        ),
        True,
        Kind.REFUND,
    ),
    (
        "reversal of a sale",
        "0400",
        {
            "2": PAN,
            "3": "000000",
            "4": "000000008800",
            "11": "000002",
            "14": "3012",
            "22": "021",
            "25": "00",
            "39": "06",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "22000001000",
        },
        True,
        Kind.REVERSAL,
    ),
    (
        "settlement",
        "0500",
        {"11": "000011", "41": TID, "42": MID, "48": SETTLEMENT_TOTALS, "49": "156", "60": "00000001201", "63": "01 "},
        True,
        Kind.SETTLEMENT,
    ),
    (
        "batch upload end",
        "0320",
        {"11": "000012", "41": TID, "42": MID, "48": "0003", "60": "00000001202"},
        True,
        Kind.BATCH_UPLOAD,
    ),
]


@pytest.mark.parametrize("name, mti, fields, maced, kind", MESSAGE_SET, ids=[row[0] for row in MESSAGE_SET])
def test_round_trip_of_the_message_set(name, mti, fields, maced, kind):
    msg = Message(mti, dict(fields), tpdu=TPDU, header=HEADER)
    body = encode_terminal(msg, mac=fake_mac if maced else None)

    back = decode_terminal(body)

    expected = dict(fields)
    if maced:
        expected["64"] = body[-8:].hex().upper()
        assert back.mac_input() == body[11:-8], "the MAC covers MTI to the field before 64, no TPDU or header"
    assert (back.mti, back.tpdu, back.header, back.fields) == (mti, TPDU, HEADER, expected)
    assert back.raw == body[11:]
    # Decoding then encoding again gives the very same bytes.
    assert encode_terminal(Message(back.mti, dict(back.fields), tpdu=back.tpdu, header=back.header)) == body
    if kind is not None:
        f60 = parse_f60(back.get(60))
        assert terminal_kind(back.mti, back.get(3), f60.tx_type, f60.network_code) is kind


def test_sign_on_bytes_match_a_hand_built_cup_frame():
    msg = Message("0800", {"11": "000001", "41": TID, "42": MID, "60": "00000001003", "63": "01 "}, tpdu=TPDU, header=HEADER)
    expected = bytes.fromhex(
        "6000030000"  # TPDU: id 60, destination 0003, source 0000
        "602200000000"  # header: application 60, version 22, status 0, requirement 0, sub-version 000000
        "0800"  # MTI, BCD
        "0020000000C00012"  # bitmap: 11, 41, 42, 60, 63
        "000001"  # F11 n6
        "3130303030303031"  # F41 ans8 "10000001"
        "383938333130313438313630303031"  # F42 ans15 "898310148160001"
        "0011" "000000010030"  # F60 LLL BCD: 11 digits, right-padded with 0
        "0003" "303120"  # F63 LLL: 3 bytes "01 "
    )
    body = encode_terminal(msg)
    assert body == expected
    assert frame(body) == b"\x00\x3c" + expected  # 60 bytes follow


def test_sale_bytes_match_a_hand_built_cup_frame():
    fields = card_fields(**{"3": "000000", "4": "000000008800", "60": "22000001000"})
    body = encode_terminal(Message("0200", fields, tpdu=TPDU, header=HEADER), mac=lambda data: b"ABCD1234")
    expected = bytes.fromhex(
        "6000030000" "602200000000"
        "0200"
        "702404C020C09811"  # 2 3 4 11 14 22 25 26 35 41 42 49 52 53 60 64
        "16" "6222020000000001"  # F2 LL: 16 digits
        "000000"  # F3
        "000000008800"  # F4: 88.00 yuan in fen
        "000002"  # F11 trace = voucher number
        "3012"  # F14 expiry YYMM
        "0210"  # F22 "021": odd, right-padded with 0
        "00"  # F25
        "12"  # F26
        "34" "6222020000000001D30122010000000000"  # F35 LL: 34 digits, separator as nibble D
        "3130303030303031"  # F41
        "383938333130313438313630303031"  # F42
        "313536"  # F49 an3 "156"
        "54C4406EC8B0BC42"  # F52 b8
        "2600000000000000"  # F53 n16
        "0011" "220000010000"  # F60: type 22, batch 000001, network 000, pad
        "4142434431323334"  # F64: "ABCD1234"
    )
    assert body == expected


def test_odd_llvar_counts_digits_and_pads_right():
    body = encode_terminal(Message("0200", {"2": "6222020000000000019", "32": "123"}))
    # F2: 19 digits in 10 bytes, last nibble 0; F32: 3 digits in 2 bytes.
    assert body.endswith(bytes.fromhex("19" "62220200000000000190" "03" "1230"))


def test_bcd_lll_prefix_of_a_binary_field_counts_bytes():
    body = encode_terminal(Message("0810", {"62": KEYS.encode()}))
    assert body[-42:-40] == bytes.fromhex("0040")  # 40 bytes: PIK + KCV + MAK + KCV
    assert decode_terminal(body)["62"] == KEYS.encode()


def test_gbk_text_in_field_63():
    body = encode_terminal(Message("0210", {"39": "00", "63": "CUP测试"}))
    assert body.endswith(bytes.fromhex("0007") + "CUP测试".encode("gbk"))
    assert decode_terminal(body)["63"] == "CUP测试"


def test_the_default_tpdu_and_header_are_filled_in():
    msg = decode_terminal(encode_terminal(Message("0800", {"11": "000001"})))
    assert (msg.tpdu, msg.header) == ("6000000000", "602200000000")


def test_tpdu_and_header_of_the_wrong_size_are_refused():
    with pytest.raises(WireError, match="^TPDU must be 5 bytes and header 6 bytes$"):
        encode_terminal(Message("0800", {"11": "000001"}, tpdu="60000300", header=HEADER))


def test_a_mac_function_fills_field_64_last():
    msg = Message("0200", card_fields(**{"3": "000000", "4": "000000000100", "60": "22000001000"}))
    seen = []
    body = encode_terminal(msg, mac=lambda data: seen.append(data) or b"\x01" * 8)
    assert seen == [body[11:-8]]
    assert body[-8:] == b"\x01" * 8
    assert msg["64"] == "01" * 8 and msg.raw == body[11:]


# -- real frames ---------------------------------------------------------------
#
# Frames sent by real CUP terminals and hosts, found in public repositories.

# XUJiahua/j8583, src/test/java/com/solab/iso8583/cardinfolink/TestRSA.java: a
# sign-on sent to a live acquirer, 2-byte length included. 60.3 is 001 (a
# single-length key sign-on), which posnet's acquirer does not support.
J8583_SIGN_ON = bytes.fromhex(
    "003C600000973360220000000008000020000000C00012021806323031323132303653706563526F"
    "75746531323132303600110000000100100003303033"
)

# A public Java test of a CUP 8583 parser (package com.whty.zdrj.libset,
# ResponsibilityChainDemo.java, 2018): a terminal's sign-on and the host's
# reply, body only (TPDU and header stripped by the author).
WHTY_SIGN_ON_BODY = bytes.fromhex(
    "08000020000000c00012000016393033363137343839323330313137353339393136393500110000000100400003303120"
)
WHTY_SIGN_ON_REPLY_BODY = bytes.fromhex(
    "0810003800010ac00014000086132805041808000945003138303431383133323830353030333239303132343033323930"
    "3132343030303030303031001100000001005001045065A84226DD429258F81675C5E9D77239F98870683517B8F96E2D87"
    "B5BCB3386662CED50EC5CD14680EC351F93428F39A283A3F42962FC81050CC3D25F27069D7AF252B6AD444FCBBA9CC0E8B"
    "95DF0C85DBCD9526931E6A96C040C794988D9BCC57E773B05AD52B"
)
# The same file: a contactless chip sale with F23 and F55.
WHTY_CHIP_SALE_BODY = bytes.fromhex(
    "0200703C06C020C09A11196217857600008050804000000000000000000100010516124302092308071000010012376217"
    "857600008050804D23082201000082300039323333363738373834373130303035333939303030323135367D6A7408DFE2"
    "E9E5260000000000000001459F26089C0A057796D091E39F2701809F1013070F0103A00000010A010000005959BAF31C34"
    "9F37042AE9F9B49F36020FCD950500000000009A031802099C01009F02060000000000015F2A02015682027C009F1A0201"
    "569F03060000000000009F330390C8C09F34030000009F3501229F1E0831323334353637388408A0000003330101019F09"
    "0200209F41040000000200122200000100064433374345464536"
)

# soloicesky/ISO8583-CUP-FOR-JAVA-, src/com/cup/iso8583/Main.java: a host's
# 0210 sale reply from the bitmap on (the author's parser skips the MTI).
SOLOICESKY_SALE_REPLY_FROM_BITMAP = bytes.fromhex(
    "703E00810ED088131960138220005949887870000000000000000001000135112604103149121231000812345678303030"
    "303030303034383038303032303938303031323334353637383132333435363738393031323334352238383838383838"
    "383838383636363636363636363636313536061000000000000000142200004900050100034355503343333430354239"
)

HEAD = bytes.fromhex(TPDU + HEADER)


def test_real_sign_on_from_j8583_decodes_byte_for_byte():
    (body,) = FrameReader().feed(J8583_SIGN_ON)
    msg = decode_terminal(body)
    assert (msg.tpdu, msg.header, msg.mti) == ("6000009733", "602200000000", "0800")
    assert msg.fields == {
        "11": "021806",
        "41": "20121206",
        "42": "SpecRoute121206",
        "60": "00000001001",
        "63": "003",
    }
    assert parse_f60(msg["60"]) == F60("00", "000001", "001")
    assert terminal_kind("0800", None, "00", "001") is None
    assert frame(encode_terminal(msg)) == J8583_SIGN_ON


def test_real_sign_on_and_reply_with_working_keys_decode():
    req = decode_terminal(HEAD + WHTY_SIGN_ON_BODY)
    assert req.fields == {"11": "000016", "41": "90361748", "42": "923011753991695", "60": "00000001004", "63": "01 "}
    assert terminal_kind(req.mti, None, "00", parse_f60(req["60"]).network_code) is Kind.SIGN_ON

    reply = decode_terminal(HEAD + WHTY_SIGN_ON_REPLY_BODY)
    assert reply.mti == "0810"
    assert {k: v for k, v in reply.fields.items() if k != "62"} == {
        "11": "000086",
        "12": "132805",
        "13": "0418",
        "32": "00094500",
        "37": "180418132805",
        "39": "00",
        "41": "32901240",
        "42": "329012400000001",
        "60": "00000001005",
    }
    assert len(bytes.fromhex(reply["62"])) == 104  # 60.3 005: a key layout posnet does not use
    assert encode_terminal(Message(reply.mti, dict(reply.fields), tpdu=TPDU, header=HEADER)) == HEAD + WHTY_SIGN_ON_REPLY_BODY


def test_real_sale_reply_decodes_byte_for_byte():
    msg = decode_terminal(HEAD + bytes.fromhex("0210") + SOLOICESKY_SALE_REPLY_FROM_BITMAP)
    assert msg.fields == {
        "2": "6013822000594988787",
        "3": "000000",
        "4": "000000000001",
        "11": "000135",
        "12": "112604",
        "13": "1031",
        "14": "4912",
        "15": "1231",
        "25": "00",
        "32": "12345678",
        "37": "000000004808",
        "38": "002098",
        "39": "00",
        "41": "12345678",
        "42": "123456789012345",
        "44": "8888888888866666666666",
        "49": "156",
        "53": "0610000000000000",
        "60": "22000049000501",
        "63": "CUP",
        "64": "3343333430354239",
    }


def test_real_chip_sale_with_card_sequence_number_decodes():
    # Real terminals send F23 (card sequence number, n3) right-aligned: 00 01 for 001.
    msg = decode_terminal(HEAD + WHTY_CHIP_SALE_BODY)
    assert msg["23"] == "001"
    assert msg["22"] == "071"  # contactless, PIN entered: right-padded as everywhere else
    assert msg["35"] == "6217857600008050804D23082201000082300"
    assert msg["60"] == "220000010006"
    assert msg["55"].startswith("9F2608")
    assert encode_terminal(Message(msg.mti, dict(msg.fields), tpdu=TPDU, header=HEADER)) == HEAD + WHTY_CHIP_SALE_BODY


@pytest.mark.parametrize("value, data", [("001", "0001"), ("123", "0123"), ("999", "0999")])
def test_card_sequence_number_is_right_aligned(value, data):
    body = encode_terminal(Message("0200", {"22": "051", "23": value}))
    assert body.endswith(bytes.fromhex("0510" + data))  # F22 right-padded, F23 left-padded
    assert decode_terminal(body)["23"] == value


def test_card_sequence_number_with_a_pad_nibble_other_than_0_is_refused():
    body = encode_terminal(Message("0200", {"23": "001"}))
    assert decode_terminal(body[:-2] + bytes.fromhex("0010"))["23"] == "010"  # 00 10 is 010, not 001
    with pytest.raises(WireError, match="^field 23: Field data is 4 nibbles, expecting 3 at position 21$"):
        decode_terminal(body[:-2] + bytes.fromhex("1001"))
