"""Encoding and decoding of whole messages on both legs.

A :class:`Message` keeps the decoded fields as strings (pyiso8583's form:
digits for numbers, uppercase hex for binary fields) and, once decoded or
encoded, the raw body bytes from the MTI on: the MAC is computed over them.

Errors are :class:`WireError`, naming the field and the byte position in the
frame, e.g. ``field 4: not numeric ('00000000AB12') at position 19``. A
well-formed message is checked without positions (one mask per bitmap, one
test per kind of field); they are worked out only to name an error, by the
same field-by-field checks as always (tests/wire/test_wire_codec_reference.py
holds the codec to them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import iso8583
from iso8583.decoder import DecodeError
from iso8583.encoder import EncodeError

from .specs import HOST_FIELDS, HOST_SPEC, TERMINAL_FIELDS, TERMINAL_SPEC

TPDU_LEN = 5
HEADER_LEN = 6
MAC_LEN = 8
MAX_FRAME_BYTES = 4096  # the largest message either leg accepts; CUP messages stay under 1 KiB

MacFunction = Callable[[bytes], bytes]

_FIELD_KEYS = frozenset(str(n) for n in range(1, 129))
_SECONDARY_KEYS = frozenset(str(n) for n in range(65, 129))


class WireError(ValueError):
    """A frame that does not follow the spec. ``field`` is None for framing errors."""

    def __init__(
        self,
        message: str,
        field_no: str | None = None,
        position: int | None = None,
        partial: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.field = field_no
        self.position = position
        # The fields decoded before the error (MTI as "t"): enough to frame a 30 reply.
        self.partial = partial or {}


@dataclass
class Message:
    mti: str
    fields: dict[str, str] = field(default_factory=dict)
    tpdu: str = ""  # hex, terminal leg only
    header: str = ""  # hex, terminal leg only
    raw: bytes = b""  # body from the MTI on, as sent or received

    def get(self, number: int | str, default: str | None = None) -> str | None:
        return self.fields.get(str(number), default)

    def __getitem__(self, number: int | str) -> str:
        return self.fields[str(number)]

    def has(self, number: int | str) -> bool:
        return str(number) in self.fields

    @property
    def mac_field(self) -> str:
        keys = self.fields.keys()
        if keys <= _FIELD_KEYS:  # every key a field number 1..128, as written by str(int)
            return "64" if keys.isdisjoint(_SECONDARY_KEYS) else "128"
        return "128" if any(int(k) > 64 for k in self.fields) else "64"

    def mac_value(self) -> bytes:
        """The MAC the message carries (F64, or F128 with a secondary bitmap); empty when none."""
        value = self.fields.get(self.mac_field, "")
        try:
            return bytes.fromhex(value)
        except ValueError:
            return b""

    def mac_input(self) -> bytes:
        """The bytes a MAC covers: the body from the MTI up to the MAC field."""
        return self.raw[:-MAC_LEN]


# -- checks -----------------------------------------------------------------------
#
# Each check has a fast form for the frames that are well formed (whole-string and
# whole-bitmap tests, no byte positions) and the slow form that names the error: the
# fast form only decides whether the slow one must run, and the slow one alone raises.

_TRACK_CHARS = "0123456789=D"


def _valid(kind: str, value: str) -> bool:
    # An empty variable field is allowed by the format; fixed lengths are pyiso8583's to check.
    if kind in ("n", "nl"):
        return value == "" or value.isdigit()
    if kind == "z":
        return all(c in _TRACK_CHARS for c in value)
    return True


class _Leg:
    """One leg's spec and what the checks need of it, worked out once."""

    def __init__(self, spec, rows, base: int):
        self.spec = spec
        self.rows = rows
        self.base = base  # the body's position in the frame
        self.mti_len = spec["t"]["max_len"]
        # Bits of the primary and secondary bitmaps for fields the spec does not carry
        # (bit 1, the secondary bitmap's, is always allowed).
        self.unknown_primary = sum(1 << (64 - n) for n in range(2, 65) if n not in rows)
        self.unknown_secondary = sum(1 << (128 - n) for n in range(65, 129) if n not in rows)
        self.keys = frozenset(str(n) for n in rows)
        self.secondary = self.keys & _SECONDARY_KEYS
        self.numeric = tuple(str(n) for n, row in rows.items() if row[0] in ("n", "nl"))
        self.track = tuple(str(n) for n, row in rows.items() if row[0] == "z")
        self.blanks = ("",) * len(rows)  # what a field not in the message counts as
        # Fields with an ASCII length prefix, which must be digits.
        self.ascii_prefixed = tuple(
            str(n) for n in rows if spec[str(n)]["len_enc"] == "ascii" and spec[str(n)]["len_type"] > 0
        )


