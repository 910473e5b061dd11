"""The simulator: replays exactly, finds broken rules, and tells what happened."""

import subprocess
import sys

import pytest

from posnet.issuer.core import Issuer
from posnet.sim.cli import parse_seeds
from posnet.sim.run import simulate
from posnet.terminal.core import Terminal


def test_the_same_seed_gives_the_same_run():
    a = simulate(11, 120, "heavy")
    b = simulate(11, 120, "heavy")
    assert a.trace_hash == b.trace_hash and a.outcomes == b.outcomes and a.faults == b.faults
    assert simulate(12, 120, "heavy").trace_hash != a.trace_hash


def test_the_same_seed_gives_the_same_run_in_another_process():
    here = simulate(5, 80, "light").trace_hash
    out = subprocess.run([sys.executable, "-m", "posnet", "sim", "--seed", "5", "--transactions", "80", "--faults", "light"],
                         capture_output=True, text=True, check=True).stdout
    assert f"trace {here}" in out


@pytest.mark.parametrize("profile", ["none", "light", "heavy"])
def test_the_money_rules_hold_under_faults(profile):
    for seed in range(1, 9):
        r = simulate(seed, 150, profile)
        assert r.ok, (seed, r.violations)
        if profile == "heavy":
            assert sum(r.faults.values()) > 20, "heavy means faults"


def first_failing_seed(max_seeds: int) -> int | None:
    for seed in range(1, max_seeds + 1):
        if not simulate(seed, 150, "heavy").ok:
            return seed
    return None


def test_a_terminal_that_forgets_its_reversal_record_is_caught(monkeypatch):
    original = Terminal._send

    def send_without_reversal_record(self, ex, now_ms):
        ex.reversible = False  # the bug: nothing written before the sale goes out
        return original(self, ex, now_ms)

    monkeypatch.setattr(Terminal, "_send", send_without_reversal_record)
    seed = first_failing_seed(10)
    assert seed is not None, "the simulator must catch a terminal that never reverses"
    r = simulate(seed, 150, "heavy", keep_story=True)
    assert any(v.startswith("rule 2") or v.startswith("rule 3") for v in r.violations)
    assert "what happened" in r.story and "faults injected" in r.story


def test_an_issuer_that_does_not_release_on_reversal_is_caught(monkeypatch):
    monkeypatch.setattr(Issuer, "_release", lambda self, original, key, now_ms: True)
    assert first_failing_seed(10) is not None


@pytest.mark.parametrize("text, seeds", [("7", [7]), ("1..4", [1, 2, 3, 4]), ("1,5..6", [1, 5, 6])])
def test_seed_lists(text, seeds):
    assert parse_seeds(text) == seeds
