"""Exceptions raised by the security module.

Every message is a fixed sentence: no exception raised by this package ever
carries a key, a key handle's clear value, a PIN, a PIN block in clear, an
offset or a PAN in its message or arguments.
"""

from __future__ import annotations

__all__ = ["SecurityError", "KeyCheckError", "PinBlockFormatError"]


class SecurityError(Exception):
    """Base class: an operation of the security module was refused.

    Raised as such for invalid key material: a malformed clear key, a key
    handle that is malformed or was not made under this module's LMK, an
    encrypted key of the wrong length, or a key too short for the function.
    """


class KeyCheckError(SecurityError):
    """The key check value given on import does not match the imported key."""


class PinBlockFormatError(SecurityError):
    """A PIN block is not a valid ISO 9564 format 0 block for the PAN given.

    The block decrypted to something that is not ``0`` + length 4..12 + PIN
    digits + ``F`` padding once the PAN field is removed: garbage, a block
    encrypted under another key, or a block built for another PAN.  A host
    answers such a request with response code 99 (PIN format error).
    """


class PinBlockPanError(PinBlockFormatError, ValueError):
    """``translate_pin`` / ``verify_pin`` got a PAN that is not 8-19 digits.

    Both a PinBlockFormatError (no format 0 block can be valid for it, so a
    host that catches PinBlockFormatError answers 99 instead of failing) and
    a ValueError (the argument is malformed).  Not re-exported by the package.
    """
