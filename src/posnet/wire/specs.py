"""The two ISO 8583 dialects of the network, declared once, as data.

Each row is ``field: (kind, length, max_len, description)``:

- kind ``n`` numeric, ``nl`` numeric right-aligned (left-padded when odd), ``z`` track data (digits and the separator ``D``),
  ``an``/``ans`` text, ``gbk`` text in GBK (Chinese names), ``b`` binary;
- length ``fixed``, ``LL`` or ``LLL``;
- max_len counts digits for ``n``/``z`` and bytes for the rest.

The rows are turned into pyiso8583 specs by :func:`_pyiso_spec`; no other
module knows a field's format.

Terminal leg (CUP POS dialect, DOMAIN.md §2): BCD numbers left-aligned and
right-padded with ``0`` when odd, BCD length prefixes (one byte for LL, two
for LLL), binary bitmap, BCD MTI.

Host legs (acquirer <-> switch <-> issuer): ISO 8583:1987 with ASCII MTI,
numbers and length prefixes, a binary bitmap (secondary bitmap when a field
above 64 is present), binary PIN block and MAC. See docs/wire.md.
"""

from __future__ import annotations

from typing import Any

FieldRow = tuple[str, str, int, str]

TERMINAL_FIELDS: dict[int, FieldRow] = {
    2: ("n", "LL", 19, "Primary account number"),
    3: ("n", "fixed", 6, "Processing code"),
    4: ("n", "fixed", 12, "Amount, transaction (fen)"),
    11: ("n", "fixed", 6, "Trace number (voucher number)"),
    12: ("n", "fixed", 6, "Local time hhmmss"),
    13: ("n", "fixed", 4, "Local date MMDD"),
    14: ("n", "fixed", 4, "Expiry YYMM"),
    15: ("n", "fixed", 4, "Settlement date MMDD"),
    22: ("n", "fixed", 3, "POS entry mode"),
    23: ("nl", "fixed", 3, "Card sequence number (right-aligned: 001 is 00 01)"),
    25: ("n", "fixed", 2, "POS condition code"),
    26: ("n", "fixed", 2, "PIN capture code"),
    32: ("n", "LL", 11, "Acquiring institution"),
    35: ("z", "LL", 37, "Track 2"),
    36: ("z", "LLL", 104, "Track 3"),
    37: ("an", "fixed", 12, "Retrieval reference number"),
    38: ("an", "fixed", 6, "Authorization code"),
    39: ("an", "fixed", 2, "Response code"),
    41: ("ans", "fixed", 8, "Terminal id"),
    42: ("ans", "fixed", 15, "Merchant id"),
    44: ("ans", "LL", 25, "Issuer and acquirer institution codes"),
    48: ("n", "LLL", 322, "Additional data: settlement totals, batch upload"),
    49: ("an", "fixed", 3, "Currency code"),
    52: ("b", "fixed", 8, "PIN block"),
    53: ("n", "fixed", 16, "Security related control information"),
    54: ("ans", "LLL", 20, "Balance"),
    55: ("b", "LLL", 255, "ICC data"),
    60: ("n", "LLL", 17, "Reserved: type, batch, network management code"),
    61: ("n", "LLL", 29, "Original batch, trace, date"),
    62: ("b", "LLL", 512, "Working keys"),
    63: ("gbk", "LLL", 163, "Card organisation and messages"),
    64: ("b", "fixed", 8, "MAC"),
}

HOST_FIELDS: dict[int, FieldRow] = {
    2: ("n", "LL", 19, "Primary account number"),
    3: ("n", "fixed", 6, "Processing code"),
    4: ("n", "fixed", 12, "Amount, transaction (minor units)"),
    7: ("n", "fixed", 10, "Transmission date and time MMDDhhmmss (UTC)"),
    11: ("n", "fixed", 6, "System trace audit number"),
    12: ("n", "fixed", 6, "Local time hhmmss"),
    13: ("n", "fixed", 4, "Local date MMDD"),
    14: ("n", "fixed", 4, "Expiry YYMM"),
    15: ("n", "fixed", 4, "Settlement date MMDD"),
    18: ("n", "fixed", 4, "Merchant category code"),
    22: ("n", "fixed", 3, "POS entry mode"),
    25: ("n", "fixed", 2, "POS condition code"),
    32: ("n", "LL", 11, "Acquiring institution"),
    33: ("n", "LL", 11, "Forwarding institution"),
    35: ("z", "LL", 37, "Track 2"),
    37: ("an", "fixed", 12, "Retrieval reference number"),
    38: ("an", "fixed", 6, "Authorization code"),
    39: ("an", "fixed", 2, "Response code"),
    41: ("ans", "fixed", 8, "Terminal id"),
    42: ("ans", "fixed", 15, "Merchant id"),
    43: ("gbk", "LL", 40, "Merchant name and location"),
    49: ("an", "fixed", 3, "Currency code"),
    52: ("b", "fixed", 8, "PIN block"),
    53: ("n", "fixed", 16, "Security related control information"),
    54: ("ans", "LLL", 120, "Balance"),
    60: ("ans", "LLL", 999, "Private: terminal batch and trace"),
    64: ("b", "fixed", 8, "MAC"),
    70: ("n", "fixed", 3, "Network management code"),
    90: ("n", "fixed", 42, "Original data elements"),
    100: ("n", "LL", 11, "Receiving institution"),
    128: ("b", "fixed", 8, "MAC"),
}

_PREFIX_BYTES_BCD = {"fixed": 0, "LL": 1, "LLL": 2}
_PREFIX_DIGITS_ASCII = {"fixed": 0, "LL": 2, "LLL": 3}


def _pyiso_spec(rows: dict[int, FieldRow], *, bcd: bool) -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = {
        "h": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 0, "desc": "Header"},
        "t": {
            "data_enc": "b" if bcd else "ascii",
            "len_enc": "b",
            "len_type": 0,
            "max_len": 2 if bcd else 4,
            "desc": "Message type",
        },
        "p": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "Primary bitmap"},
        "1": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "Secondary bitmap"},
    }
    for number, (kind, length, max_len, desc) in rows.items():
        field: dict[str, Any] = {"max_len": max_len, "desc": desc}
        if bcd:
            field["len_enc"] = "bcd"
            field["len_type"] = _PREFIX_BYTES_BCD[length]
        else:
            field["len_enc"] = "ascii"
            field["len_type"] = _PREFIX_DIGITS_ASCII[length]
        if kind in ("n", "z") and bcd:
            field.update(data_enc="b", len_count="nibbles", right_pad="0")
        elif kind == "nl" and bcd:
            field.update(data_enc="b", len_count="nibbles", left_pad="0")
        elif kind in ("n", "nl", "z", "an", "ans"):
            field["data_enc"] = "ascii"
        elif kind == "gbk":
            field["data_enc"] = "gbk"
        elif kind == "b":
            field["data_enc"] = "b"
        else:  # pragma: no cover - a typo in the tables above
            raise ValueError(f"unknown field kind {kind!r}")
        spec[str(number)] = field
    return spec


TERMINAL_SPEC = _pyiso_spec(TERMINAL_FIELDS, bcd=True)
HOST_SPEC = _pyiso_spec(HOST_FIELDS, bcd=False)
