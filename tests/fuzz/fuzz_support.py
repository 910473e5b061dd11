"""Shared by the fuzz tests: the example budget and the two ways of breaking a frame."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from posnet.wire import Message

# Bounded: the whole fuzz suite runs in well under 30 s. POSNET_FUZZ_EXAMPLES raises
# the budget for a longer hunt; derandomized so that a run is repeatable.
FUZZ_EXAMPLES = int(os.environ.get("POSNET_FUZZ_EXAMPLES", "500"))

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MAX_EDITS = 4
MAX_INSERT_BYTES = 8


def _apply(frame: bytes, edits: list[tuple]) -> bytes:
    data = bytearray(frame)
    for op, where, arg in edits:
        at = where % (len(data) + 1)
        if op == "flip" and data:
            at %= len(data)
            data[at] ^= arg
        elif op == "set" and data:
            at %= len(data)
            data[at] = arg
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = arg
        elif op == "delete":
            del data[at : at + arg]
    return bytes(data)


_POSITION = st.integers(0, 1 << 16)
_EDIT = st.one_of(
    st.tuples(st.just("flip"), _POSITION, st.integers(1, 255)),
    st.tuples(st.just("set"), _POSITION, st.integers(0, 255)),
    st.tuples(st.just("truncate"), _POSITION, st.none()),
    st.tuples(st.just("insert"), _POSITION, st.binary(min_size=1, max_size=MAX_INSERT_BYTES)),
    st.tuples(st.just("delete"), _POSITION, st.integers(1, MAX_INSERT_BYTES)),
)


def mutated(frame: bytes) -> st.SearchStrategy[bytes]:
    """``frame`` with one to four byte flips, overwrites, truncations, insertions or deletions."""
    return st.lists(_EDIT, min_size=1, max_size=MAX_EDITS).map(lambda edits: _apply(frame, edits)).filter(
        lambda out: out != frame
    )


def digits(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=min_size, max_size=max_size)


@st.composite
def rewritten(draw, message: Message, mtis: list[str], values: dict[str, st.SearchStrategy[str]]):
    """``message`` with, maybe, another MTI, up to two fields dropped and up to three fields given
    other well-formed values: frames that decode and go deep into a core."""
    fields = dict(message.fields)
    for key in draw(st.lists(st.sampled_from(sorted(fields, key=int)), max_size=2, unique=True)):
        del fields[key]
    for key in draw(st.lists(st.sampled_from(sorted(values, key=int)), max_size=3, unique=True)):
        fields[key] = draw(values[key])
    mti = draw(st.one_of(st.just(message.mti), st.sampled_from(mtis)))
    return Message(mti, fields, tpdu=message.tpdu, header=message.header)
