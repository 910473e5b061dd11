"""The codec against its reference: the same answers, the same errors.

``posnet.wire.codec`` checks a well-formed frame with whole-string and
whole-bitmap tests and works out byte positions only when something is wrong.
The reference below is the pre-change implementation of the codec (as of
commit 200b7ef), kept here verbatim and only here: it checks every field
character by character, every bit of the bitmap, and computes every field's
position on every decode. On real frames of both legs, well formed and
corrupted (bytes flipped, overwritten, inserted, deleted, cut, bitmap bits
set), and on messages to encode with bad values and odd keys, the two must
give the same Message, or the same exception: for a WireError the same text,
field, position and partial.
"""

from __future__ import annotations

import hashlib
import os

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iso8583.decoder import DecodeError
from iso8583.encoder import EncodeError

from posnet.wire import codec
from posnet.wire.codec import HEADER_LEN, MAC_LEN, TPDU_LEN, Message, WireError
from posnet.wire.fields import F60, F61, OriginalData, Totals, WorkingKeys, build_balance, build_settlement_totals
from posnet.wire.specs import HOST_FIELDS, HOST_SPEC, TERMINAL_FIELDS, TERMINAL_SPEC

EXAMPLES = int(os.environ.get("POSNET_FUZZ_EXAMPLES", "500"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- the reference: the codec before the fast checks, verbatim ----------------------


def ref_mac_field(fields: dict) -> str:
    return "128" if any(int(k) > 64 for k in fields) else "64"


def _valid(kind: str, value: str) -> bool:
    # An empty variable field is allowed by the format; fixed lengths are pyiso8583's to check.
    if kind in ("n", "nl"):
        return value == "" or value.isdigit()
    if kind == "z":
        return all(c in "0123456789=D" for c in value)
    return True


def _validate(fields: dict[str, str], rows, positions: dict[str, int], base: int) -> None:
    for key, value in fields.items():
        if not _valid(rows[int(key)][0], value):
            pos = positions.get(key)
            raise WireError(
                f"field {key}: not numeric ({_shown(key, value)!r})"
                + (f" at position {base + pos}" if pos is not None else ""),
                key,
                None if pos is None else base + pos,
            )


def _salvage(mti: str | None, fields: dict[str, str], rows, failed: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if mti and len(mti) == 4 and mti.isdigit():
        out["t"] = mti
    for key, value in fields.items():
        if key.isdigit() and key not in ("1", failed) and int(key) in rows and _valid(rows[int(key)][0], value):
            out[key] = value
    return out


def _shown(key: str, value: str) -> str:
    if key in ("2", "35", "36", "52", "55", "62"):
        return f"<{len(value)} characters>"
    return value


def _unknown_fields(body: bytes, spec, rows, base: int) -> None:
    mti_len = spec["t"]["max_len"]
    bitmap = body[mti_len : mti_len + 8]
    if len(bitmap) < 8:
        return
    if bitmap[0] & 0x80:
        bitmap += body[mti_len + 8 : mti_len + 16]
    for i, byte in enumerate(bitmap):
        for bit in range(8):
            number = i * 8 + bit + 1
            if byte & (0x80 >> bit) and number != 1 and number not in rows:
                mti = body[:mti_len].hex() if spec["t"]["data_enc"] == "b" else body[:mti_len].decode("ascii", "replace")
                raise WireError(
                    f"field {number}: not in this spec (bitmap at position {base + mti_len})",
                    str(number),
                    base + mti_len,
                    _salvage(mti, {}, rows, None),
                )


def _decode(body: bytes, spec, rows, base: int) -> Message:
    _unknown_fields(body, spec, rows, base)
    try:
        doc, enc = iso8583.decode(body, spec)
    except DecodeError as e:
        raise WireError(
            f"field {_name(e.field)}: {e.msg} at position {base + e.pos}",
            e.field,
            base + e.pos,
            _salvage(e.doc_dec.get("t"), dict(e.doc_dec), rows, e.field),
        ) from None
    mti = doc.pop("t")
    doc.pop("p", None)
    doc.pop("1", None)
    doc.pop("h", None)
    if not mti.isdigit():
        raise WireError(f"field MTI: not numeric ({mti!r}) at position {base}", "t", base)
    positions: dict[str, int] = {}
    offset = 0
    for key in ("t", "p", "1"):
        if key in enc:
            offset += len(enc[key]["len"]) + len(enc[key]["data"])
    for key in sorted((k for k in enc if k.isdigit() and k != "1"), key=int):
        positions[key] = offset
        prefix = enc[key]["len"]
        if spec[key]["len_enc"] == "ascii" and prefix and not prefix.isdigit():
            raise WireError(
                f"field {key}: length prefix {prefix!r} is not digits at position {base + offset}",
                key,
                base + offset,
                _salvage(mti, doc, rows, key),
            )
        offset += len(prefix) + len(enc[key]["data"])
    try:
        _validate(doc, rows, positions, base)
    except WireError as e:
        e.partial = _salvage(mti, doc, rows, e.field)
        raise
    return Message(mti=mti, fields=doc, raw=bytes(body))


def _name(field_key: str) -> str:
    return {"t": "MTI", "p": "bitmap", "1": "secondary bitmap"}.get(field_key, field_key)


def _encode(msg: Message, spec, rows, mac) -> bytes:
    if not (len(msg.mti) == 4 and msg.mti.isdigit()):
        raise WireError(f"field MTI: {msg.mti!r} is not four digits", "t")
    for key, value in msg.fields.items():
        if key.isdigit() and int(key) in rows and not _valid(rows[int(key)][0], value):
            raise WireError(f"field {key}: not numeric ({_shown(key, value)!r})", key)
    doc = {"t": msg.mti, **msg.fields}
    mac_key = None
    if mac is not None:
        mac_key = ref_mac_field(msg.fields)
        doc[mac_key] = "00" * MAC_LEN
    try:
        body, _ = iso8583.encode(doc, spec)
    except EncodeError as e:
        raise WireError(f"field {_name(e.field)}: {e.msg}", e.field) from None
    except KeyError as e:
        raise WireError(f"field {e.args[0]}: not in this spec", str(e.args[0])) from None
    body = bytes(body)
    if mac is not None:
        code = mac(body[:-MAC_LEN])
        assert len(code) == MAC_LEN
        body = body[:-MAC_LEN] + code
        msg.fields[mac_key] = code.hex().upper()
    msg.raw = body
    return body


def ref_decode_terminal(frame: bytes) -> Message:
    if len(frame) < TPDU_LEN + HEADER_LEN + 2 + 8:
        raise WireError(f"frame of {len(frame)} bytes is shorter than TPDU, header, MTI and bitmap")
    if frame[0] != 0x60:
        raise WireError(f"TPDU: id {frame[0]:02X} is not 60 at position 0", "tpdu", 0)
    msg = _decode(frame[TPDU_LEN + HEADER_LEN :], TERMINAL_SPEC, TERMINAL_FIELDS, TPDU_LEN + HEADER_LEN)
    msg.tpdu = frame[:TPDU_LEN].hex().upper()
    msg.header = frame[TPDU_LEN : TPDU_LEN + HEADER_LEN].hex().upper()
    return msg


def ref_encode_terminal(msg: Message, mac=None) -> bytes:
    body = _encode(msg, TERMINAL_SPEC, TERMINAL_FIELDS, mac)
    head = bytes.fromhex(msg.tpdu or "6000000000") + bytes.fromhex(msg.header or "602200000000")
    if len(head) != TPDU_LEN + HEADER_LEN:
        raise WireError("TPDU must be 5 bytes and header 6 bytes")
    return head + body


def ref_decode_host(frame: bytes) -> Message:
    if len(frame) < 4 + 8:
        raise WireError(f"frame of {len(frame)} bytes is shorter than MTI and bitmap")
    return _decode(frame, HOST_SPEC, HOST_FIELDS, 0)


def ref_encode_host(msg: Message, mac=None) -> bytes:
    return _encode(msg, HOST_SPEC, HOST_FIELDS, mac)


# -- what the two are compared on ---------------------------------------------------


def outcome(fn, *args):
    """A comparable account of a call: its result, or its exception with everything it carries."""
    try:
        result = fn(*args)
    except WireError as e:
        return ("WireError", str(e), e.field, e.position, e.partial)
    except Exception as e:  # noqa: BLE001 - any other exception must be the same one too
        return (type(e).__name__, str(e))
    if isinstance(result, Message):
        return ("Message", result.mti, result.fields, list(result.fields), result.tpdu, result.header, result.raw)
    return ("result", result)


def mac8(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:MAC_LEN]


PAN = "6222020000000001"
TID, MID = "10000001", "898310148160001"
TPDU, HEADER = "6000030000", "602200000000"
KEYS = WorkingKeys(bytes(range(16)), bytes(4), bytes(range(16, 32)), bytes(4), bytes(range(32, 48)), bytes(4))

TERMINAL_MESSAGES = [
    Message(
        "0200",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "11": "000002", "14": "3012", "22": "021",
            "23": "001", "25": "00", "26": "12", "35": PAN + "D30122010000000000",
            "36": "996222020000000001D1561560000000000000000000000000000000000000D000000000000D000000000000",
            "41": TID, "42": MID, "49": "156", "52": "54C4406EC8B0BC42", "53": "2600000000000000",
            "55": "9F2608" + "11" * 8 + "9F2701809F1012" + "07" * 18, "60": F60("22", "000001", "000").encode(),
        },
        tpdu=TPDU, header=HEADER,
    ),
    Message(
        "0210",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "11": "000002", "12": "100000", "13": "1124",
            "14": "3012", "15": "1124", "25": "00", "32": "48020000", "37": "000000000002", "38": "123456",
            "39": "00", "41": TID, "42": MID, "44": "0102000048020000", "49": "156",
            "54": build_balance(991200), "60": "22000001000", "63": "CUP测试商户",
        },
        tpdu="6000000003", header=HEADER,
    ),
    Message(
        "0200",
        {
            "2": PAN, "3": "200000", "4": "000000008800", "11": "000003", "22": "021", "25": "00",
            "37": "000000000002", "38": "123456", "41": TID, "42": MID, "49": "156",
            "60": "23000001000", "61": F61("000001", "000002", "1124").encode(),
        },
        tpdu=TPDU, header=HEADER,
    ),
    Message(
        "0810",
        {
            "11": "000001", "12": "100000", "13": "1124", "32": "48020000", "37": "000000000001",
            "39": "00", "41": TID, "42": MID, "60": "00000001003", "62": KEYS.encode(),
        },
        tpdu="6000000003", header=HEADER,
    ),
    Message(
        "0500",
        {
            "11": "000009", "41": TID, "42": MID, "48": build_settlement_totals(Totals(8800, 1, 100, 1)),
            "49": "156", "60": "00000001201", "63": "01 ",
        },
        tpdu=TPDU, header=HEADER,
    ),
]

HOST_MESSAGES = [
    Message(
        "0200",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "7": "1124020000", "11": "000001", "12": "100000",
            "13": "1124", "14": "3012", "18": "5411", "22": "021", "25": "00", "32": "48020000",
            "33": "48020000", "35": PAN + "=30122010000000000", "37": "000000000002", "41": TID, "42": MID,
            "43": "posnet 测试商户", "49": "156", "52": "FE35BB392F4D81B5", "53": "2600000000000000",
            "60": "000001000002",
        },
    ),
    Message(
        "0200",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "7": "1124020000", "11": "000001",
            "32": "48020000", "35": PAN + "=30122010000000000", "37": "000000000002", "41": TID, "42": MID,
            "49": "156", "52": "FE35BB392F4D81B5", "100": "01020000",
        },
    ),
    Message(
        "0210",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "7": "1124020000", "11": "000001", "15": "1124",
            "32": "48020000", "37": "000000000002", "38": "654321", "39": "00", "41": TID, "42": MID,
            "49": "156", "54": build_balance(-1200),
        },
    ),
    Message(
        "0420",
        {
            "2": PAN, "3": "000000", "4": "000000008800", "7": "1124020500", "11": "000002",
            "32": "48020000", "37": "000000000002", "39": "98", "41": TID, "42": MID, "49": "156",
            "90": OriginalData("0200", "000001", "1124020000", "48020000").encode(), "100": "01020000",
        },
    ),
    Message("0800", {"7": "1124020000", "11": "000001", "70": "301", "100": "01020000"}),
]