def _values_follow(leg: _Leg, fields: dict[str, str]) -> bool:
    """True when every numeric field of ``fields`` holds only the digits 0-9 and every
    track field only those, ``=`` and ``D``: each kind's values joined and checked at once.

    Only the spec's own keys are looked at (encoding checks first that there are no
    others). False may be a false alarm (a value not a str, a digit outside 0-9 that
    str.isdigit takes): the slow check decides."""
    try:
        digits = "".join(map(fields.get, leg.numeric, leg.blanks))
        track = "".join(map(fields.get, leg.track, leg.blanks))
    except TypeError:
        return False
    return (not digits or (digits.isascii() and digits.encode().isdigit())) and not track.strip(_TRACK_CHARS)


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
    """What of a broken message can be trusted to frame a reply: a numeric MTI and the
    fields that decoded and validate on their own, never the field that failed."""
    out: dict[str, str] = {}
    if mti and len(mti) == 4 and mti.isdigit():
        out["t"] = mti
    for key, value in fields.items():
        if key.isdigit() and key not in ("1", failed) and int(key) in rows and _valid(rows[int(key)][0], value):
            out[key] = value
    return out


def _shown(key: str, value: str) -> str:
    # Never echo card or PIN data into an error message.
    if key in ("2", "35", "36", "52", "55", "62"):
        return f"<{len(value)} characters>"
    return value


def _has_unknown_bits(body: bytes, leg: _Leg) -> bool:
    """Whether the bitmap sets a bit for a field the spec does not carry (one mask per bitmap)."""
    at = leg.mti_len
    primary = body[at : at + 8]
    if len(primary) < 8:
        return False  # pyiso8583 names the short bitmap
    bits = int.from_bytes(primary, "big")
    if bits & leg.unknown_primary:
        return True
    if bits >> 63:
        secondary = body[at + 8 : at + 16]  # may be cut short: the missing bytes set no bit
        return bool((int.from_bytes(secondary, "big") << (8 * (8 - len(secondary)))) & leg.unknown_secondary)
    return False


def _unknown_fields(body: bytes, spec, rows, base: int) -> None:
    """A bit set for a field the spec does not carry: named with the bitmap's position."""
    mti_len = spec["t"]["max_len"]
    bitmap = body[mti_len : mti_len + 8]
    if len(bitmap) < 8:
        return  # pyiso8583 names the short bitmap
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


def _check_decoded(mti: str, doc: dict[str, str], enc, spec, rows, base: int) -> None:
    """The length prefixes and values of a decoded body, each error named with its position."""
    positions: dict[str, int] = {}
    offset = 0
    # pyiso8583 keeps each field's raw bytes; recompute positions for messages.
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


def _decode(body: bytes, leg: _Leg) -> Message:
    spec, rows, base = leg.spec, leg.rows, leg.base
    if _has_unknown_bits(body, leg):
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
    if leg.ascii_prefixed:
        prefixes = b"".join([enc[k]["len"] for k in leg.ascii_prefixed if k in enc])
        prefixes_follow = not prefixes or prefixes.isdigit()
    else:
        prefixes_follow = True
    if not (prefixes_follow and _values_follow(leg, doc)):
        _check_decoded(mti, doc, enc, spec, rows, base)
    return Message(mti=mti, fields=doc, raw=bytes(body))


def _name(field_key: str) -> str:
    return {"t": "MTI", "p": "bitmap", "1": "secondary bitmap"}.get(field_key, field_key)


def _check_to_encode(fields: dict[str, str], rows) -> None:
    for key, value in fields.items():
        if key.isdigit() and int(key) in rows and not _valid(rows[int(key)][0], value):
            raise WireError(f"field {key}: not numeric ({_shown(key, value)!r})", key)


