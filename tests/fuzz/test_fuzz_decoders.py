"""Whatever bytes arrive, the decoders answer with a Message or a WireError:
never an IndexError, KeyError, UnicodeDecodeError or a ValueError of another
kind, and never an error text that carries the card number, track or PIN block.
A WireError's partial holds only a 4-digit MTI and fields that validate on
their own, never the field that failed: what the acquirer may echo in a 30.
"""

from __future__ import annotations

import re

import pytest
from fuzz_support import FUZZ, mutated
from hypothesis import given
from hypothesis import strategies as st

from posnet.wire import FrameReader, Message, WireError, decode_host, decode_terminal
from posnet.wire.specs import HOST_FIELDS, TERMINAL_FIELDS

PAN = "6222020000000001"
SECRET_FIELDS = ("2", "35", "36", "52", "55", "62")


def decode_or_wire_error(decode, data: bytes) -> Message | WireError:
    try:
        return decode(data)
    except WireError as e:
        return e
    # Anything else propagates and fails the test with its own type and traceback.


def assert_clean(e: WireError, original: Message | None, rows=None) -> None:
    assert isinstance(str(e), str) and str(e)
    if rows is not None:
        assert_partial_follows_the_spec(e, rows)
    assert e.position is None or isinstance(e.position, int)
    assert PAN not in str(e)
    if original is not None:
        for key in SECRET_FIELDS:
            value = original.get(key)
            if value and len(value) >= 8:
                assert value not in str(e), f"field {key} echoed in {e}"
    if e.field in SECRET_FIELDS:
        # A value in parentheses is only ever shown masked: ('<16 characters>').
        shown = re.findall(r"\((['\"])(.*?)\1\)", str(e))
        assert all(value.startswith("<") and value.endswith(" characters>") for _, value in shown), str(e)


def assert_partial_follows_the_spec(e: WireError, rows) -> None:
    """partial is what a reply may be framed with: a 4-digit MTI and fields that validate, never the one that failed."""
    partial = dict(e.partial)
    mti = partial.pop("t", None)
    assert mti is None or (len(mti) == 4 and mti.isdigit()), e.partial
    assert e.field not in partial, f"partial holds field {e.field}, which failed: {e}"
    for key, value in partial.items():
        kind = rows[int(key)][0]
        if kind in ("n", "nl"):
            assert value == "" or value.isdigit(), (key, e)
        elif kind == "z":
            assert all(c in "0123456789=D" for c in value), (key, e)


def terminal_frames(live) -> list[bytes]:
    return live.frames_to("acquirer", "conn:") + live.frames_to("pos-10000001")


def host_frames(live) -> list[bytes]:
    return live.frames_to("switch") + live.frames_to("issuer-bank-a") + live.frames_to("acquirer", "switch")


def test_the_live_frames_decode(live):
    assert len(terminal_frames(live)) == 6 and len(host_frames(live)) == 8
    for data in terminal_frames(live):
        decode_terminal(data)
    for data in host_frames(live):
        decode_host(data)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_on_the_terminal_leg(data):
    result = decode_or_wire_error(decode_terminal, data)
    if isinstance(result, WireError):
        assert_clean(result, None, TERMINAL_FIELDS)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_after_a_real_tpdu_header_and_mti(data):
    # Past the TPDU check, so the bitmap and field decoders see the random part.
    result = decode_or_wire_error(decode_terminal, bytes.fromhex("6000030000602200000000" "0200") + data)
    if isinstance(result, WireError):
        assert_clean(result, None, TERMINAL_FIELDS)


@FUZZ
@given(data=st.binary(max_size=300), mti=st.sampled_from([b"0200", b"0210", b"0400", b"0800"]))
def test_random_bytes_on_the_host_leg(data, mti):
    result = decode_or_wire_error(decode_host, mti + data)
    if isinstance(result, WireError):
        assert_clean(result, None, HOST_FIELDS)


@FUZZ
@given(data=st.data())
def test_mutated_terminal_frames(live, data):
    original = data.draw(st.sampled_from(terminal_frames(live)))
    frame = data.draw(mutated(original))
    result = decode_or_wire_error(decode_terminal, frame)
    if isinstance(result, WireError):
        assert_clean(result, decode_terminal(original), TERMINAL_FIELDS)
    else:
        assert result.raw == frame[11:]


@FUZZ
@given(data=st.data())
def test_mutated_host_frames(live, data):
    original = data.draw(st.sampled_from(host_frames(live)))
    frame = data.draw(mutated(original))
    result = decode_or_wire_error(decode_host, frame)
    if isinstance(result, WireError):
        assert_clean(result, decode_host(original), HOST_FIELDS)
    else:
        assert result.raw == frame


@FUZZ
@given(data=st.binary(max_size=64), chunks=st.lists(st.integers(1, 16), max_size=8))
def test_frame_reader_raises_only_wire_errors(data, chunks):
    reader = FrameReader(max_frame_bytes=32)
    position = 0
    try:
        for size in chunks + [len(data)]:
            for body in reader.feed(data[position : position + size]):
                assert 1 <= len(body) <= 32
            position += size
    except WireError as e:
        assert str(e).startswith("frame length ")


@pytest.mark.parametrize("size", [0, 1, 20, 21])
def test_frames_around_the_minimum_size(size):
    result = decode_or_wire_error(decode_terminal, bytes.fromhex("6000030000602200000000" "0200" "0000000000000000")[:size])
    assert isinstance(result, (Message, WireError))
