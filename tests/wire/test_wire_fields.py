"""The structured fields (F35, F48, F54, F60, F61, F62, F90), reply MTIs and
the message-set classification of DOMAIN.md §2."""

from __future__ import annotations

import pytest

from posnet.wire import RC, WireError, response_mti, response_text
from posnet.wire.codes import Kind, host_kind, is_request, terminal_kind
from posnet.wire.fields import (
    F60,
    F61,
    OriginalData,
    Totals,
    Track2,
    WorkingKeys,
    build_balance,
    build_settlement_totals,
    parse_balance,
    parse_f60,
    parse_f61,
    parse_f62,
    parse_f90,
    parse_settlement_totals,
    parse_track2,
    track2_for_host,
    track2_for_terminal,
)

# -- F54 balance ----------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, text",
    [
        (991200, "1002156C000000991200"),
        (0, "1002156C000000000000"),
        (-1234, "1002156D000000001234"),  # an overdrawn account: sign D
        (999_999_999_999, "1002156C999999999999"),
    ],
)
def test_balance_builds_and_parses_with_its_sign(amount, text):
    assert build_balance(amount) == text
    assert parse_balance(text) == (amount, "156")


def test_balance_keeps_account_type_amount_type_and_currency():
    text = build_balance(500, currency="840", account_type="30", amount_type="01")
    assert text == "3001840C000000000500"
    assert parse_balance(text) == (500, "840")


@pytest.mark.parametrize("text", ["1002156C00000099120", "1002156X000000991200", "1002156C0000009912AB", ""])
def test_a_malformed_balance_names_field_54(text):
    with pytest.raises(WireError, match="^field 54: balance ") as info:
        parse_balance(text)
    assert info.value.field == "54"


# -- F60 ------------------------------------------------------------------------


def test_f60_of_a_sign_on_and_of_a_sale():
    assert F60("00", "000001", "003").encode() == "00000001003"
    assert parse_f60("00000001003") == F60("00", "000001", "003")
    assert parse_f60("22000001000") == F60("22", "000001", "000")
    assert parse_f60("220000010006") == F60("22", "000001", "000", "6")  # 60.4 as a real chip terminal sends it


@pytest.mark.parametrize("value, digits", [("22000001", 8), ("", 0), (None, 0)])
def test_a_short_f60_names_field_60(value, digits):
    with pytest.raises(WireError, match=f"^field 60: {digits} digits, expecting at least 11 "):
        parse_f60(value)


# -- F61 ------------------------------------------------------------------------


def test_f61_of_a_void_and_of_a_refund():
    assert F61("000001", "000002").encode() == "000001000002"
    assert parse_f61("000001000002") == F61("000001", "000002", "")
    assert F61("000000", "000000", "1124").encode() == "0000000000001124"
    assert parse_f61("0000000000001124") == F61("000000", "000000", "1124")


@pytest.mark.parametrize("value", [None, "", "00000100000"])
def test_a_short_f61_names_field_61(value):
    with pytest.raises(WireError, match=r"^field 61: expecting original batch \(6\) and trace \(6\)$"):
        parse_f61(value)


# -- F62 working keys -----------------------------------------------------------

PIK, MAK, TDK = bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48))
KCV1, KCV2, KCV3 = b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", b"\x09\x0a\x0b\x0c"


def test_f62_with_pin_and_mac_keys():
    keys = WorkingKeys(PIK, KCV1, MAK, KCV2)
    assert keys.encode() == (PIK + KCV1 + MAK + KCV2).hex().upper()
    assert parse_f62(keys.encode()) == keys


def test_f62_with_a_data_key_too():
    keys = WorkingKeys(PIK, KCV1, MAK, KCV2, TDK, KCV3)
    assert len(bytes.fromhex(keys.encode())) == 60
    assert parse_f62(keys.encode()) == keys


@pytest.mark.parametrize("size", [0, 20, 39, 41, 59, 61, 80, 104])
def test_f62_of_any_other_size_names_field_62(size):
    with pytest.raises(WireError, match=f"^field 62: {size} bytes, expecting 40 or 60$"):
        parse_f62(bytes(size).hex())


def test_f62_missing_names_field_62():
    with pytest.raises(WireError, match="^field 62: 0 bytes"):
        parse_f62(None)


