"""Replays tests/fuzz/corpus: real and broken messages, one per file, as hex.

A file starts with ``#`` lines: a description and its source, then

- ``leg: terminal`` or ``leg: host``;
- ``framed: yes`` when the hex starts with the 2-byte length;
- ``expect: ok`` (decodes, and encodes back to the same bytes) or
  ``expect: error <the exact WireError text>``;
- ``core: <outcome>``, what the core does with it (the acquirer for the
  terminal leg, the issuer for the host legs): ``reply <F39>`` (one reply to
  the sender, the request's MTI + 10, that decodes; ``reply`` alone when
  F39 may vary), ``close`` (the connection is closed, nothing sent), or
  ``drop`` (nothing sent, nothing closed).

The hex may span lines; whitespace is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from posnet.effects import Close, Received, Send
from posnet.wire import FrameReader, Message, WireError, decode_host, decode_terminal, encode_host, encode_terminal, response_mti

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Sample:
    name: str
    leg: str
    data: bytes
    expect: str
    core: str


def load(path: Path) -> Sample:
    headers: dict[str, str] = {}
    hex_text = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and key in ("leg", "framed", "expect", "core"):
                headers[key] = value
        else:
            hex_text.append(line)
    data = bytes.fromhex("".join("".join(hex_text).split()))
    if headers.get("framed") == "yes":
        (data,) = FrameReader().feed(data)
    assert headers["leg"] in ("terminal", "host"), path
    assert headers["core"] in ("reply", "close", "drop") or headers["core"].startswith("reply "), path
    return Sample(path.stem, headers["leg"], data, headers["expect"], headers["core"])


SAMPLES = [load(p) for p in sorted(CORPUS.glob("*.hex"))]


def decoder(sample: Sample):
    return decode_terminal if sample.leg == "terminal" else decode_host


def test_the_corpus_has_real_and_broken_messages_of_both_legs():
    names = [s.name for s in SAMPLES]
    assert len(names) >= 30
    for prefix in ("t-real-", "t-demo-", "t-broken-", "h-demo-", "h-broken-"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
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


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_replay_through_the_core_does_what_the_file_says(sample, live):
    if sample.leg == "terminal":
        core, source = live.fresh_acquirer(), "conn:corpus"
    else:
        core, source = live.fresh_issuer(), "switch"
    effects = core.handle(Received(source, sample.data), live.world.now_ms)
    sent = [e for e in effects if isinstance(e, (Send, Close))]
    if sample.core == "drop":
        assert sent == []
    elif sample.core == "close":
        assert sent == [Close(source)]
    else:
        (reply,) = [decoder(sample)(e.frame) for e in sent if isinstance(e, Send) and e.to == source]
        assert sent == [e for e in sent if isinstance(e, Send) and e.to == source]
        request_mti = sample.data[11:13].hex() if sample.leg == "terminal" else sample.data[:4].decode("ascii")
        assert reply.mti == response_mti(request_mti)
        rc = sample.core.removeprefix("reply").strip()
        assert not rc or reply["39"] == rc, reply["39"]
