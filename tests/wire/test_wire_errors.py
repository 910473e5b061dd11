"""Broken frames: every error is a WireError whose text names the field and
the byte position in the frame (TPDU and header included on the terminal
leg), carries the MTI and the fields that decoded and validate (never the one
that failed), and never echoes card or PIN data. Encoding refuses what
decoding refuses.
"""

from __future__ import annotations

import pytest

from posnet.wire import Message, WireError, decode_host, decode_terminal, encode_host, encode_terminal
from posnet.wire.specs import TERMINAL_FIELDS

PAN = "6222020000000001"
TRACK2_DIGITS = "30122010000000000"  # the discretionary part of track 2
PIN_BLOCK = "54C4406EC8B0BC42"
TID, MID = "10000001", "898310148160001"

SALE_FIELDS = {
    "2": PAN,
    "3": "000000",
    "4": "000000008800",
    "11": "000002",
    "14": "3012",
    "22": "021",
    "25": "00",
    "26": "12",
    "35": PAN + "D" + TRACK2_DIGITS,
    "41": TID,
    "42": MID,
    "49": "156",
    "52": PIN_BLOCK,
    "53": "2600000000000000",
    "60": "22000001000",
}
# Byte offsets in SALE (no length prefix): TPDU 0, header 5, MTI 11, bitmap 13,
# F2 21 (LL at 21, data 22), F3 30, F4 33, F11 39, F14 42, F22 44, F25 46,
# F26 47, F35 48 (data 49), F41 66, F42 74, F49 89, F52 92, F53 100, F60 108, F64 116; 124 bytes.
SALE = encode_terminal(Message("0200", dict(SALE_FIELDS), tpdu="6000030000", header="602200000000"), mac=lambda d: b"ABCD1234")
# F11 21, F41 24, F42 32, F60 47, F63 55 (LLL at 55, data 57); 60 bytes.
SIGN_ON = encode_terminal(
    Message("0800", {"11": "000001", "41": TID, "42": MID, "60": "00000001003", "63": "01 "}, tpdu="6000030000", header="602200000000")
)

HOST_FIELDS = {
    "2": PAN,
    "3": "000000",
    "4": "000000008800",
    "7": "1124020000",
    "11": "000001",
    "32": "48020000",
    "35": PAN + "=" + TRACK2_DIGITS,
    "37": "000000000002",
    "41": TID,
    "42": MID,
    "43": "posnet 测试商户",
    "49": "156",
    "52": PIN_BLOCK,
}
# MTI 0, bitmap 4, F2 12 (LL 12, data 14), F3 30, F4 36, F7 48, F11 58, F32 64, F35 74 (data 76),
# F37 110, F41 122, F42 130, F43 145 (data 147), F49 162, F52 165, F64 173; 181 bytes.
HOST = encode_host(Message("0200", dict(HOST_FIELDS)), mac=lambda d: bytes(8))
ECHO = encode_host(Message("0800", {"7": "1124020000", "11": "000001", "70": "301", "100": "01020000"}), mac=lambda d: bytes(8))


def patch(frame: bytes, offset: int, data: bytes) -> bytes:
    return frame[:offset] + data + frame[offset + len(data) :]


def set_bit(frame: bytes, offset: int, mask: int) -> bytes:
    return patch(frame, offset, bytes([frame[offset] | mask]))