@pytest.mark.parametrize("value", ["XY" * 40, "0" * 81, "0" * 79 + " "], ids=["letters", "odd length", "a space"])
def test_f62_that_is_not_hex_names_field_62(value):
    with pytest.raises(WireError, match="^field 62: not hexadecimal key material$") as info:
        parse_f62(value)
    assert info.value.field == "62"


# -- F48 settlement totals ------------------------------------------------------


def test_settlement_totals_for_rmb_cards():
    domestic = Totals(debit_amount=15466, debit_count=2, credit_amount=2000, credit_count=1)
    text = build_settlement_totals(domestic)
    assert text == "000000015466002000000002000001" + "0" + "0" * 30 + "0"
    assert len(text) == 62
    assert parse_settlement_totals(text) == (domestic, Totals())


def test_settlement_totals_with_foreign_cards():
    domestic, foreign = Totals(100, 1), Totals(0, 0, 250, 2)
    assert parse_settlement_totals(build_settlement_totals(domestic, foreign)) == (domestic, foreign)


def test_settlement_totals_of_rmb_cards_only_parse_without_the_foreign_half():
    assert parse_settlement_totals("000000000100001000000000000000" + "0") == (Totals(100, 1), Totals())


@pytest.mark.parametrize("value", [None, "", "0" * 30, "0" * 30 + "X"])
def test_malformed_settlement_totals_name_field_48(value):
    with pytest.raises(WireError, match=r"^field 48: settlement totals are 31 digits per card class$"):
        parse_settlement_totals(value)


# -- F90 original data elements -------------------------------------------------


def test_f90_layout_and_natural_key():
    original = OriginalData("0200", "000123", "1124020000", "48020000")
    text = original.encode()
    assert text == "0200" + "000123" + "1124020000" + "00048020000" + "00000000000"
    assert len(text) == 42
    parsed = parse_f90(text)
    assert parsed == OriginalData("0200", "000123", "1124020000", "00048020000", "00000000000")
    assert parsed.key == original.key == "48020000:1124020000:000123"


@pytest.mark.parametrize("value", [None, "", "0" * 41, "0" * 43])
def test_f90_of_the_wrong_length_names_field_90(value):
    with pytest.raises(WireError, match="^field 90: expecting 42 digits of original data elements$"):
        parse_f90(value)


# -- F35 track 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["6222020000000001=30122010000000000", "6222020000000001D30122010000000000", "6222020000000000019D3012201"],
)
def test_track2_with_either_separator(value):
    track = parse_track2(value)
    assert track.pan == value.replace("D", "=").split("=")[0]
    assert (track.expiry, track.service_code) == ("3012", "201")


def test_track2_encodes_with_the_separator_of_each_leg():
    track = Track2("6222020000000001", "3012", "201")
    assert track.encode() == "6222020000000001=30122010000000000"
    assert track.encode("D") == "6222020000000001D30122010000000000"
    assert track2_for_terminal(track.encode()) == track.encode("D")
    assert track2_for_host(track.encode("D")) == track.encode()


@pytest.mark.parametrize(
    "value, message",
    [
        ("622202000000000130122010000000000", "field 35: no separator in track 2"),
        ("62220200000=30122010000000000", "field 35: track 2 is not PAN, separator, expiry and service code"),
        ("6222020000000001=30122", "field 35: track 2 is not PAN, separator, expiry and service code"),
        ("62220200000000012345=3012201", "field 35: track 2 is not PAN, separator, expiry and service code"),
    ],
)
def test_malformed_track2_names_field_35_without_echoing_it(value, message):
    with pytest.raises(WireError) as info:
        parse_track2(value)
    assert str(info.value) == message and info.value.field == "35"


# -- reply MTI ------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_mti, reply_mti",
    [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0201", "0210"),
        ("0220", "0230"),
        ("0221", "0230"),
        ("0320", "0330"),
        ("0400", "0410"),
        ("0401", "0410"),
        ("0420", "0430"),
        ("0421", "0430"),
        ("0500", "0510"),
        ("0800", "0810"),
        ("0820", "0830"),
    ],
)
def test_response_mti_is_the_request_plus_ten(request_mti, reply_mti):
    assert is_request(request_mti)
    assert response_mti(request_mti) == reply_mti


