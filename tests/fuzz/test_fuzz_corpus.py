"""Replays tests/fuzz/corpus: real and broken messages, one per file, as hex.

A file starts with ``#`` lines: a description and its source, then

- ``leg: terminal`` or ``leg: host``;
- ``framed: yes`` when the hex starts with the 2-byte length;
- ``expect: ok`` (decodes, and encodes back to the same bytes) or
  ``expect: error <the exact WireError text>``;
- ``known-bug: ...`` when the expectation fails today because of a bug in the
  codec (the replay is then a strict xfail);
- ``core-known-bug: ...`` when feeding it to the core (the acquirer for the
  terminal leg, the issuer for the host legs) raises or answers with a frame
  that does not decode today.

The hex may span lines; whitespace is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from posnet.effects import Received, Send
from posnet.wire import FrameReader, Message, WireError, decode_host, decode_terminal, encode_host, encode_terminal

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Sample:
    name: str
    leg: str
    data: bytes
    expect: str
    known_bug: str | None
    core_known_bug: str | None


def load(path: Path) -> Sample:
    headers: dict[str, str] = {}
    hex_text = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and key in ("leg", "framed", "expect", "known-bug", "core-known-bug"):
                headers[key] = value
        else:
            hex_text.append(line)
    data = bytes.fromhex("".join("".join(hex_text).split()))
    if headers.get("framed") == "yes":
        (data,) = FrameReader().feed(data)
    assert headers["leg"] in ("terminal", "host"), path
    return Sample(path.stem, headers["leg"], data, headers["expect"], headers.get("known-bug"), headers.get("core-known-bug"))


SAMPLES = [load(p) for p in sorted(CORPUS.glob("*.hex"))]


def decoder(sample: Sample):
    return decode_terminal if sample.leg == "terminal" else decode_host


def test_the_corpus_has_real_and_broken_messages_of_both_legs():
    names = [s.name for s in SAMPLES]
    assert len(names) >= 30
    for prefix in ("t-real-", "t-demo-", "t-broken-", "h-demo-", "h-broken-"):
        assert any(n.startswith(prefix) for n in names), prefix


def _with_marks(sample: Sample, reason: str | None):
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(sample, marks=marks, id=sample.name)


@pytest.mark.parametrize("sample", [_with_marks(s, s.known_bug) for s in SAMPLES])
def test_replay_decodes_as_expected(sample):
    if sample.expect == "ok":
        msg = decoder(sample)(sample.data)
        again = Message(msg.mti, dict(msg.fields), tpdu=msg.tpdu, header=msg.header)
        encode = encode_terminal if sample.leg == "terminal" else encode_host
        assert encode(again) == sample.data
    else:
        assert sample.expect.startswith("error "), sample.expect
        with pytest.raises(WireError) as info:
            decoder(sample)(sample.data)
        assert str(info.value) == sample.expect.removeprefix("error ")


@pytest.mark.parametrize("sample", [_with_marks(s, s.core_known_bug) for s in SAMPLES])
def test_replay_through_the_core_never_raises_and_replies_decode(sample, live):
    if sample.leg == "terminal":
        core, source = live.fresh_acquirer(), "conn:corpus"
    else:
        core, source = live.fresh_issuer(), "switch"
    effects = core.handle(Received(source, sample.data), live.world.now_ms)
    for e in effects:
        if isinstance(e, Send) and e.to == source:
            decoder(sample)(e.frame)