# (case, frame, message, field, position)
TERMINAL_ERRORS = [
    ("truncated F4", SALE[:36], "field 4: Field data is 6 nibbles, expecting 12 at position 33", "4", 33),
    ("non-numeric F4", patch(SALE, 37, bytes.fromhex("AB12")), "field 4: not numeric ('00000000AB12') at position 33", "4", 33),
    ("short frame", SALE[:20], "frame of 20 bytes is shorter than TPDU, header, MTI and bitmap", None, None),
    ("bad TPDU id", patch(SALE, 0, b"\x61"), "TPDU: id 61 is not 60 at position 0", "tpdu", 0),
    ("non-numeric MTI", patch(SALE, 11, bytes.fromhex("0A00")), "field MTI: not numeric ('0A00') at position 11", "t", 11),
    ("PAN longer than 19", patch(SALE, 21, b"\x20"), "field 2: Field data is 20 nibbles, larger than maximum 19 at position 21", "2", 21),
    ("length not BCD", patch(SALE, 21, b"\x1a"), "field 2: Failed to decode field length, invalid BCD data at position 21", "2", 21),
    ("PAN with a hex digit", patch(SALE, 22, b"\xa2"), "field 2: not numeric ('<16 characters>') at position 21", "2", 21),
    ("track 2 with a hex digit", patch(SALE, 49, b"\xa2"), "field 35: not numeric ('<34 characters>') at position 48", "35", 48),
    ("pad nibble not 0", patch(SALE, 44, bytes.fromhex("021F")), "field 22: Field data is 4 nibbles, expecting 3 at position 44", "22", 44),
    ("byte after the MAC", SALE + b"\x00", "field 64: Extra data after last field at position 124", "64", 124),
    ("truncated F11", SALE[:41], "field 11: Field data is 4 nibbles, expecting 6 at position 39", "11", 39),
    ("F63 not GBK", patch(SIGN_ON, 57, b"\xff\xff"), "field 63: Failed to decode field, invalid data at position 57", "63", 57),
    ("LLL prefix cut", SIGN_ON[:56], "field 63: Field length is 1 bytes wide, expecting 2 at position 55", "63", 55),
    ("bit for a field the spec lacks", set_bit(SALE, 13, 0x08), "field 5: not in this spec (bitmap at position 13)", "5", 13),
]

HOST_ERRORS = [
    ("short frame", HOST[:11], "frame of 11 bytes is shorter than MTI and bitmap", None, None),
    ("MTI with a letter", b"02X0" + HOST[4:], "field MTI: not numeric ('02X0') at position 0", "t", 0),
    ("MTI not ASCII", b"\x82\x00\x00\x00" + HOST[4:], "field MTI: Failed to decode field, invalid data at position 0", "t", 0),
    ("LL prefix not digits", patch(HOST, 12, b"1X"), "field 2: Failed to decode field length, non-numeric data at position 12", "2", 12),
    ("non-numeric F4", patch(HOST, 44, b"AB12"), "field 4: not numeric ('00000000AB12') at position 36", "4", 36),
    ("PAN with a letter", patch(HOST, 14, b"A"), "field 2: not numeric ('<16 characters>') at position 12", "2", 12),
    ("track 2 with a letter", patch(HOST, 76, b"A"), "field 35: not numeric ('<34 characters>') at position 74", "35", 74),
    ("merchant name not GBK", patch(HOST, 147, b"\xff\xff"), "field 43: Failed to decode field, invalid data at position 147", "43", 147),
    ("secondary bitmap cut", ECHO[:15], "field secondary bitmap: Field data is 3 bytes, expecting 8 at position 12", "1", 12),
    ("byte after the MAC", HOST + b"0", "field 64: Extra data after last field at position 181", "64", 181),
    ("LL prefix with a sign", patch(HOST, 64, b"+8"), "field 32: length prefix b'+8' is not digits at position 64", "32", 64),
    ("bit for a field the spec lacks", set_bit(HOST, 4, 0x08), "field 5: not in this spec (bitmap at position 4)", "5", 4),
    (
        "bit for a field the spec lacks, secondary bitmap",
        set_bit(ECHO, 12, 0x08),  # bit 69
        "field 69: not in this spec (bitmap at position 4)",
        "69",
        4,
    ),
]


@pytest.mark.parametrize("case, data, message, field, position", TERMINAL_ERRORS, ids=[c[0] for c in TERMINAL_ERRORS])
def test_terminal_errors_name_the_field_and_position(case, data, message, field, position):
    with pytest.raises(WireError) as info:
        decode_terminal(data)
    e = info.value
    assert (str(e), e.field, e.position) == (message, field, position)
    assert_no_secrets(str(e))


@pytest.mark.parametrize("case, data, message, field, position", HOST_ERRORS, ids=[c[0] for c in HOST_ERRORS])
def test_host_errors_name_the_field_and_position(case, data, message, field, position):
    with pytest.raises(WireError) as info:
        decode_host(data)
    e = info.value
    assert (str(e), e.field, e.position) == (message, field, position)
    assert_no_secrets(str(e))


def assert_no_secrets(text: str) -> None:
    for secret in (PAN, TRACK2_DIGITS, PIN_BLOCK, PIN_BLOCK.lower()):
        assert secret not in text