def encoded(messages, encode) -> list[bytes]:
    out = []
    for m in messages:
        out.append(encode(Message(m.mti, dict(m.fields), tpdu=m.tpdu, header=m.header), mac8))
        out.append(encode(Message(m.mti, dict(m.fields), tpdu=m.tpdu, header=m.header)))
    return out


TERMINAL_FRAMES = encoded(TERMINAL_MESSAGES, ref_encode_terminal)
HOST_FRAMES = encoded(HOST_MESSAGES, ref_encode_host)


def test_the_frames_encode_alike_and_decode():
    assert TERMINAL_FRAMES == encoded(TERMINAL_MESSAGES, codec.encode_terminal)
    assert HOST_FRAMES == encoded(HOST_MESSAGES, codec.encode_host)
    for frame in TERMINAL_FRAMES:
        assert outcome(codec.decode_terminal, frame)[0] == "Message"
        assert outcome(codec.decode_terminal, frame) == outcome(ref_decode_terminal, frame)
    for frame in HOST_FRAMES:
        assert outcome(codec.decode_host, frame)[0] == "Message"
        assert outcome(codec.decode_host, frame) == outcome(ref_decode_host, frame)


# -- corrupted frames ---------------------------------------------------------------


def layout(frame: bytes, spec, rows, base: int) -> tuple[list[int], list[int]]:
    """Where a well-formed frame's numeric and track data lie, and where its ASCII length
    prefixes that start with a 0 lie: the bytes to aim at."""
    _, enc = iso8583.decode(frame[base:], spec)
    at, data, prefixes = base, [], []
    for key in ["t", "p", "1"] + sorted((k for k in enc if k.isdigit() and k != "1"), key=int):
        if key not in enc:
            continue
        prefix, raw = enc[key]["len"], enc[key]["data"]
        if spec[key]["len_enc"] == "ascii" and prefix[:1] == b"0":
            prefixes.append(at)
        at += len(prefix)
        if key.isdigit() and key != "1" and rows[int(key)][0] in ("n", "nl", "z"):
            data += range(at, at + len(raw))
        at += len(raw)
    return data, prefixes


