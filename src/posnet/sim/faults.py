"""Fault profiles for the simulator: every probability a named setting.

Link faults apply to each frame on each link; party faults to each step of
the traffic (a step is one terminal function started).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, fields

from .world import LinkFault


@dataclass(frozen=True)
class FaultProfile:
    name: str
    latency_ms: int = 0  # every frame takes this long, and up to as much again
    drop: float = 0.0  # a frame is lost
    late: float = 0.0  # a frame is delayed past every timeout
    late_ms: int = 45_000  # … by this long
    duplicate: float = 0.0  # a frame arrives twice
    reorder: float = 0.0  # a frame is held back a little, so the next one overtakes it
    corrupt: float = 0.0  # a frame has a bit flipped
    host_crash: float = 0.0  # per step: the acquirer, the switch or an issuer dies …
    power_cut: float = 0.0  # per step: a terminal loses power …
    shock: float = 0.0  # per step: a terminal is knocked into protection mode (保护状态) …
    restart_ms: int = 20_000  # … and starts again (is unlocked) this long after

    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "name" and getattr(self, f.name)]
        return f"{self.name} ({', '.join(parts) or 'no faults'})"


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile("none"),
    "light": FaultProfile("light", latency_ms=2, drop=0.005, late=0.002, duplicate=0.005, reorder=0.01, corrupt=0.002,
                          host_crash=0.002, power_cut=0.002, shock=0.001),
    "heavy": FaultProfile("heavy", latency_ms=5, drop=0.03, late=0.01, duplicate=0.02, reorder=0.05, corrupt=0.01,
                          host_crash=0.01, power_cut=0.01, shock=0.01),
}


def profile(name: str) -> FaultProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no fault profile {name!r}; the profiles are {', '.join(PROFILES)}") from None


def link_faults(
    p: FaultProfile, rng: random.Random, counts: Counter, log: list | None = None, clock=lambda: 0
) -> LinkFault | None:
    """A ``World.link_fault`` that draws each frame's fate from ``rng`` and counts what it did."""
    if p == PROFILES["none"]:
        return None

    def fate(party: str, link: str, frame: bytes) -> list[tuple[int, bytes]]:
        # Every frame takes the same draws, whatever the profile, so runs stay comparable.
        r_drop, r_late, r_dup, r_reorder, r_corrupt, r_lat = (rng.random() for _ in range(6))
        latency = p.latency_ms + int(r_lat * p.latency_ms)
        what = None
        if r_drop < p.drop:
            what, out = "drop", []
        else:
            if r_corrupt < p.corrupt and frame:
                i = rng.randrange(len(frame))
                frame = frame[:i] + bytes([frame[i] ^ (1 << rng.randrange(8))]) + frame[i + 1 :]
                what = "corrupt"
            delay = latency
            if r_late < p.late:
                delay, what = p.late_ms, "late"
            elif r_reorder < p.reorder:
                delay, what = latency + 3 * p.latency_ms + 1, "reorder"
            out = [(delay, frame)]
            if r_dup < p.duplicate:
                out.append((delay + 1, frame))
                what = "duplicate" if what is None else what + "+duplicate"
        if what:
            for kind in what.split("+"):
                counts[kind] += 1
            if log is not None:
                log.append((clock(), party, link, what))
        return out

    return fate
