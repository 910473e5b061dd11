"""Straightforward reference implementations for the security tests.

Written independently of ``posnet.security`` from the textual definitions
(DOMAIN.md section 2, ISO 9564-1, ISO 9797-1, IBM 3624), using only the raw
DES primitive of ``cryptography``.  Clarity over speed.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes


def _key24(key: bytes) -> bytes:
    if len(key) == 8:
        return key + key + key
    if len(key) == 16:
        return key + key[:8]
    assert len(key) == 24
    return key


def des_encrypt(key: bytes, block: bytes) -> bytes:
    """Single DES (8-byte key) or triple DES (16/24-byte key), ECB."""
    return Cipher(TripleDES(_key24(key)), modes.ECB()).encryptor().update(block)


def des_decrypt(key: bytes, block: bytes) -> bytes:
    return Cipher(TripleDES(_key24(key)), modes.ECB()).decryptor().update(block)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def cup_mac(mak: bytes, data: bytes) -> bytes:
    """DOMAIN.md: zero-pad, XOR all blocks, hex, encrypt first 8 chars with the
    MAK (first 8 bytes, single DES), XOR with the last 8 chars, encrypt, hex,
    first 8 chars."""
    while len(data) % 8:
        data += b"\x00"
    acc = bytes(8)
    for i in range(0, len(data), 8):
        acc = xor(acc, data[i : i + 8])
    text = acc.hex().upper().encode()
    step = des_encrypt(mak[:8], text[:8])
    step = des_encrypt(mak[:8], xor(step, text[8:]))
    return step.hex().upper().encode()[:8]


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO 9797-1 algorithm 3, padding method 1: CBC under K, then D(K'), E(K)."""
    k1, k2 = key[:8], key[8:16]
    if len(data) == 0 or len(data) % 8:
        data += b"\x00" * (8 - len(data) % 8)
    state = bytes(8)
    for i in range(0, len(data), 8):
        state = des_encrypt(k1, xor(state, data[i : i + 8]))
    return des_encrypt(k1, des_decrypt(k2, state))


def format0_clear(pin: str, pan: str) -> bytes:
    pin_field = "0" + format(len(pin), "X") + pin
    pin_field += "F" * (16 - len(pin_field))
    account = pan[:-1]
    account = account[len(account) - 12 :] if len(account) >= 12 else account
    pan_field = "0" * (16 - len(account)) + account
    return xor(bytes.fromhex(pin_field), bytes.fromhex(pan_field))


def ibm3624_natural_pin(pvk: bytes, pan: str, length: int) -> str:
    data = pan[-16:]
    data += "F" * (16 - len(data))
    encrypted = des_encrypt(pvk, bytes.fromhex(data)).hex().upper()
    table = "0123456789012345"
    return "".join(table[int(c, 16)] for c in encrypted)[:length]


def pan_field(pan: str) -> bytes:
    account = pan[:-1]
    account = account[len(account) - 12 :] if len(account) >= 12 else account
    return bytes.fromhex("0" * (16 - len(account)) + account)


def format0_pin(clear_block: bytes, pan: str) -> str | None:
    """The PIN of a clear format 0 block for this PAN, or None if invalid."""
    field = xor(clear_block, pan_field(pan)).hex().upper()
    if field[0] != "0":
        return None
    length = int(field[1], 16)
    if length < 4 or length > 12:
        return None
    pin, pad = field[2 : 2 + length], field[2 + length :]
    if not all(c in "0123456789" for c in pin) or pad != "F" * len(pad):
        return None
    return pin
