"""SecurityModule: a software HSM holding every key of one party.

Keys never leave the module in clear.  Outside it a key is a *key handle*:
the key encrypted under the module's local master key (LMK), written as
uppercase hex, safe to keep in a database or a log.  The module does no I/O
and reads no clock; randomness comes from the ``random_bytes`` callable given
to it, so the simulator can seed it.

Where the algorithms come from:

* DES and triple DES: ``cryptography``
  (``cryptography.hazmat.decrepit.ciphers.algorithms.TripleDES``, ECB and
  CBC modes).  Single DES is TripleDES with K1K1K1; double-length keys are
  expanded to K1K2K1 here: ``cryptography`` warns that 8- and 16-byte
  TripleDES keys are deprecated, so it is always given 24 bytes.
* Written by hand, because no well-kept library offers them (see
  ``_algorithms``): the CUP "ECB" MAC, the ISO 9564 format 0 PIN block and
  the IBM 3624 PIN offset.  The ISO 9797-1 algorithm 3 (ANSI X9.19 retail)
  MAC is also composed here from the DES primitives above.

The module is meant to be used from one thread (each party core calls it
synchronously); it keeps reusable ECB cipher contexts per key handle.
"""

from __future__ import annotations

import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from . import _algorithms as alg
from .errors import KeyCheckError, PinBlockFormatError, PinBlockPanError, SecurityError

__all__ = ["SecurityModule"]

RandomBytes = Callable[[int], bytes]

#: Key lengths in bytes: single, double and triple length DES keys.
KEY_LENGTHS = (8, 16, 24)

#: How many key handles keep their cipher contexts ready (least recently used
#: ones are dropped first).  A miss costs one handle decryption (~10 us).
CACHE_SIZE = 4096

# Each 8-byte part of a key is encrypted under a variant of the LMK that
# depends on the key's length and the part's position: the LMK's first byte is
# XORed with one of these fixed, distinct constants (in the style of an HSM's
# key-length variants; no vendor compatibility intended).  So the halves of a
# double-length handle are not valid single-length handles, and parts cannot
# be swapped between handles.
_LMK_VARIANTS = {8: (0x00,), 16: (0xA6, 0x5A), 24: (0x6A, 0xDE, 0x2B)}

# DES weak and semi-weak keys (odd parity); generated keys avoid them.
_WEAK_DES_KEYS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0101010101010101", "FEFEFEFEFEFEFEFE", "E0E0E0E0F1F1F1F1", "1F1F1F1F0E0E0E0E",
        "011F011F010E010E", "1F011F010E010E01", "01E001E001F101F1", "E001E001F101F101",
        "01FE01FE01FE01FE", "FE01FE01FE01FE01", "1FE01FE00EF10EF1", "E01FE01FF10EF10E",
        "1FFE1FFE0EFE0EFE", "FE1FFE1FFE0EFE0E", "E0FEE0FEF1FEF1FE", "FEE0FEE0FEF1FEF1",
    )
)

_HANDLE_RE = re.compile(r"(?:[0-9A-Fa-f]{16}){1,3}")


