"""Behaviour of SecurityModule: key handles, key exchange, PIN flow, errors,
secrecy of keys and PINs, determinism."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

from posnet.security import KeyCheckError, PinBlockFormatError, SecurityError, SecurityModule
from posnet.security import module as module_impl

import sec_reference as ref

LMK_ACQ = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
LMK_TERM = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F00123456789ABCDEF")
LMK_SWITCH = bytes.fromhex("31323334353637383132333435363738")
LMK_ISSUER = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")

TMK = "70F2A84CCBC2AE8625CBB0F2C22AB923"
ZPK_AS = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"
ZPK_SI = "4C4C4C4C4C4C4C4C5D5D5D5D5D5D5D5D"
PVK = "0123456789ABCDEFFEDCBA9876543210"
PAN = "6212341234567890123"


def seeded(seed: int):
    return random.Random(seed).randbytes


# ------------------------------------------------------------ construction

@pytest.mark.parametrize("lmk", [b"", bytes(8), bytes(15), bytes(17), bytes(32), "00" * 16, None])
def test_lmk_must_be_16_or_24_bytes(lmk) -> None:
    with pytest.raises(SecurityError):
        SecurityModule(lmk)


def test_generate_lmk() -> None:
    lmk = SecurityModule.generate_lmk(seeded(1))
    assert len(lmk) == 24
    assert all(bin(b).count("1") % 2 == 1 for b in lmk)
    assert lmk[:8] != lmk[8:16] != lmk[16:]
    assert SecurityModule.generate_lmk(seeded(1)) == lmk
    assert SecurityModule.generate_lmk(seeded(2)) != lmk
    assert len(SecurityModule.generate_lmk()) == 24
    hsm = SecurityModule(lmk)
    assert len(hsm.kcv(hsm.generate_key())) == 4


# ------------------------------------------------------------ key handles

def test_handles_are_deterministic_uppercase_hex_and_not_clear() -> None:
    a, b = SecurityModule(LMK_ACQ), SecurityModule(LMK_ACQ)
    for clear in ("0123456789ABCDEF", TMK, TMK + "0123456789ABCDEF"):
        handle = a.import_clear_key(clear)
        assert handle == b.import_clear_key(clear)
        assert len(handle) == len(clear) and handle == handle.upper()
        assert int(handle, 16) >= 0
        assert clear not in handle and clear[:16] not in handle
    assert SecurityModule(LMK_TERM).import_clear_key(TMK) != a.import_clear_key(TMK)


def test_handle_from_another_lmk_is_refused() -> None:
    handle = SecurityModule(LMK_TERM).import_clear_key(TMK)
    with pytest.raises(SecurityError, match="LMK"):
        SecurityModule(LMK_ACQ).kcv(handle)


def test_half_of_a_double_length_handle_is_not_a_key() -> None:
    hsm = SecurityModule(LMK_ACQ)
    handle = hsm.import_clear_key(TMK)
    for part in (handle[:16], handle[16:], handle[16:] + handle[:16]):
        with pytest.raises(SecurityError):
            hsm.kcv(part)


@pytest.mark.parametrize("handle", ["", "XYZ", "0" * 17, "0" * 31, "G" * 32, "0" * 64, None, 123, b"00" * 8])
def test_malformed_handles(handle) -> None:
    with pytest.raises(SecurityError):
        SecurityModule(LMK_ACQ).kcv(handle)


@pytest.mark.parametrize("clear", ["", "0123", "0123456789ABCDE", "0123456789ABCDEFG", "0" * 40, None, b"\x01" * 16])
def test_malformed_clear_keys(clear) -> None:
    with pytest.raises(SecurityError):
        SecurityModule(LMK_ACQ).import_clear_key(clear)


def test_parity_is_adjusted_without_changing_the_key() -> None:
    hsm = SecurityModule(LMK_ACQ)
    even = hsm.import_clear_key("00000000000000001111111111111111")
    odd = hsm.import_clear_key("01010101010101011010101010101010")
    assert even == odd
    assert hsm.kcv(even) == ref.des_encrypt(bytes.fromhex("00000000000000001111111111111111"), bytes(8))[:4]


@pytest.mark.parametrize("length", [8, 16, 24])
def test_generate_key_odd_parity_and_length(length: int) -> None:
    hsm = SecurityModule(LMK_ACQ, seeded(length))
    kek_clear = "0123456789ABCDEFFEDCBA9876543210"
    key = hsm.generate_key(length)
    assert len(key) == 2 * length
    clear = ref.des_decrypt(bytes.fromhex(kek_clear), hsm.export_key(hsm.import_clear_key(kek_clear), key))
    assert len(clear) == length
    assert all(bin(b).count("1") % 2 == 1 for b in clear)
    assert hsm.kcv(key) == ref.des_encrypt(clear, bytes(8))[:4]


def test_generate_key_default_is_double_length() -> None:
    assert len(SecurityModule(LMK_ACQ).generate_key()) == 32


@pytest.mark.parametrize("length", [0, 12, 32, -16])
def test_generate_key_rejects_other_lengths(length: int) -> None:
    with pytest.raises(ValueError):
        SecurityModule(LMK_ACQ).generate_key(length)


def test_generate_key_redraws_degenerate_keys() -> None:
    good = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    draws = iter([bytes.fromhex("0123456789ABCDEF") * 2, bytes.fromhex("0101010101010101FEDCBA9876543210"), good])
    hsm = SecurityModule(LMK_ACQ, lambda n: next(draws))
    assert hsm.generate_key(16) == hsm.import_clear_key(good.hex())


@pytest.mark.parametrize("bad", [lambda n: bytes(n - 1), lambda n: "x" * n])
def test_random_source_must_return_the_bytes_asked(bad) -> None:
    with pytest.raises(SecurityError):
        SecurityModule(LMK_ACQ, bad).generate_key()


def test_determinism_with_seeded_randomness() -> None:
    one, two = SecurityModule(LMK_ACQ, seeded(42)), SecurityModule(LMK_ACQ, seeded(42))
    keys_one = [one.generate_key(n) for n in (16, 8, 24, 16)]
    keys_two = [two.generate_key(n) for n in (16, 8, 24, 16)]
    assert keys_one == keys_two
    assert len(set(keys_one)) == 4
    other = SecurityModule(LMK_ACQ, seeded(43))
    assert other.generate_key(16) != keys_one[0]


def test_cache_eviction_keeps_handles_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_impl, "CACHE_SIZE", 2)
    hsm = SecurityModule(LMK_ACQ, seeded(5))
    keys = [hsm.generate_key() for _ in range(5)]
    assert "keys_cached=2" in repr(hsm)
    first = [hsm.kcv(k) for k in keys]
    assert [hsm.kcv(k) for k in keys] == first
    assert len(set(first)) == 5
    assert "keys_cached=2" in repr(hsm)


# ------------------------------------------------------- key exchange (F62)

def _sign_on_pair():
    """The acquirer makes working keys and sends them under the TMK with
    KCVs; the terminal imports them into its own module."""
    acq = SecurityModule(LMK_ACQ, seeded(7))
    term = SecurityModule(LMK_TERM)
    tmk_acq, tmk_term = acq.import_clear_key(TMK), term.import_clear_key(TMK)
    pik, mak = acq.generate_key(16), acq.generate_key(16)
    wire = [(acq.export_key(tmk_acq, k), acq.kcv(k)) for k in (pik, mak)]
    term_keys = [term.import_key(tmk_term, enc, kcv) for enc, kcv in wire]
    return acq, term, (pik, mak), term_keys, tmk_term, wire


def test_export_import_round_trip_with_kcv() -> None:
    acq, term, (pik, mak), (t_pik, t_mak), _, wire = _sign_on_pair()
    for (enc, kcv), key in zip(wire, (pik, mak)):
        assert len(enc) == 16 and len(kcv) == 4
        assert enc.hex().upper() not in key
    assert term.kcv(t_pik) == acq.kcv(pik) and term.kcv(t_mak) == acq.kcv(mak)
    assert t_pik != pik  # different LMKs, different handles
    data = b"\x02\x00" + bytes(range(60))
    assert term.cup_mac(t_mak, data) == acq.cup_mac(mak, data)
    assert acq.verify_cup_mac(mak, data, term.cup_mac(t_mak, data))
    block = term.encrypt_pin(t_pik, "246810", PAN)
    zpk = acq.import_clear_key(ZPK_AS)
    assert acq.translate_pin(pik, zpk, block, PAN) != block


def test_import_key_without_kcv_and_with_short_kcv() -> None:
    _, term, _, (t_pik, _), tmk_term, wire = _sign_on_pair()
    enc, kcv = wire[0]
    assert term.import_key(tmk_term, enc) == t_pik
    assert term.import_key(tmk_term, enc, kcv[:3]) == t_pik
    assert term.import_key(tmk_term, bytearray(enc), memoryview(kcv)) == t_pik


@pytest.mark.parametrize(
    "mangle",
    [
        lambda kcv: bytes([kcv[0] ^ 1]) + kcv[1:],
        lambda kcv: kcv[:3] + bytes([kcv[3] ^ 0x80]),
        lambda kcv: bytes(4),
        lambda kcv: kcv[:2],
        lambda kcv: kcv + bytes(5),
        lambda kcv: b"",
    ],
)
def test_import_key_wrong_kcv(mangle) -> None:
    _, term, _, _, tmk_term, wire = _sign_on_pair()
    enc, kcv = wire[0]
    with pytest.raises(KeyCheckError):
        term.import_key(tmk_term, enc, mangle(kcv))


def test_import_key_under_wrong_kek_fails_kcv() -> None:
    _, term, _, _, _, wire = _sign_on_pair()
    enc, kcv = wire[0]
    with pytest.raises(KeyCheckError):
        term.import_key(term.import_clear_key(ZPK_AS), enc, kcv)


@pytest.mark.parametrize("encrypted", [b"", bytes(7), bytes(12), bytes(32), "00" * 16])
def test_import_key_encrypted_length(encrypted) -> None:
    hsm = SecurityModule(LMK_ACQ)
    with pytest.raises(SecurityError):
        hsm.import_key(hsm.import_clear_key(TMK), encrypted)


def test_single_length_key_under_double_length_kek() -> None:
    hsm = SecurityModule(LMK_ACQ)
    tmk = hsm.import_clear_key(TMK)
    key = hsm.import_clear_key("C24A8FB57AA20123")
    assert hsm.export_key(tmk, key) == bytes.fromhex("96D605EA176B7E9E")


# ------------------------------------------------------------------- MACs

def test_verify_cup_mac_rejects_changes() -> None:
    hsm = SecurityModule(LMK_ACQ)
    mak = hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
    data = b"\x02\x00" + b"sale of 1234 fen"
    mac = hsm.cup_mac(mak, data)
    assert hsm.verify_cup_mac(mak, data, mac)
    assert hsm.verify_cup_mac(mak, bytearray(data), bytearray(mac))
    assert not hsm.verify_cup_mac(mak, data + b"\x00\x01", mac)
    assert not hsm.verify_cup_mac(mak, data[:-1] + b"X", mac)
    assert not hsm.verify_cup_mac(mak, data, mac.lower() if mac != mac.lower() else b"00000000")
    assert not hsm.verify_cup_mac(mak, data, mac[:7])
    assert not hsm.verify_cup_mac(mak, data, mac + b"0")
    assert not hsm.verify_cup_mac(hsm.import_clear_key(ZPK_AS), data, mac)
    with pytest.raises(TypeError):
        hsm.verify_cup_mac(mak, data, mac.decode())


def test_cup_mac_zero_padding_is_not_distinguished() -> None:
    # A property of the algorithm (DOMAIN.md): trailing zero bytes up to the
    # block boundary do not change the MAC.
    hsm = SecurityModule(LMK_ACQ)
    mak = hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
    assert hsm.cup_mac(mak, b"\x02\x00\x01") == hsm.cup_mac(mak, b"\x02\x00\x01\x00\x00")


def test_verify_retail_mac_rejects_changes() -> None:
    hsm = SecurityModule(LMK_ACQ)
    zak = hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
    data = b"0200 host leg message"
    mac = hsm.retail_mac(zak, data)
    assert len(mac) == 8
    assert hsm.verify_retail_mac(zak, data, mac)
    assert not hsm.verify_retail_mac(zak, data + b"!", mac)
    assert not hsm.verify_retail_mac(zak, data, mac[:4])
    assert not hsm.verify_retail_mac(zak, data, bytes([mac[0] ^ 1]) + mac[1:])
    assert not hsm.verify_retail_mac(hsm.import_clear_key(ZPK_AS), data, mac)


@pytest.mark.parametrize("clear", ["0123456789ABCDEF", "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567"])
def test_retail_mac_needs_double_length_key(clear: str) -> None:
    hsm = SecurityModule(LMK_ACQ)
    with pytest.raises(SecurityError):
        hsm.retail_mac(hsm.import_clear_key(clear), b"data")


def test_retail_mac_repeated_calls_do_not_share_state() -> None:
    hsm = SecurityModule(LMK_ACQ)
    zak = hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
    first = hsm.retail_mac(zak, b"Now is the time for all ")
    hsm.retail_mac(zak, bytes(range(100)))
    assert hsm.retail_mac(zak, b"Now is the time for all ") == first


# ------------------------------------------------------------ PIN flow

def _network():
    """Terminal -> acquirer -> switch -> issuer, each with its own module."""
    acq = SecurityModule(LMK_ACQ, seeded(11))
    switch = SecurityModule(LMK_SWITCH)
    issuer = SecurityModule(LMK_ISSUER)
    pik = acq.generate_key()
    keys = {
        "pik": pik,
        "acq_zpk": acq.import_clear_key(ZPK_AS),
        "sw_in": switch.import_clear_key(ZPK_AS),
        "sw_out": switch.import_clear_key(ZPK_SI),
        "iss_zpk": issuer.import_clear_key(ZPK_SI),
        "pvk": issuer.import_clear_key(PVK),
    }
    return acq, switch, issuer, keys


def _to_issuer(acq, switch, keys, block: bytes, pan: str) -> bytes:
    at_acq = acq.translate_pin(keys["pik"], keys["acq_zpk"], block, pan)
    return switch.translate_pin(keys["sw_in"], keys["sw_out"], at_acq, pan)


@pytest.mark.parametrize(
    "pin, entered, expected",
    [
        ("1234", "1234", True),
        ("1234", "1235", False),
        ("1234", "4321", False),
        ("1234", "12345", False),  # other length: offset length is the check length
        ("000000", "000000", True),
        ("999999999999", "999999999999", True),
        ("999999999999", "999999999990", False),
    ],
)
def test_pin_flow_end_to_end(pin: str, entered: str, expected: bool) -> None:
    acq, switch, issuer, keys = _network()
    offset = issuer.pin_offset(keys["pvk"], PAN, pin)
    assert len(offset) == len(pin) and offset.isdigit()
    block = acq.encrypt_pin(keys["pik"], entered, PAN)  # the PIN pad shares the PIK
    at_issuer = _to_issuer(acq, switch, keys, block, PAN)
    assert issuer.verify_pin(keys["iss_zpk"], at_issuer, PAN, keys["pvk"], offset) is expected


def test_translated_block_is_the_same_clear_block_under_the_new_key() -> None:
    acq, switch, issuer, keys = _network()
    block = acq.encrypt_pin(keys["pik"], "8642", PAN)
    at_issuer = _to_issuer(acq, switch, keys, block, PAN)
    assert ref.des_decrypt(bytes.fromhex(ZPK_SI), at_issuer) == ref.format0_clear("8642", PAN)


def test_verify_pin_with_wrong_pvk_fails() -> None:
    acq, switch, issuer, keys = _network()
    offset = issuer.pin_offset(keys["pvk"], PAN, "1234")
    block = _to_issuer(acq, switch, keys, acq.encrypt_pin(keys["pik"], "1234", PAN), PAN)
    other_pvk = issuer.import_clear_key("1313131313131313")
    assert not issuer.verify_pin(keys["iss_zpk"], block, PAN, other_pvk, offset)


def test_block_for_another_pan_is_a_format_error() -> None:
    acq, switch, issuer, keys = _network()
    other = "6212341234567890456"
    block = acq.encrypt_pin(keys["pik"], "1234", other)
    with pytest.raises(PinBlockFormatError):
        acq.translate_pin(keys["pik"], keys["acq_zpk"], block, PAN)
    at_issuer = _to_issuer(acq, switch, keys, block, other)
    offset = issuer.pin_offset(keys["pvk"], PAN, "1234")
    with pytest.raises(PinBlockFormatError):
        issuer.verify_pin(keys["iss_zpk"], at_issuer, PAN, keys["pvk"], offset)


@pytest.mark.parametrize(
    "block",
    [bytes(8), b"\xff" * 8, bytes.fromhex("0123456789ABCDEF"), bytes.fromhex("DEADBEEFCAFEBABE")],
)
def test_garbage_block_is_a_format_error(block: bytes) -> None:
    acq, _, issuer, keys = _network()
    with pytest.raises(PinBlockFormatError):
        acq.translate_pin(keys["pik"], keys["acq_zpk"], block, PAN)
    with pytest.raises(PinBlockFormatError):
        issuer.verify_pin(keys["iss_zpk"], block, PAN, keys["pvk"], "0000")


def test_block_under_the_wrong_key_is_a_format_error() -> None:
    acq, _, _, keys = _network()
    block = acq.encrypt_pin(keys["acq_zpk"], "1234", PAN)
    with pytest.raises(PinBlockFormatError):
        acq.translate_pin(keys["pik"], keys["acq_zpk"], block, PAN)


@pytest.mark.parametrize("clear", ["1412345FFFFFFFFF", "031234FFFFFFFFFF", "0D1234567890123F", "041234FFFFFFFFFE", "0412A4FFFFFFFFFF"])
def test_invalid_format0_fields(clear: str) -> None:
    """Wrong format nibble, length 3, length 13, bad padding, non-digit."""
    hsm = SecurityModule(LMK_ACQ)
    pik = hsm.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
    pan = "4000000000000002"  # PAN field all zeros: the clear block is the PIN field
    block = ref.des_encrypt(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex(clear))
    with pytest.raises(PinBlockFormatError):
        hsm.translate_pin(pik, pik, block, pan)


@pytest.mark.parametrize("block", [b"", bytes(7), bytes(9), bytes(16), "00" * 8, None])
def test_pin_block_must_be_8_bytes(block) -> None:
    acq, _, _, keys = _network()
    with pytest.raises(PinBlockFormatError):
        acq.translate_pin(keys["pik"], keys["acq_zpk"], block, PAN)


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "", " 1234", "1234 ", "\u0661\u0662\u0663\u0664", 1234, None])
def test_encrypt_pin_rejects_bad_pins(pin) -> None:
    acq, _, _, keys = _network()
    with pytest.raises(ValueError):
        acq.encrypt_pin(keys["pik"], pin, PAN)
    with pytest.raises(ValueError):
        acq.pin_offset(keys["pik"], PAN, pin)


@pytest.mark.parametrize("pan", ["1234567", "1" * 20, "41111111111111x1", "", 4111111111111111])
def test_bad_pans_are_value_errors(pan) -> None:
    acq, _, issuer, keys = _network()
    with pytest.raises(ValueError):
        acq.encrypt_pin(keys["pik"], "1234", pan)
    # Hosts catch PinBlockFormatError (answer 99): a bad PAN there is both.
    for call in (
        lambda: acq.translate_pin(keys["pik"], keys["acq_zpk"], bytes(8), pan),
        lambda: issuer.verify_pin(keys["iss_zpk"], bytes(8), pan, keys["pvk"], "1234"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, PinBlockFormatError)
    with pytest.raises(ValueError) as info:
        acq.pin_offset(keys["pik"], pan, "1234")
    assert not isinstance(info.value, SecurityError)


@pytest.mark.parametrize("offset", ["123", "1234567890123", "12x4", "", None])
def test_bad_offsets_are_value_errors(offset) -> None:
    _, _, issuer, keys = _network()
    with pytest.raises(ValueError):
        issuer.verify_pin(keys["iss_zpk"], bytes(8), PAN, keys["pvk"], offset)


# ---------------------------------------------------- nothing secret shows

SECRET_LMK = bytes.fromhex("5A5A5A5A5A5A5A5A3C3C3C3C3C3C3C3C")
SECRET_KEY = "7A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D"
SECRET_PIN = "97531864"


def _texts(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _failing_calls():
    hsm = SecurityModule(SECRET_LMK)
    key = hsm.import_clear_key(SECRET_KEY)
    block = hsm.encrypt_pin(key, SECRET_PIN, PAN)
    other_pan = "6212341234567890999"
    return [
        lambda: hsm.import_clear_key(SECRET_KEY[:-1]),
        lambda: hsm.import_clear_key(SECRET_KEY[:-2] + "ZZ"),
        lambda: hsm.import_clear_key(SECRET_KEY + "0"),
        lambda: hsm.encrypt_pin(key, SECRET_PIN + "12345", PAN),
        lambda: hsm.encrypt_pin(key, SECRET_PIN[:-1] + "x", PAN),
        lambda: hsm.pin_offset(key, PAN, SECRET_PIN[:3]),
        lambda: hsm.import_key(key, hsm.export_key(key, key), b"\x00\x00\x00\x00"),
        lambda: hsm.translate_pin(key, key, block, other_pan),
        lambda: hsm.verify_pin(key, block, other_pan, key, "1234"),
        lambda: hsm.verify_pin(key, block, PAN, key, SECRET_PIN[:-1] + "x"),
        lambda: hsm.translate_pin(key, key, block, PAN[:-1] + "x"),
        lambda: SecurityModule(SECRET_LMK[:-1]),
        lambda: SecurityModule(LMK_ACQ).kcv(key),
        lambda: hsm.retail_mac(hsm.import_clear_key(SECRET_KEY[:16]), b""),
    ]


@pytest.mark.parametrize("index", range(len(_failing_calls())))
def test_exception_messages_carry_no_secrets(index: int) -> None:
    call = _failing_calls()[index]
    with pytest.raises((SecurityError, ValueError)) as info:
        call()
    text = _texts(info.value).upper()
    for secret in (SECRET_KEY, SECRET_KEY[:16], SECRET_KEY[16:], SECRET_KEY[:-1], SECRET_LMK.hex().upper(), SECRET_LMK[:8].hex().upper()):
        assert secret.upper() not in text
    assert SECRET_PIN not in text and SECRET_PIN[:3] not in text and PAN not in text


def test_repr_and_str_show_no_key_material() -> None:
    hsm = SecurityModule(SECRET_LMK, seeded(3))
    key = hsm.import_clear_key(SECRET_KEY)
    hsm.generate_key()
    hsm.cup_mac(key, b"abc")
    hsm.encrypt_pin(key, SECRET_PIN, PAN)
    shown = " ".join([repr(hsm), str(hsm), repr(vars(hsm)), repr(hsm._cache), key]).upper()
    assert "SECURITYMODULE" in shown
    for secret in (SECRET_KEY, SECRET_KEY[:16], SECRET_KEY[16:], SECRET_LMK.hex().upper(), SECRET_LMK[:8].hex().upper()):
        assert secret not in shown
    assert SECRET_PIN not in shown


@pytest.mark.parametrize("operation", [pickle.dumps, copy.copy, copy.deepcopy])
def test_module_cannot_be_pickled_or_copied(operation) -> None:
    hsm = SecurityModule(SECRET_LMK)
    hsm.import_clear_key(SECRET_KEY)
    with pytest.raises(TypeError):
        operation(hsm)
    with pytest.raises(TypeError):
        operation(next(iter(hsm._cache.values())))