TERMINAL_LAYOUTS = [layout(f, TERMINAL_SPEC, TERMINAL_FIELDS, TPDU_LEN + HEADER_LEN) for f in TERMINAL_FRAMES]
HOST_LAYOUTS = [layout(f, HOST_SPEC, HOST_FIELDS, 0) for f in HOST_FRAMES]

# Bytes that make the interesting errors likely: hex letters in BCD, letters, signs and
# spaces in ASCII numbers and prefixes, bytes no ASCII or GBK text takes.
_TELLING = [0x00, 0x01, 0x09, 0x0A, 0x1A, 0x20, 0x2B, 0x2D, 0x30, 0x35, 0x39, 0x3D, 0x41, 0x44, 0x5F, 0x80, 0x9A, 0xA0, 0xFF]
_BYTE = st.one_of(st.sampled_from(_TELLING), st.integers(0, 255))
_AT = st.integers(0, 1 << 16)
_NOT_DIGITS = [0x0A, 0xB0, 0xDD, 0xD0, 0x0F, 0xF0, 0xFF, 0x41, 0x44, 0x46, 0x3D, 0x2B, 0x20, 0xB2]
_EDIT = st.one_of(
    st.tuples(st.just("set"), _AT, _BYTE),
    st.tuples(st.just("flip"), _AT, st.integers(1, 255)),
    # a byte of numeric or track data made a hex letter (BCD) or a letter, sign or space (ASCII)
    st.tuples(st.just("digit"), _AT, st.sampled_from(_NOT_DIGITS)),
    # an ASCII length prefix's leading 0 made what int() takes all the same
    st.tuples(st.just("prefix"), _AT, st.sampled_from(b"+ ")),
    st.tuples(st.just("bit"), st.integers(0, 15), st.integers(0, 7)),  # a bit of the bitmaps
    st.tuples(st.just("insert"), _AT, st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete"), _AT, st.integers(1, 6)),
    st.tuples(st.just("cut"), _AT, st.none()),
)


def corrupt(frame: bytes, edits, bitmap_at: int, aims: tuple[list[int], list[int]] = ([], [])) -> bytes:
    data = bytearray(frame)
    for op, where, arg in edits:
        at = where % (len(data) + 1)
        if op in ("set", "flip") and data:
            at %= len(data)
            data[at] = arg if op == "set" else data[at] ^ arg
        elif op in ("digit", "prefix") and aims[op == "prefix"]:
            at = aims[op == "prefix"][where % len(aims[op == "prefix"])]
            if at < len(data):
                data[at] = arg
        elif op == "bit" and bitmap_at + where < len(data):
            data[bitmap_at + where] ^= 0x80 >> arg
        elif op == "insert":
            data[at:at] = arg
        elif op == "delete":
            del data[at : at + arg]
        elif op == "cut":
            del data[at:]
    return bytes(data)


@SETTINGS
@given(which=st.integers(0, len(TERMINAL_FRAMES) - 1), edits=st.lists(_EDIT, min_size=1, max_size=4))
def test_a_corrupted_terminal_frame_decodes_as_the_reference_decodes_it(which, edits):
    data = corrupt(TERMINAL_FRAMES[which], edits, TPDU_LEN + HEADER_LEN + 2, TERMINAL_LAYOUTS[which])
    assert outcome(codec.decode_terminal, data) == outcome(ref_decode_terminal, data)


@SETTINGS
@given(which=st.integers(0, len(HOST_FRAMES) - 1), edits=st.lists(_EDIT, min_size=1, max_size=4))
def test_a_corrupted_host_frame_decodes_as_the_reference_decodes_it(which, edits):
    data = corrupt(HOST_FRAMES[which], edits, 4, HOST_LAYOUTS[which])
    assert outcome(codec.decode_host, data) == outcome(ref_decode_host, data)


# Every single edit of the kinds the fast checks look for, on every frame: each bit of
# both bitmaps set, each byte of numeric and track data made a non-digit, each leading
# 0 of an ASCII length prefix made a sign or a space.


def single_edits(frames, layouts, bitmap_at: int):
    for which, frame in enumerate(frames):
        data, prefixes = layouts[which]
        for byte in range(16):
            for bit in range(8):
                yield corrupt(frame, [("bit", byte, bit)], bitmap_at)
        for at in data:
            for value in _NOT_DIGITS:
                yield corrupt(frame, [("set", at, value)], bitmap_at)
        for at in prefixes:
            for value in b"+ ":
                yield corrupt(frame, [("set", at, value)], bitmap_at)


def test_every_single_edit_of_a_terminal_frame_decodes_as_the_reference_decodes_it():
    for data in single_edits(TERMINAL_FRAMES, TERMINAL_LAYOUTS, TPDU_LEN + HEADER_LEN + 2):
        assert outcome(codec.decode_terminal, data) == outcome(ref_decode_terminal, data), data.hex()


def test_every_single_edit_of_a_host_frame_decodes_as_the_reference_decodes_it():
    for data in single_edits(HOST_FRAMES, HOST_LAYOUTS, 4):
        assert outcome(codec.decode_host, data) == outcome(ref_decode_host, data), data


# The edits above do reach the slow checks: one edit for each error they name, with the
# error in full.
@pytest.mark.parametrize(
    "leg, frame, edits, expected",
    [
        ("terminal", 0, [("set", 37, 0xAB)], "field 4: not numeric ('00000000AB00') at position 33"),
        ("terminal", 0, [("set", 52, 0xBB)], "field 35: not numeric ('<34 characters>') at position 50"),
        ("terminal", 0, [("bit", 0, 4)], "field 5: not in this spec (bitmap at position 13)"),
        ("terminal", 0, [("bit", 0, 0)], "field 68: not in this spec (bitmap at position 13)"),  # F2's bytes as a secondary bitmap
        ("host", 0, [("set", 14, ord("A"))], "field 2: not numeric ('<16 characters>') at position 12"),
        ("host", 0, [("set", 87, ord("+"))], "field 32: length prefix b'+8' is not digits at position 87"),
        ("host", 2, [("bit", 8, 7)], "field 72: not in this spec (bitmap at position 4)"),
        ("host", 2, [("bit", 9, 0), ("cut", 14, None)], "field 73: not in this spec (bitmap at position 4)"),  # secondary bitmap cut short
        ("host", 2, [("bit", 8, 7), ("cut", 13, None)], "field 72: not in this spec (bitmap at position 4)"),
    ],
)
def test_the_corruptions_reach_the_slow_checks(leg, frame, edits, expected):
    if leg == "terminal":
        data = corrupt(TERMINAL_FRAMES[frame], edits, TPDU_LEN + HEADER_LEN + 2)
        got, ref = outcome(codec.decode_terminal, data), outcome(ref_decode_terminal, data)
    else:
        data = corrupt(HOST_FRAMES[frame], edits, 4)
        got, ref = outcome(codec.decode_host, data), outcome(ref_decode_host, data)
    assert got == ref
    assert got[0] == "WireError" and got[1] == expected, got


# -- messages to encode -------------------------------------------------------------

_ODD_KEYS = ["04", "5", "65", "200", "0", " 4", "٤", "t", "x", 4]
_VALUE = st.one_of(
    st.text("0123456789", max_size=20),
    st.text("0123456789=DAF+ -", max_size=40),
    st.text(max_size=12),  # any character
    st.sampled_from(["", "=", "D", "0=D", "²", "12³", "١٢٣", "１２"]),  # digits to isdigit() that are not 0-9
    st.integers(-5, 10**6),
    st.none(),
)


@st.composite
def edited(draw, messages, rows):
    base = draw(st.sampled_from(messages))
    fields = dict(base.fields)
    for key in draw(st.lists(st.sampled_from(sorted(fields, key=int)), max_size=3, unique=True)):
        del fields[key]
    keys = [str(n) for n in rows] + _ODD_KEYS
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        fields[key] = draw(_VALUE)
    mti = draw(st.one_of(st.just(base.mti), st.sampled_from(["0210", "0A10", "021", "02X0", "０２００", "٠٢٠٠"])))
    return Message(mti, fields, tpdu=base.tpdu, header=base.header)


def encode_outcome(encode, msg: Message, with_mac: bool):
    """The encoding's outcome and what it leaves in the message (the MAC it fills, the raw body)."""
    copy = Message(msg.mti, dict(msg.fields), tpdu=msg.tpdu, header=msg.header)
    result = outcome(encode, copy, mac8 if with_mac else None)
    return result, copy.fields, list(copy.fields), copy.raw


@SETTINGS
@given(msg=edited(TERMINAL_MESSAGES, TERMINAL_FIELDS), with_mac=st.booleans())
def test_a_terminal_message_encodes_as_the_reference_encodes_it(msg, with_mac):
    assert encode_outcome(codec.encode_terminal, msg, with_mac) == encode_outcome(ref_encode_terminal, msg, with_mac)


@SETTINGS
@given(msg=edited(HOST_MESSAGES, HOST_FIELDS), with_mac=st.booleans())
def test_a_host_message_encodes_as_the_reference_encodes_it(msg, with_mac):
    assert encode_outcome(codec.encode_host, msg, with_mac) == encode_outcome(ref_encode_host, msg, with_mac)


@SETTINGS
@given(keys=st.lists(st.one_of(st.integers(0, 200).map(str), st.sampled_from(_ODD_KEYS)), max_size=30))
def test_the_mac_field_is_the_references(keys):
    fields = {k: "" for k in keys}
    assert outcome(lambda: Message("0200", fields).mac_field) == outcome(ref_mac_field, fields)