def _encode(msg: Message, leg: _Leg, mac: MacFunction | None) -> bytes:
    if not (len(msg.mti) == 4 and msg.mti.isdigit()):
        raise WireError(f"field MTI: {msg.mti!r} is not four digits", "t")
    fields = msg.fields
    in_spec = fields.keys() <= leg.keys
    if not (in_spec and _values_follow(leg, fields)):
        _check_to_encode(fields, leg.rows)
    doc = {"t": msg.mti, **fields}
    mac_key = None
    if mac is not None:
        if in_spec:  # what mac_field answers, without looking at the keys again
            mac_key = "64" if fields.keys().isdisjoint(leg.secondary) else "128"
        else:
            mac_key = msg.mac_field
        doc[mac_key] = "00" * MAC_LEN
    try:
        body, _ = iso8583.encode(doc, leg.spec)
    except EncodeError as e:
        raise WireError(f"field {_name(e.field)}: {e.msg}", e.field) from None
    except KeyError as e:  # a field the spec does not carry
        raise WireError(f"field {e.args[0]}: not in this spec", str(e.args[0])) from None
    body = bytes(body)
    if mac is not None:
        code = mac(body[:-MAC_LEN])
        assert len(code) == MAC_LEN
        body = body[:-MAC_LEN] + code
        msg.fields[mac_key] = code.hex().upper()
    msg.raw = body
    return body


# -- terminal leg ---------------------------------------------------------------

_TERMINAL = _Leg(TERMINAL_SPEC, TERMINAL_FIELDS, TPDU_LEN + HEADER_LEN)


def decode_terminal(frame: bytes) -> Message:
    """Decode a terminal-leg frame (without its 2-byte length): TPDU, header, body."""
    if len(frame) < TPDU_LEN + HEADER_LEN + 2 + 8:
        raise WireError(f"frame of {len(frame)} bytes is shorter than TPDU, header, MTI and bitmap")
    if frame[0] != 0x60:
        raise WireError(f"TPDU: id {frame[0]:02X} is not 60 at position 0", "tpdu", 0)
    msg = _decode(frame[TPDU_LEN + HEADER_LEN :], _TERMINAL)
    msg.tpdu = frame[:TPDU_LEN].hex().upper()
    msg.header = frame[TPDU_LEN : TPDU_LEN + HEADER_LEN].hex().upper()
    return msg


def encode_terminal(msg: Message, mac: MacFunction | None = None) -> bytes:
    """Encode a terminal-leg frame (without its length); ``mac`` fills F64."""
    body = _encode(msg, _TERMINAL, mac)
    head = bytes.fromhex(msg.tpdu or "6000000000") + bytes.fromhex(msg.header or "602200000000")
    if len(head) != TPDU_LEN + HEADER_LEN:
        raise WireError("TPDU must be 5 bytes and header 6 bytes")
    return head + body


def reply_tpdu(tpdu: str) -> str:
    """The host's reply swaps the TPDU's destination and source addresses."""
    return tpdu[:2] + tpdu[6:10] + tpdu[2:6]


# -- host legs ------------------------------------------------------------------

_HOST = _Leg(HOST_SPEC, HOST_FIELDS, 0)


def decode_host(frame: bytes) -> Message:
    if len(frame) < 4 + 8:
        raise WireError(f"frame of {len(frame)} bytes is shorter than MTI and bitmap")
    return _decode(frame, _HOST)


def encode_host(msg: Message, mac: MacFunction | None = None) -> bytes:
    return _encode(msg, _HOST, mac)


# -- framing --------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    """Prefix a message with its 2-byte big-endian length."""
    if len(body) > MAX_FRAME_BYTES:
        raise WireError(f"message of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return len(body).to_bytes(2, "big") + body


class FrameReader:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES):
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames = []
        while len(self._buf) >= 2:
            n = int.from_bytes(self._buf[:2], "big")
            if n == 0 or n > self._max:
                raise WireError(f"frame length {n} outside 1..{self._max}")
            if len(self._buf) < 2 + n:
                break
            frames.append(bytes(self._buf[2 : 2 + n]))
            del self._buf[: 2 + n]
        return frames