def _expand(key: bytes) -> bytes:
    """8 -> K1K1K1, 16 -> K1K2K1, 24 unchanged: always a 24-byte TripleDES key."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def _ecb(key: bytes) -> Cipher:
    return Cipher(TripleDES(_expand(key)), modes.ECB())


def _degenerate(key: bytes) -> bool:
    """True if a (parity-adjusted) key is weak or collapses to a shorter key."""
    parts = [key[i : i + 8] for i in range(0, len(key), 8)]
    if any(p in _WEAK_DES_KEYS for p in parts):
        return True
    return any(parts[i] == parts[i + 1] for i in range(len(parts) - 1))


class _Key:
    """One clear key inside the module, with its cipher contexts built lazily.

    ECB contexts are reused across calls: ``update`` on whole blocks returns
    the output at once and the context is never finalised.
    """

    __slots__ = ("length", "_clear", "_enc", "_dec", "_des1", "_cbc1")

    def __init__(self, clear: bytes) -> None:
        self.length = len(clear)
        self._clear = clear
        self._enc = self._dec = self._des1 = None
        self._cbc1: Cipher | None = None

    def __repr__(self) -> str:
        return f"<key {self.length * 8}-bit>"

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError("keys of a SecurityModule cannot be pickled or copied")

    @property
    def clear(self) -> bytes:
        return self._clear

    @property
    def enc(self):
        """Triple DES (K1K2K1) ECB encryptor."""
        if self._enc is None:
            self._enc = _ecb(self._clear).encryptor()
        return self._enc

    @property
    def dec(self):
        """Triple DES (K1K2K1) ECB decryptor."""
        if self._dec is None:
            self._dec = _ecb(self._clear).decryptor()
        return self._dec

    @property
    def des1(self):
        """Single DES ECB encryptor under the first 8 bytes of the key."""
        if self._des1 is None:
            self._des1 = _ecb(self._clear[:8]).encryptor()
        return self._des1

    @property
    def cbc1(self) -> Cipher:
        """Single DES CBC cipher (zero IV) under the first 8 bytes of the key."""
        if self._cbc1 is None:
            self._cbc1 = Cipher(TripleDES(self._clear[:8] * 3), modes.CBC(bytes(8)))
        return self._cbc1


class SecurityModule:
    """A software HSM: key handles in, cryptograms out; no clear key or PIN out.

    ``lmk`` is the local master key, 16 or 24 bytes; keeping it is the
    caller's business.  ``random_bytes(n)`` must return ``n`` random bytes.
    """

    def __init__(self, lmk: bytes, random_bytes: RandomBytes = os.urandom) -> None:
        if not isinstance(lmk, (bytes, bytearray)) or len(lmk) not in (16, 24):
            raise SecurityError("LMK must be 16 or 24 bytes")
        if not callable(random_bytes):
            raise TypeError("random_bytes must be callable")
        base = bytearray(_expand(bytes(lmk)))
        self._wrap_ctx: dict[int, tuple] = {}
        self._unwrap_ctx: dict[int, tuple] = {}
        for length, variants in _LMK_VARIANTS.items():
            encs, decs = [], []
            for v in variants:
                variant = bytearray(base)
                variant[0] ^= v
                cipher = _ecb(bytes(variant))
                encs.append(cipher.encryptor())
                decs.append(cipher.decryptor())
            self._wrap_ctx[length] = tuple(encs)
            self._unwrap_ctx[length] = tuple(decs)
        self._lmk_check = _ecb(bytes(base)).encryptor().update(bytes(8))[:3].hex().upper()
        self._random_bytes = random_bytes
        self._cache: OrderedDict[str, _Key] = OrderedDict()

    def __repr__(self) -> str:
        return f"<SecurityModule lmk_check={self._lmk_check} keys_cached={len(self._cache)}>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError("a SecurityModule cannot be pickled or copied")

    # ------------------------------------------------------------------ keys

    @staticmethod
    def generate_lmk(random_bytes: RandomBytes = os.urandom) -> bytes:
        """A fresh triple-length (24-byte) LMK with odd DES parity."""
        return _fresh_key(random_bytes, 24)

    def import_clear_key(self, clear_hex: str) -> str:
        """Provisioning only: a clear key (16, 32 or 48 hex digits) -> key handle.

        The key is stored with odd parity (DES ignores parity bits, so it
        encrypts exactly as given and has the same KCV).
        """
        if not isinstance(clear_hex, str) or not _HANDLE_RE.fullmatch(clear_hex.strip()):
            raise SecurityError("clear key must be 16, 32 or 48 hex digits")
        return self._store(bytes.fromhex(clear_hex.strip()))

    def generate_key(self, length: int = 16) -> str:
        """A fresh random key of ``length`` bytes (8, 16 or 24), odd parity."""
        if length not in KEY_LENGTHS:
            raise ValueError("key length must be 8, 16 or 24 bytes")
        return self._store(_fresh_key(self._random_bytes, length))

    def kcv(self, key: str) -> bytes:
        """Key check value: first 4 bytes of 8 zero bytes encrypted under the key."""
        return self._key(key).enc.update(bytes(8))[:4]

    def export_key(self, kek: str, key: str) -> bytes:
        """``key`` encrypted (triple DES ECB) under ``kek``, e.g. for F62."""
        clear = self._key(key).clear
        return self._key(kek).enc.update(clear)

    def import_key(self, kek: str, encrypted: bytes, kcv: bytes | None = None) -> str:
        """Decrypt a key sent under ``kek`` and return its handle.

        If ``kcv`` is given (3 to 8 bytes, usually 4), it must equal the
        leading bytes of the key's check value, else KeyCheckError.
        """
        if not isinstance(encrypted, (bytes, bytearray, memoryview)) or len(encrypted) not in KEY_LENGTHS:
            raise SecurityError("encrypted key must be 8, 16 or 24 bytes")
        clear = self._key(kek).dec.update(bytes(encrypted)).translate(alg.ODD_PARITY)
        if kcv is not None:
            expected = _ecb(clear).encryptor().update(bytes(8))
            given = _bytes(kcv)
            if not 3 <= len(given) <= 8 or not hmac.compare_digest(expected[: len(given)], given):
                raise KeyCheckError("key check value does not match the imported key")
        return self._store(clear)

    # ------------------------------------------------------------------ MACs

    def cup_mac(self, mak: str, data: bytes) -> bytes:
        """CUP "ECB" MAC for F64: 8 ASCII hex characters, as bytes.

        Zero-pad to a multiple of 8, XOR all blocks, write as 16 uppercase hex
        characters; single-DES-encrypt the first 8 characters under the first
        8 bytes of the MAK, XOR with the last 8 characters, encrypt again,
        write as uppercase hex and keep the first 8 characters.
        """
        des = self._key(mak).des1
        text = alg.xor_fold(_bytes(data)).hex().upper().encode("ascii")
        first = des.update(text[:8])
        second = des.update(alg.xor8(first, text[8:]))
        return second.hex().upper().encode("ascii")[:8]

    def verify_cup_mac(self, mak: str, data: bytes, mac: bytes) -> bool:
        """Constant-time check of a CUP MAC (F64)."""
        return hmac.compare_digest(self.cup_mac(mak, data), _bytes(mac))

    def retail_mac(self, zak: str, data: bytes) -> bytes:
        """ISO 9797-1 MAC algorithm 3 (ANSI X9.19), padding method 1, 8 bytes.

        CBC-MAC under K1 (single DES, zero IV) with the last block finished by
        triple DES K1K2K1 -- the same as "decrypt under K2, encrypt under K1".
        Needs a double-length (16-byte) key.
        """
        key = self._key(zak)
        if key.length != 16:
            raise SecurityError("retail MAC needs a double-length key")
        padded = _bytes(data)
        padded = padded + bytes(-len(padded) % 8) or bytes(8)
        if len(padded) > 8:
            chain = key.cbc1.encryptor().update(padded[:-8])[-8:]
        else:
            chain = bytes(8)
        return key.enc.update(alg.xor8(chain, padded[-8:]))

    def verify_retail_mac(self, zak: str, data: bytes, mac: bytes) -> bool:
        """Constant-time check of a retail MAC."""
        return hmac.compare_digest(self.retail_mac(zak, data), _bytes(mac))

    # ------------------------------------------------------------------ PINs

    def encrypt_pin(self, pik: str, pin: str, pan: str) -> bytes:
        """The PIN pad: ISO 9564 format 0 block encrypted (3DES) under ``pik``."""
        block = alg.format0_block(alg.check_pin(pin), alg.check_pan(pan))
        return self._key(pik).enc.update(block)

    def translate_pin(self, src_key: str, dst_key: str, pin_block: bytes, pan: str) -> bytes:
        """Decrypt under ``src_key``, check format 0 for ``pan``, re-encrypt under ``dst_key``.

        A malformed PAN raises a PinBlockFormatError that is also a ValueError.
        """
        _pan_for_block(pan)
        src, dst = self._key(src_key), self._key(dst_key)
        clear = src.dec.update(_block8(pin_block))
        alg.parse_format0(clear, pan)
        return dst.enc.update(clear)

    def pin_offset(self, pvk: str, pan: str, pin: str) -> str:
        """IBM 3624 offset of ``pin``: (customer PIN - natural PIN) digitwise mod 10."""
        alg.check_pin(pin)
        natural = self._natural_pin(pvk, alg.check_pan(pan), len(pin))
        return alg.subtract_digits(pin, natural)

    def verify_pin(self, key: str, pin_block: bytes, pan: str, pvk: str, offset: str) -> bool:
        """Decrypt the block under ``key`` (the issuer's zone PIN key), check its
        format (PinBlockFormatError), and verify the PIN by IBM 3624 offset.

        The check length is the offset's length: a PIN of another length
        does not verify.  A malformed PAN raises a PinBlockFormatError that is
        also a ValueError; a malformed offset raises ValueError.
        """
        _pan_for_block(pan)
        alg.check_offset(offset)
        clear = self._key(key).dec.update(_block8(pin_block))
        pin = alg.parse_format0(clear, pan)
        expected = alg.add_digits(self._natural_pin(pvk, pan, len(offset)), offset)
        return hmac.compare_digest(pin.encode("ascii"), expected.encode("ascii"))

    # ------------------------------------------------------------------ internals

    def _natural_pin(self, pvk: str, pan: str, length: int) -> str:
        encrypted = self._key(pvk).enc.update(alg.validation_data(pan))
        return alg.decimalize(encrypted, length)

    def _key(self, handle: str) -> _Key:
        cache = self._cache
        if isinstance(handle, str):
            key = cache.get(handle)
            if key is not None:
                cache.move_to_end(handle)
                return key
        if not isinstance(handle, str) or not _HANDLE_RE.fullmatch(handle):
            raise SecurityError("malformed key handle")
        raw = bytes.fromhex(handle)
        clear = self._crypt(self._unwrap_ctx, raw)
        if clear.translate(alg.ODD_PARITY) != clear:
            raise SecurityError("key handle was not made under this module's LMK")
        return self._remember(handle, _Key(clear))

    def _store(self, clear: bytes) -> str:
        clear = clear.translate(alg.ODD_PARITY)
        handle = self._crypt(self._wrap_ctx, clear).hex().upper()
        if handle not in self._cache:
            self._remember(handle, _Key(clear))
        return handle

    def _remember(self, handle: str, key: _Key) -> _Key:
        cache = self._cache
        cache[handle] = key
        cache.move_to_end(handle)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return key

    @staticmethod
    def _crypt(contexts: dict[int, tuple], data: bytes) -> bytes:
        parts = contexts[len(data)]
        return b"".join(ctx.update(data[8 * i : 8 * i + 8]) for i, ctx in enumerate(parts))


def _bytes(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes")
    return bytes(value)


def _pan_for_block(pan: str) -> str:
    try:
        return alg.check_pan(pan)
    except ValueError:
        raise PinBlockPanError("PAN must be 8 to 19 decimal digits") from None


def _block8(pin_block: bytes) -> bytes:
    if not isinstance(pin_block, (bytes, bytearray, memoryview)) or len(pin_block) != 8:
        raise PinBlockFormatError("PIN block must be 8 bytes")
    return bytes(pin_block)


def _fresh_key(random_bytes: RandomBytes, length: int) -> bytes:
    """Random key with odd parity, redrawn while weak or degenerate."""
    while True:
        raw = random_bytes(length)
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != length:
            raise SecurityError("random source returned the wrong number of bytes")
        key = bytes(raw).translate(alg.ODD_PARITY)
        if not _degenerate(key):
            return key
