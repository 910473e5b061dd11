"""The host legs (acquirer <-> switch <-> issuer): posnet's own ISO 8583:1987
dialect. ASCII MTI, numbers and length prefixes, binary bitmaps (a secondary
one as soon as a field above 64 is present), binary PIN block and MAC, GBK
merchant names. The MAC is F64, or F128 when the secondary bitmap is there.
"""

from __future__ import annotations

import pytest

from posnet.wire import Message, WireError, decode_host, encode_host
from posnet.wire.codes import Kind, host_kind
from posnet.wire.fields import OriginalData, build_balance, parse_f90

PAN = "6222020000000001"
ACQUIRER = "48020000"
ISSUER = "01020000"
MERCHANT_NAME = "posnet 测试商户"


def fixed_mac(data: bytes) -> bytes:
    return bytes.fromhex("0123456789ABCDEF")


def sale_fields(**extra: str) -> dict[str, str]:
    fields = {
        "2": PAN,
        "3": "000000",
        "4": "000000008800",
        "7": "1124020000",
        "11": "000001",
        "12": "100000",
        "13": "1124",
        "14": "3012",
        "18": "5411",
        "22": "021",
        "25": "00",
        "32": ACQUIRER,
        "33": ACQUIRER,
        "35": "6222020000000001=30122010000000000",
        "37": "000000000002",
        "41": "10000001",
        "42": "898310148160001",
        "43": MERCHANT_NAME,
        "49": "156",
        "52": "FE35BB392F4D81B5",
        "53": "2600000000000000",
        "60": "000001000002",
    }
    fields.update(extra)
    return fields


SALE_ORIGINAL = OriginalData("0200", "000001", "1124020000", ACQUIRER)

# (name, MTI, fields, MAC field, kind)
HOST_MESSAGES = [
    ("sale, acquirer to switch", "0200", sale_fields(), "64", Kind.SALE),
    ("sale, switch to issuer", "0200", sale_fields(**{"100": ISSUER}), "128", Kind.SALE),
    ("inquiry", "0200", sale_fields(**{"3": "310000"}), "64", Kind.INQUIRY),
    (
        "inquiry reply",
        "0210",
        {"2": PAN, "3": "310000", "7": "1124020000", "11": "000001", "32": ACQUIRER, "39": "00", "54": build_balance(991200), "100": ISSUER},
        "128",
        None,
    ),
    (
        "sale reply",
        "0210",
        {
            "2": PAN,
            "3": "000000",
            "4": "000000008800",
            "7": "1124020000",
            "11": "000001",
            "32": ACQUIRER,
            "37": "000000000002",
            "38": "000001",
            "39": "00",
            "41": "10000001",
            "42": "898310148160001",
            "49": "156",
            "100": ISSUER,
        },
        "128",
        None,
    ),
    ("void", "0200", sale_fields(**{"3": "200000", "11": "000002", "90": SALE_ORIGINAL.encode()}), "128", Kind.VOID),
    ("refund", "0220", sale_fields(**{"3": "200000", "11": "000003", "90": SALE_ORIGINAL.encode()}), "128", Kind.REFUND),
    (
        "reversal",
        "0400",
        {
            "2": PAN,
            "3": "000000",
            "4": "000000008800",
            "7": "1124020000",
            "11": "000001",
            "32": ACQUIRER,
            "37": "000000000002",
            "39": "06",
            "41": "10000001",
            "42": "898310148160001",
            "49": "156",
            "90": SALE_ORIGINAL.encode(),
        },
        "128",
        Kind.REVERSAL,
    ),
    ("repeat reversal", "0401", {"7": "1124020000", "11": "000001", "32": ACQUIRER, "90": SALE_ORIGINAL.encode()}, "128", Kind.REVERSAL),
    ("reversal reply", "0410", {"7": "1124020000", "11": "000001", "32": ACQUIRER, "39": "00", "100": ISSUER}, "128", None),
    ("echo", "0800", {"7": "1124020000", "11": "000001", "70": "301", "100": ISSUER}, "128", Kind.ECHO),
]


@pytest.mark.parametrize("name, mti, fields, mac_field, kind", HOST_MESSAGES, ids=[row[0] for row in HOST_MESSAGES])
def test_round_trip_of_host_messages(name, mti, fields, mac_field, kind):
    msg = Message(mti, dict(fields))
    assert msg.mac_field == mac_field
    body = encode_host(msg, mac=fixed_mac)

    back = decode_host(body)

    assert back.mti == mti
    assert back.fields == {**fields, mac_field: "0123456789ABCDEF"}
    assert back.mac_field == mac_field and back.mac_input() == body[:-8]
    assert body.startswith(mti.encode("ascii"))
    secondary = any(int(k) > 64 for k in fields)
    assert bool(body[4] & 0x80) == secondary, "bit 1 announces the secondary bitmap"
    assert encode_host(Message(back.mti, dict(back.fields))) == body
    assert host_kind(mti, back.get(3)) is kind


def test_host_echo_bytes_are_ascii_with_a_binary_secondary_bitmap():
    body = encode_host(Message("0800", {"7": "1124020000", "11": "000001", "70": "301", "100": ISSUER}), mac=fixed_mac)
    assert body == (
        b"0800"
        + bytes.fromhex("8220000000000000")  # bit 1 (secondary bitmap), 7, 11
        + bytes.fromhex("0400000010000001")  # 70, 100, 128
        + b"1124020000"  # F7 n10 MMDDhhmmss
        + b"000001"  # F11 n6
        + b"301"  # F70 n3: echo
        + b"08" + b"01020000"  # F100 LL: 8 digits
        + bytes.fromhex("0123456789ABCDEF")  # F128 b8
    )


def test_merchant_name_travels_in_gbk_with_a_byte_count_prefix():
    body = encode_host(Message("0200", {"3": "000000", "43": MERCHANT_NAME}))
    encoded = MERCHANT_NAME.encode("gbk")
    assert len(encoded) == 15  # 7 ASCII bytes + 4 characters of 2 bytes
    assert body.endswith(b"15" + encoded)
    assert decode_host(body)["43"] == MERCHANT_NAME


def test_lll_ascii_prefix_of_the_balance():
    balance = build_balance(-1234)
    body = encode_host(Message("0210", {"39": "00", "54": balance}))
    assert body.endswith(b"020" + balance.encode("ascii"))


def test_track_2_keeps_its_equals_sign_on_the_host_legs():
    body = encode_host(Message("0200", {"35": "6222020000000001=30122010000000000"}))
    assert body.endswith(b"34" + b"6222020000000001=30122010000000000")
    assert decode_host(body)["35"] == "6222020000000001=30122010000000000"


def test_f90_carries_the_natural_key_of_the_original():
    body = encode_host(Message("0400", {"11": "000009", "90": SALE_ORIGINAL.encode()}), mac=fixed_mac)
    original = parse_f90(decode_host(body)["90"])
    assert original == OriginalData("0200", "000001", "1124020000", "00048020000", "00000000000")
    assert original.key == "48020000:1124020000:000001"


def test_secondary_bitmap_only_fields_round_trip_without_a_mac():
    body = encode_host(Message("0800", {"70": "001"}))
    assert body == b"0800" + bytes.fromhex("8000000000000000") + bytes.fromhex("0400000000000000") + b"001"
    assert decode_host(body).fields == {"70": "001"}


def test_a_field_the_host_spec_lacks_is_refused_on_encode():
    with pytest.raises(WireError, match="^field 5: not in this spec$"):
        encode_host(Message("0200", {"5": "000000000100"}))

