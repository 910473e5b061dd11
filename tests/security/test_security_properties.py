"""Property tests: the PIN path for any PIN and PAN, and the MACs against the
independent reference implementations for any data and key."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from posnet.security import PinBlockFormatError, SecurityModule

import sec_reference as ref

ACQ = SecurityModule(bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"))
SWITCH = SecurityModule(bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F00123456789ABCDEF"))
ISSUER = SecurityModule(bytes.fromhex("FEDCBA98765432100123456789ABCDEF"))

ZPK_AS, ZPK_SI = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A", "4C4C4C4C4C4C4C4C5D5D5D5D5D5D5D5D"
PIK = ACQ.import_clear_key("0123456789ABCDEFFEDCBA9876543210")
ACQ_ZPK = ACQ.import_clear_key(ZPK_AS)
SW_IN, SW_OUT = SWITCH.import_clear_key(ZPK_AS), SWITCH.import_clear_key(ZPK_SI)
ISS_ZPK = ISSUER.import_clear_key(ZPK_SI)
PVK = ISSUER.import_clear_key("A1B2C3D4E5F60718293A4B5C6D7E8F90")

pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)
des_keys = st.binary(min_size=16, max_size=16)


def to_issuer(block: bytes, pan: str) -> bytes:
    at_acq = ACQ.translate_pin(PIK, ACQ_ZPK, block, pan)
    return SWITCH.translate_pin(SW_IN, SW_OUT, at_acq, pan)


@settings(max_examples=300, deadline=None)
@given(pin=pins, pan=pans)
def test_encrypt_translate_verify(pin: str, pan: str) -> None:
    offset = ISSUER.pin_offset(PVK, pan, pin)
    block = to_issuer(ACQ.encrypt_pin(PIK, pin, pan), pan)
    assert ref.des_decrypt(bytes.fromhex(ZPK_SI), block) == ref.format0_clear(pin, pan)
    assert ISSUER.verify_pin(ISS_ZPK, block, pan, PVK, offset)


@settings(max_examples=300, deadline=None)
@given(pin=pins, other=pins, pan=pans)
def test_a_different_pin_does_not_verify(pin: str, other: str, pan: str) -> None:
    if other == pin:
        other = pin[:-1] + str((int(pin[-1]) + 1) % 10)
    offset = ISSUER.pin_offset(PVK, pan, pin)
    block = to_issuer(ACQ.encrypt_pin(PIK, other, pan), pan)
    assert not ISSUER.verify_pin(ISS_ZPK, block, pan, PVK, offset)


@settings(max_examples=200, deadline=None)
@given(pin=pins, pan=pans)
def test_offset_matches_reference(pin: str, pan: str) -> None:
    natural = ref.ibm3624_natural_pin(bytes.fromhex("A1B2C3D4E5F60718293A4B5C6D7E8F90"), pan, len(pin))
    expected = "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural))
    assert ISSUER.pin_offset(PVK, pan, pin) == expected


def _mutate(pin: str, changes: list[tuple[int, str]]) -> str:
    field = list(("0%X" % len(pin) + pin).ljust(16, "F"))
    for position, nibble in changes:
        field[position] = nibble
    return "".join(field)


# Clear PIN fields: a valid one, often with one or two nibbles changed (which
# may or may not keep it valid).
pin_fields = st.builds(
    _mutate,
    pins,
    st.lists(st.tuples(st.integers(0, 15), st.sampled_from("0123456789ABCDEF")), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(pin_field=pin_fields, pan=pans)
def test_translate_accepts_exactly_valid_format0(pin_field: str, pan: str) -> None:
    clear = ref.xor(bytes.fromhex(pin_field), ref.pan_field(pan))
    block = ref.des_encrypt(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), clear)
    expected_pin = ref.format0_pin(clear, pan)
    try:
        out = ACQ.translate_pin(PIK, ACQ_ZPK, block, pan)
    except PinBlockFormatError:
        assert expected_pin is None
    else:
        assert expected_pin is not None
        event("accepted")
        assert ref.des_decrypt(bytes.fromhex(ZPK_AS), out) == clear


@settings(max_examples=200, deadline=None)
@given(key=des_keys, data=st.binary(max_size=300))
def test_cup_mac_matches_reference(key: bytes, data: bytes) -> None:
    mak = ACQ.import_clear_key(key.hex())
    assert ACQ.cup_mac(mak, data) == ref.cup_mac(key, data)


@settings(max_examples=200, deadline=None)
@given(key=des_keys, data=st.binary(max_size=300))
def test_retail_mac_matches_reference(key: bytes, data: bytes) -> None:
    zak = ACQ.import_clear_key(key.hex())
    mac = ACQ.retail_mac(zak, data)
    assert mac == ref.retail_mac(key, data)
    assert ACQ.verify_retail_mac(zak, data, mac)


@settings(max_examples=100, deadline=None)
@given(kek=des_keys, key=st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_export_import_round_trip(kek: bytes, key: bytes) -> None:
    kek_handle = ACQ.import_clear_key(kek.hex())
    handle = ACQ.import_clear_key(key.hex())
    encrypted = ACQ.export_key(kek_handle, handle)
    assert SWITCH.kcv(SWITCH.import_key(SWITCH.import_clear_key(kek.hex()), encrypted, ACQ.kcv(handle))) == ACQ.kcv(handle)
    assert ACQ.import_key(kek_handle, encrypted) == handle
