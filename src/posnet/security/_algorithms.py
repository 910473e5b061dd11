"""The small payment algorithms written by hand.

No well-kept Python library offers these, so they are written here, each in a
few lines, straight from their specifications:

* the data handling of the CUP "ECB" MAC (XOR fold, hex expansion),
* the ISO 9564-1 format 0 PIN block (build and strict parse),
* IBM 3624 PIN offset arithmetic (validation data, decimalisation, digitwise
  addition and subtraction modulo 10).

The block cipher itself (DES / triple DES) always comes from
``cryptography``; the functions here never see a key.  Nothing here logs, and
no exception message contains a PIN, a PAN or a block.
"""

from __future__ import annotations

import functools
import operator
import struct

from .errors import PinBlockFormatError

__all__ = [
    "DECIMALIZATION_TABLE",
    "ODD_PARITY",
    "check_pan",
    "check_pin",
    "check_offset",
    "pan_field",
    "format0_block",
    "parse_format0",
    "xor_fold",
    "validation_data",
    "decimalize",
    "add_digits",
    "subtract_digits",
    "xor8",
]

#: IBM 3624 standard decimalisation table: hex digit i -> DECIMALIZATION_TABLE[i].
DECIMALIZATION_TABLE = "0123456789012345"

_DIGITS = frozenset("0123456789")


def _odd_parity_table() -> bytes:
    """Byte translation table setting the low bit of each byte to odd parity."""
    out = bytearray(256)
    for b in range(256):
        high = b & 0xFE
        out[b] = high | (0 if bin(high).count("1") % 2 else 1)
    return bytes(out)


#: ``key.translate(ODD_PARITY)`` gives the key with odd DES parity.  DES
#: ignores the parity bits, so the adjusted key encrypts exactly as before.
ODD_PARITY = _odd_parity_table()


def _is_digits(value: object, low: int, high: int) -> bool:
    return (
        isinstance(value, str)
        and low <= len(value) <= high
        and all(c in _DIGITS for c in value)
    )


def check_pin(pin: object) -> str:
    """Return ``pin`` if it is 4 to 12 ASCII decimal digits, else ValueError."""
    if not _is_digits(pin, 4, 12):
        raise ValueError("PIN must be 4 to 12 decimal digits")
    return pin  # type: ignore[return-value]


def check_pan(pan: object) -> str:
    """Return ``pan`` if it is 8 to 19 ASCII decimal digits (ISO/IEC 7812-1)."""
    if not _is_digits(pan, 8, 19):
        raise ValueError("PAN must be 8 to 19 decimal digits")
    return pan  # type: ignore[return-value]


def check_offset(offset: object) -> str:
    """Return ``offset`` if it is 4 to 12 ASCII decimal digits, else ValueError."""
    if not _is_digits(offset, 4, 12):
        raise ValueError("PIN offset must be 4 to 12 decimal digits")
    return offset  # type: ignore[return-value]


def pan_field(pan: str) -> bytes:
    """ISO 9564 format 0 PAN field: ``0000`` + the 12 rightmost PAN digits
    excluding the check digit, left-padded with zeros for a short PAN."""
    digits = pan[:-1][-12:]
    return bytes.fromhex(digits.rjust(16, "0"))


def format0_block(pin: str, pan: str) -> bytes:
    """Clear ISO 9564 format 0 PIN block (8 bytes) for a checked PIN and PAN.

    PIN field: ``0``, the PIN length as one hex digit, the PIN, ``F`` padding
    to 16 hex digits; XORed with the PAN field.
    """
    pin_field = bytes.fromhex(("0%X" % len(pin) + pin).ljust(16, "F"))
    return xor8(pin_field, pan_field(pan))


def parse_format0(block: bytes, pan: str) -> str:
    """Return the PIN of a clear format 0 block, or PinBlockFormatError.

    The block is valid only if, after removing the PAN field, it reads
    ``0``, a length L of 4..12, L decimal digits, then only ``F``.
    """
    field = xor8(block, pan_field(pan)).hex().upper()
    length = int(field[1], 16)
    pin = field[2 : 2 + length]
    if (
        field[0] != "0"
        or not 4 <= length <= 12
        or not all(c in _DIGITS for c in pin)
        or field[2 + length :] != "F" * (14 - length)
    ):
        raise PinBlockFormatError(
            "PIN block is not a valid ISO 9564 format 0 block for this PAN"
        )
    return pin


def xor8(a: bytes, b: bytes) -> bytes:
    """XOR of two 8-byte strings."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(8, "big")


def xor_fold(data: bytes) -> bytes:
    """Zero-pad ``data`` to a multiple of 8 bytes and XOR all 8-byte blocks.

    Empty data folds to eight zero bytes (one all-zero block).
    """
    padded = bytes(data) + bytes(-len(data) % 8)
    if not padded:
        return bytes(8)
    folded = functools.reduce(
        operator.xor, (block for (block,) in struct.iter_unpack(">Q", padded))
    )
    return folded.to_bytes(8, "big")


def validation_data(pan: str) -> bytes:
    """IBM 3624 validation data for a PAN: 8 bytes (16 hex digits).

    The 16 rightmost PAN digits; a PAN shorter than 16 digits is padded on the
    right with ``F`` (IBM's pad character convention).  For the usual 16-digit
    card number this is the whole PAN, as in the published IBM 3624 examples.
    """
    return bytes.fromhex(pan[-16:].ljust(16, "F"))


def decimalize(encrypted: bytes, length: int) -> str:
    """Decimalise 8 bytes with the standard table; keep ``length`` leftmost digits."""
    return "".join(DECIMALIZATION_TABLE[int(c, 16)] for c in encrypted.hex()[:length])


def add_digits(a: str, b: str) -> str:
    """Digitwise (a + b) mod 10, no carry; equal lengths."""
    return "".join(str((int(x) + int(y)) % 10) for x, y in zip(a, b, strict=True))


def subtract_digits(a: str, b: str) -> str:
    """Digitwise (a - b) mod 10, no borrow; equal lengths."""
    return "".join(str((int(x) - int(y)) % 10) for x, y in zip(a, b, strict=True))
