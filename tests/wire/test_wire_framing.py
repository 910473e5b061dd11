"""TCP framing on both legs: a 2-byte big-endian length, then the message."""

from __future__ import annotations

import pytest

from posnet.wire import MAX_FRAME_BYTES, FrameReader, WireError, frame

MESSAGES = [b"\x60" * 1, bytes(range(256)) * 3, b"0800" + bytes(60), bytes(MAX_FRAME_BYTES)]
STREAM = b"".join(frame(m) for m in MESSAGES)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, len(STREAM)])
def test_frames_split_across_any_chunk_size_come_out_whole(chunk):
    reader = FrameReader()
    out = []
    for i in range(0, len(STREAM), chunk):
        out += reader.feed(STREAM[i : i + chunk])
    assert out == MESSAGES


def test_a_split_inside_the_length_prefix_waits_for_the_second_byte():
    reader = FrameReader()
    data = frame(b"abc")
    assert reader.feed(data[:1]) == []
    assert reader.feed(data[1:2]) == []
    assert reader.feed(data[2:4]) == []
    assert reader.feed(data[4:] + frame(b"d")[:1]) == [b"abc"]
    assert reader.feed(frame(b"d")[1:]) == [b"d"]


def test_several_frames_in_one_chunk():
    assert FrameReader().feed(frame(b"a") + frame(b"bc") + frame(b"def")) == [b"a", b"bc", b"def"]


def test_zero_length_is_refused():
    with pytest.raises(WireError, match=f"^frame length 0 outside 1..{MAX_FRAME_BYTES}$"):
        FrameReader().feed(b"\x00\x00")


def test_a_length_over_the_limit_is_refused_before_its_body_arrives():
    reader = FrameReader()
    with pytest.raises(WireError, match=f"^frame length 4097 outside 1..{MAX_FRAME_BYTES}$"):
        reader.feed((MAX_FRAME_BYTES + 1).to_bytes(2, "big"))
    with pytest.raises(WireError, match="^frame length 65535 outside 1..4096$"):
        FrameReader().feed(b"\xff\xff")


def test_the_limit_is_a_parameter():
    reader = FrameReader(max_frame_bytes=16)
    assert reader.feed(frame(bytes(16))) == [bytes(16)]
    with pytest.raises(WireError, match="^frame length 17 outside 1..16$"):
        reader.feed(frame(bytes(17)))


def test_a_bad_length_after_good_frames_still_raises():
    with pytest.raises(WireError):
        FrameReader().feed(frame(b"ok") + b"\x00\x00")


def test_frame_refuses_a_message_over_the_limit():
    assert frame(bytes(MAX_FRAME_BYTES))[:2] == b"\x10\x00"
    with pytest.raises(WireError, match=f"^message of {MAX_FRAME_BYTES + 1} bytes exceeds {MAX_FRAME_BYTES}$"):
        frame(bytes(MAX_FRAME_BYTES + 1))
