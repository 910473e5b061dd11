"""Faults and fault decisions, without sockets: validation, parsing, and what one seed decides."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posnet.runtime.chaos import (
    CORRUPT_MAX_BITS,
    MAX_DELAY_MS,
    SPLIT_MAX_PIECES,
    FaultError,
    Faults,
    cut,
    decide,
    flip_bits,
    parse_assignments,
)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"dorp": 0.1}, "unknown fault 'dorp'; the faults are delay_ms, jitter_ms, drop, drop_next,"),
        ({"drop": 1.5}, "drop: 1.5 is not a probability from 0.0 to 1.0"),
        ({"corrupt": -0.1}, "corrupt: -0.1 is not a probability from 0.0 to 1.0"),
        ({"split": float("nan")}, "split: nan is not a probability"),
        ({"delay_ms": -1}, "delay_ms: -1 is outside 0..600000"),
        ({"jitter_ms": MAX_DELAY_MS + 1}, "jitter_ms: 600001 is outside 0..600000"),
        ({"drop_next": 2.5}, "drop_next: 2.5 is not a whole number"),
        ({"reset_next": "1"}, "reset_next: '1' is not a number"),
        ({"black_hole": 1}, "black_hole: 1 is not true or false"),
        ({"duplicate": True}, "duplicate: True is not a number"),
    ],
)
def test_a_fault_out_of_range_or_unknown_is_refused_with_its_name(values, message):
    with pytest.raises(FaultError) as e:
        Faults.from_dict(values)
    assert str(e.value).startswith(message)


def test_whole_numbers_pass_as_probabilities_and_integral_floats_as_counts():
    f = Faults.from_dict({"drop": 1, "drop_next": 2.0})
    assert (f.drop, f.drop_next) == (1.0, 2)
    assert isinstance(f.drop, float) and isinstance(f.drop_next, int)


@given(
    st.builds(
        Faults,
        delay_ms=st.integers(0, MAX_DELAY_MS),
        jitter_ms=st.integers(0, 1000),
        drop=st.floats(0, 1),
        drop_next=st.integers(0, 100),
        corrupt=st.floats(0, 1),
        split=st.floats(0, 1),
        black_hole=st.booleans(),
    )
)
def test_faults_survive_a_round_trip_through_a_dict(faults):
    assert Faults.from_dict(faults.to_dict()) == faults


def test_command_line_assignments_are_typed_and_checked():
    assert parse_assignments(["drop=0.1,delay_ms=50", "black_hole=on", "corrupt_next=2"]) == {
        "drop": 0.1,
        "delay_ms": 50,
        "black_hole": True,
        "corrupt_next": 2,
    }
    assert parse_assignments(["black_hole=false"]) == {"black_hole": False}
    with pytest.raises(FaultError, match="'drop': write NAME=VALUE"):
        parse_assignments(["drop"])
    with pytest.raises(FaultError, match="delay_ms: 'fast' is not a whole number"):
        parse_assignments(["delay_ms=fast"])
    with pytest.raises(FaultError, match="drop: 2.0 is not a probability"):
        parse_assignments(["drop=2"])
    with pytest.raises(FaultError, match="unknown fault 'lag'"):
        parse_assignments(["lag=5"])


def test_describe_names_the_faults_that_are_on():
    assert Faults().describe() == "none"
    assert Faults(drop=0.1, delay_ms=50, black_hole=True).describe() == "delay_ms=50,drop=0.1,black_hole=true"


def test_next_counts_act_first_and_count_down_and_the_black_hole_spends_none_of_them():
    f = Faults(reset_next=1, drop_next=2, corrupt_next=1, black_hole=True)
    rng = random.Random(1)
    assert decide(f, rng, 10).action == "swallow"
    assert (f.reset_next, f.drop_next, f.corrupt_next) == (1, 2, 1)
    f.black_hole = False
    actions = [decide(f, rng, 10) for _ in range(5)]
    assert [d.action for d in actions] == ["reset", "drop", "drop", "pass", "pass"]
    assert actions[3].flips and not actions[4].flips
    assert (f.reset_next, f.drop_next, f.corrupt_next) == (0, 0, 0)


@given(
    payload_len=st.integers(1, 300),
    seed=st.integers(0, 2**32),
    delay_ms=st.integers(0, 500),
    jitter_ms=st.integers(0, 500),
)
def test_a_decision_stays_inside_the_frame_and_the_delay_inside_its_window(payload_len, seed, delay_ms, jitter_ms):
    f = Faults(corrupt=1.0, split=1.0, delay_ms=delay_ms, jitter_ms=jitter_ms)
    d = decide(f, random.Random(seed), payload_len)
    assert 1 <= len(d.flips) <= CORRUPT_MAX_BITS and len(set(d.flips)) == len(d.flips)
    assert all(0 <= b < payload_len * 8 for b in d.flips)
    assert 1 <= len(d.cuts) < SPLIT_MAX_PIECES and list(d.cuts) == sorted(set(d.cuts))
    assert all(0 < c < payload_len + 2 for c in d.cuts)
    assert delay_ms / 1000 <= d.delay_s <= (delay_ms + jitter_ms) / 1000
    payload = bytes(i * 31 % 256 for i in range(payload_len))
    assert flip_bits(payload, d.flips) != payload
    framed = b"\x00\x01" + payload
    assert b"".join(cut(framed, d.cuts)) == framed


def test_switching_one_fault_on_does_not_shift_the_decisions_of_the_others():
    plain = Faults(corrupt=0.5, split=0.5, duplicate=0.3, jitter_ms=10)
    with_drops = Faults(corrupt=0.5, split=0.5, duplicate=0.3, jitter_ms=10, drop=0.4)
    a, b = random.Random(99), random.Random(99)
    pairs = [(decide(plain, a, 50), decide(with_drops, b, 50)) for _ in range(300)]
    kept = [(x, y) for x, y in pairs if y.action == "pass"]
    assert 100 < len(kept) < 300
    assert all(x == y for x, y in kept)


def test_one_seed_one_sequence():
    def sequence(seed):
        f = Faults(drop=0.2, corrupt=0.2, split=0.2, duplicate=0.2, reset=0.05, jitter_ms=5)
        rng = random.Random(seed)
        return [decide(f, rng, 30).summary() for _ in range(200)]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)