def test_a_bit_for_a_field_the_spec_lacks_gives_the_bitmaps_position_and_the_mti():
    # Named before any field is read: the position is the bitmap's, and partial holds the MTI
    # alone, enough for the acquirer to answer 30.
    with pytest.raises(WireError) as info:
        decode_terminal(set_bit(SALE, 13, 0x08))  # bit 5 of the primary bitmap
    e = info.value
    assert (str(e), e.field, e.position, e.partial) == ("field 5: not in this spec (bitmap at position 13)", "5", 13, {"t": "0200"})
    with pytest.raises(WireError) as info:
        decode_host(set_bit(HOST, 4, 0x08))
    e = info.value
    assert (str(e), e.field, e.position, e.partial) == ("field 5: not in this spec (bitmap at position 4)", "5", 4, {"t": "0200"})


def test_a_bit_for_a_field_the_spec_lacks_under_a_bad_mti_leaves_partial_empty():
    with pytest.raises(WireError, match=r"^field 5: not in this spec \(bitmap at position 13\)$") as info:
        decode_terminal(set_bit(patch(SALE, 11, bytes.fromhex("0A00")), 13, 0x08))
    assert info.value.partial == {}


# -- WireError.partial ----------------------------------------------------------


def test_partial_carries_the_mti_and_the_fields_before_a_truncation():
    with pytest.raises(WireError) as info:
        decode_terminal(SALE[:41])  # F11 cut short
    partial = info.value.partial
    assert {k: partial[k] for k in ("t", "2", "3", "4")} == {"t": "0200", "2": PAN, "3": "000000", "4": "000000008800"}
    assert not {"14", "22", "35", "41", "64"} & set(partial)


def test_partial_of_a_validation_error_leaves_out_the_bad_field():
    with pytest.raises(WireError) as info:
        decode_terminal(patch(SALE, 37, bytes.fromhex("AB12")))
    partial = info.value.partial
    assert partial["t"] == "0200" and partial["3"] == "000000" and partial["11"] == "000002"
    assert "4" not in partial


def test_partial_of_a_host_error_carries_the_mti():
    with pytest.raises(WireError) as info:
        decode_host(patch(HOST, 44, b"AB12"))
    assert info.value.partial["t"] == "0200" and "4" not in info.value.partial


@pytest.mark.parametrize(
    "data, field",
    [
        (SALE[:41], "11"),  # cut short: pyiso8583 had '' for it
        (SALE[:36], "4"),
        (patch(SALE, 44, bytes.fromhex("021F")), "22"),  # a bad pad: pyiso8583 had the raw nibbles '021F'
    ],
    ids=["F11 cut", "F4 cut", "F22 pad nibble"],
)
def test_partial_leaves_out_the_field_that_failed_to_decode(data, field):
    with pytest.raises(WireError) as info:
        decode_terminal(data)
    assert info.value.field == field
    assert field not in info.value.partial
    assert info.value.partial["t"] == "0200"


def follows_the_terminal_spec(key: str, value: str) -> bool:
    if key == "t":
        return len(value) == 4 and value.isdigit()
    kind = TERMINAL_FIELDS[int(key)][0]
    if kind in ("n", "nl"):
        return value == "" or value.isdigit()  # an empty variable field is allowed by the format
    if kind == "z":
        return all(c in "0123456789D" for c in value)
    return True


@pytest.mark.parametrize(
    "data, present, absent",
    [
        # F4 not numeric, F35 cut short: the decoder fails on F35, F4 is checked all the same.
        (patch(SALE, 37, bytes.fromhex("AB12"))[:60], {"t": "0200", "2": PAN, "3": "000000", "11": "000002"}, {"4", "35"}),
        # F4 and F11 not numeric: validation stops at F4, F11 is left out too.
        (patch(patch(SALE, 37, bytes.fromhex("AB12")), 40, bytes.fromhex("AB12")), {"t": "0200", "3": "000000", "41": TID}, {"4", "11"}),
        # MTI 0A00, F35 cut short: no MTI to frame a reply with.
        (patch(SALE, 11, bytes.fromhex("0A00"))[:60], {"3": "000000", "4": "000000008800", "11": "000002"}, {"t", "35"}),
    ],
    ids=["decode error after a bad F4", "validation error before a bad F11", "bad MTI then a decode error"],
)
def test_partial_holds_only_values_that_follow_the_spec(data, present, absent):
    with pytest.raises(WireError) as info:
        decode_terminal(data)
    partial = info.value.partial
    assert all(follows_the_terminal_spec(k, v) for k, v in partial.items()), partial
    assert {k: partial.get(k) for k in present} == present
    assert not absent & set(partial), partial


