"""A demo network with one terminal signed on, and the frames it exchanged.

The fuzz tests feed mutated copies of these real frames to a fresh copy of a
core for every example, so one example cannot change what the next one sees.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from posnet.effects import Received

POS = "pos-10000001"
PIN = "123456"

@dataclass
class Live:
    """The demo world after sign-on, inquiry and sale, and every frame each core received."""

    world: Any
    received: dict[str, list[Received]] = field(default_factory=dict)

    @property
    def acquirer(self):
        return self.world.parties["acquirer"].core

    @property
    def issuer(self):
        return self.world.parties["issuer-bank-a"].core

    def fresh_acquirer(self):
        core = self.acquirer
        return copy.deepcopy(core, {id(core.hsm): core.hsm})

    def fresh_issuer(self):
        core = self.issuer
        return copy.deepcopy(core, {id(core.hsm): core.hsm})

    def fresh_switch(self):
        core = self.world.parties["switch"].core
        return copy.deepcopy(core, {id(core.hsm): core.hsm})

    def frames_to(self, party: str, source_prefix: str = "") -> list[bytes]:
        return [r.frame for r in self.received.get(party, []) if r.source.startswith(source_prefix)]


class _Recorder:
    def __init__(self, name: str, core: Any, live: Live):
        self.name, self.core, self.live = name, core, live

    def handle(self, event, now_ms: int):
        if isinstance(event, Received):
            self.live.received.setdefault(self.name, []).append(event)
        return self.core.handle(event, now_ms)


@pytest.fixture
def live(world, card) -> Live:
    result = Live(world)
    cores = {name: world.parties[name].core for name in (POS, "acquirer", "switch", "issuer-bank-a")}
    for name, core in cores.items():
        world.parties[name].core = _Recorder(name, core, result)
    try:
        assert world.command(POS, "sign-on").done.ok
        assert world.command(POS, "inquiry", card=card, pin=PIN).done.ok
        assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=8800).done.ok
    finally:
        for name, core in cores.items():
            world.parties[name].core = core
    return result