# Replies, acknowledgements, MTIs with no reply (third digit 9, fourth beyond 1) and what is not an MTI.
NOT_REQUESTS = ["0210", "0410", "0810", "0830", "0230", "0290", "0190", "9999", "0202", "0205", "02X0", "020", "02000", ""]


@pytest.mark.parametrize("mti", NOT_REQUESTS)
def test_an_mti_that_is_not_a_request_has_no_reply_mti(mti):
    assert not is_request(mti)
    with pytest.raises(ValueError, match="is not a request: no reply MTI$"):
        response_mti(mti)


def test_response_text_in_chinese_and_english():
    assert response_text(RC.APPROVED) == "交易成功 APPROVED (00)"
    assert response_text(RC.MAC_ERROR) == "MAC校验错,请重新签到 MAC ERROR, SIGN ON AGAIN (A0)"
    assert response_text("Z9") == "交易失败 DECLINED (Z9)"


# -- the message set ------------------------------------------------------------

# Every row of DOMAIN.md §2 "Message set": (transaction, MTI, F3, 60.1, 60.3, kind; None when posnet does not support it).
TERMINAL_MESSAGE_SET = [
    ("sign-on, double-length keys", "0800", None, "00", "003", Kind.SIGN_ON),
    ("sign-on, with a data key", "0800", None, "00", "004", Kind.SIGN_ON),
    ("sign-off", "0820", None, "00", "002", Kind.SIGN_OFF),
    ("echo test", "0820", None, "00", "301", Kind.ECHO),
    ("balance inquiry", "0200", "310000", "01", "000", Kind.INQUIRY),
    ("sale", "0200", "000000", "22", "000", Kind.SALE),
    ("void", "0200", "200000", "23", "000", Kind.VOID),
    ("refund", "0220", "200000", "25", "000", Kind.REFUND),
    ("pre-auth", "0100", "030000", "10", "000", None),
    ("pre-auth completion", "0200", "000000", "20", "000", None),
    ("reversal of a sale", "0400", "000000", "22", "000", Kind.REVERSAL),
    ("reversal of a void", "0400", "200000", "23", "000", Kind.REVERSAL),
    ("repeated reversal", "0401", "000000", "22", "000", Kind.REVERSAL),
    ("settlement", "0500", None, "00", "201", Kind.SETTLEMENT),
    ("batch upload", "0320", None, "00", "201", Kind.BATCH_UPLOAD),
    ("end of batch upload", "0320", None, "00", "202", Kind.BATCH_UPLOAD),
    # What the table does not list is not supported.
    ("sign-on, single-length key", "0800", None, "00", "001", None),
    ("0820 of no known function", "0820", None, "00", "000", None),
    ("sale with the void's type", "0200", "000000", "23", "000", None),
    ("refund sent as 0200", "0200", "200000", "25", "000", None),
    ("a reply", "0210", "000000", "22", "000", None),
]


@pytest.mark.parametrize("row", TERMINAL_MESSAGE_SET, ids=[r[0] for r in TERMINAL_MESSAGE_SET])
def test_terminal_kind_of_each_row_of_the_message_set(row):
    _, mti, f3, tx_type, network_code, kind = row
    assert terminal_kind(mti, f3, tx_type, network_code) is kind


HOST_MESSAGE_SET = [
    ("0200", "310000", Kind.INQUIRY),
    ("0200", "000000", Kind.SALE),
    ("0200", "200000", Kind.VOID),
    ("0220", "200000", Kind.REFUND),
    ("0400", "000000", Kind.REVERSAL),
    ("0401", "000000", Kind.REVERSAL),
    ("0420", "000000", Kind.REVERSAL),
    ("0421", None, Kind.REVERSAL),
    ("0800", None, Kind.ECHO),  # network management; sign-on (F70 001) is answered like an echo
    ("0820", None, Kind.ECHO),
    ("0100", "030000", None),
    ("0220", "000000", None),
    ("0210", "000000", None),
    ("0200", None, None),
]


@pytest.mark.parametrize("mti, f3, kind", HOST_MESSAGE_SET)
def test_host_kind(mti, f3, kind):
    assert host_kind(mti, f3) is kind