# -- encoding refuses what decoding refuses ------------------------------------


@pytest.mark.parametrize(
    "mti, fields, message, field",
    [
        ("0210", {"4": "00000000AB12"}, "field 4: not numeric ('00000000AB12')", "4"),
        ("0A10", {"39": "30"}, "field MTI: '0A10' is not four digits", "t"),
        ("021", {"39": "30"}, "field MTI: '021' is not four digits", "t"),
        ("0210", {"11": "00AB12"}, "field 11: not numeric ('00AB12')", "11"),
        ("0200", {"35": "6222020000000001DX0122010000000000"}, "field 35: not numeric ('<34 characters>')", "35"),
    ],
    ids=["F4 with hex letters", "MTI with a letter", "MTI of 3 digits", "F11 with hex letters", "track 2 with a letter"],
)
def test_terminal_encode_refuses_non_numeric_data(mti, fields, message, field):
    # BCD is written with bytes.fromhex: without this check, hex letters would encode silently.
    with pytest.raises(WireError) as info:
        encode_terminal(Message(mti, fields))
    assert (str(info.value), info.value.field) == (message, field)
    assert_no_secrets(str(info.value))


@pytest.mark.parametrize(
    "mti, fields, message",
    [
        ("0200", {"4": "00000000AB12"}, "field 4: not numeric ('00000000AB12')"),
        ("02X0", {"4": "000000008800"}, "field MTI: '02X0' is not four digits"),
        ("0200", {"2": PAN[:-1] + "A"}, "field 2: not numeric ('<16 characters>')"),
        ("0200", {"35": PAN + "=3012201A"}, "field 35: not numeric ('<25 characters>')"),
    ],
    ids=["F4 with hex letters", "MTI with a letter", "PAN with a letter", "track 2 with a letter"],
)
def test_host_encode_refuses_non_numeric_data(mti, fields, message):
    with pytest.raises(WireError) as info:
        encode_host(Message(mti, fields))
    assert str(info.value) == message
    assert_no_secrets(str(info.value))


def test_encode_names_the_field_that_does_not_fit():
    with pytest.raises(WireError, match="^field 4: Field data is 13 nibbles, expecting 12"):
        encode_terminal(Message("0200", {"4": "0000000088000"}))
    with pytest.raises(WireError, match="^field 2: Field data is 20 nibbles, larger than maximum 19"):
        encode_terminal(Message("0200", {"2": "6" * 20}))
    with pytest.raises(WireError, match="^field 35: Failed to encode field, non-hex data"):
        encode_terminal(Message("0200", {"35": PAN + "=" + TRACK2_DIGITS}))  # the terminal leg writes D


# -- length prefixes on the host legs -------------------------------------------


@pytest.mark.parametrize("prefix", [b"+9", b" 9", b"9 "])
def test_host_length_prefix_must_be_digits(prefix):
    # pyiso8583 reads ASCII lengths with int(), which takes '+9', ' 9' and '9 '; such a frame
    # would re-encode to other bytes, so the codec refuses it.
    data = b"0200" + bytes.fromhex("4000000000000000") + prefix + b"622202000"
    with pytest.raises(WireError) as info:
        decode_host(data)
    e = info.value
    assert (str(e), e.field, e.position) == (f"field 2: length prefix {prefix!r} is not digits at position 12", "2", 12)
    assert e.partial == {"t": "0200"}


def test_host_lll_prefix_must_be_digits():
    balance = "1002156C000000991200"
    body = encode_host(Message("0210", {"39": "00", "54": balance}))
    at = body.index(b"020" + balance.encode("ascii"))
    with pytest.raises(WireError) as info:
        decode_host(patch(body, at, b"+20"))
    e = info.value
    assert (str(e), e.field, e.position) == (f"field 54: length prefix b'+20' is not digits at position {at}", "54", at)
    assert e.partial == {"t": "0210", "39": "00"}
