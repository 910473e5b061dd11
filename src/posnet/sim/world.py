"""An in-process world: the party cores wired together, no sockets, a clock the caller moves.

The seed of the deterministic simulator: every message is delivered in
order through in-memory links, timers fire when the clock passes them, and
records are kept in memory per party. It runs the very same cores as the
TCP runtime.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..effects import (
    RECORD_TYPES,
    CancelTimer,
    Close,
    Command,
    Delete,
    Display,
    Done,
    LedgerWrite,
    LinkUp,
    Print,
    Put,
    Received,
    Send,
    SetTimer,
    TimerFired,
    TerminalOutput,
    Trace,
)


@dataclass
class PartyState:
    core: Any
    tables: dict[str, dict[str, str]] = field(default_factory=dict)  # committed records, as JSON
    ledger_writes: int = 0


class World:
    def __init__(self, now_ms: int):
        self.now_ms = now_ms
        self.parties: dict[str, PartyState] = {}
        self._routes: dict[tuple[str, str], tuple[str, str]] = {}
        self._queue: deque[tuple[str, Any]] = deque()
        self._timers: list[tuple[int, int, str, str]] = []
        self._timer_live: dict[tuple[str, str], int] = {}
        self._seq = 0
        self.outputs: dict[str, TerminalOutput] = {}
        self.traces: list[tuple[str, Trace]] = []
        self.cut: set[tuple[str, str]] = set()  # (party, link) pairs whose frames are lost
        self.hold: set[tuple[str, str]] = set()  # (party, link) pairs whose frames wait for release_held()
        self._held: list[tuple[str, Received]] = []

    def add(self, name: str, core: Any, restore: bool = True) -> None:
        self.parties[name] = PartyState(core)
        if restore and hasattr(core, "restore"):
            self._apply(name, core.restore({}, self.now_ms))

    def connect(self, a: str, a_link: str, b: str, b_source: str) -> None:
        """Frames ``a`` sends to ``a_link`` reach ``b`` as from ``b_source``, and back."""
        self._routes[(a, a_link)] = (b, b_source)
        self._routes[(b, b_source)] = (a, a_link)
        self._queue.append((a, LinkUp(a_link)))
        self._queue.append((b, LinkUp(b_source)))
        self.run()

    def tables(self, party: str) -> dict[str, dict[str, Any]]:
        return {t: {k: json.loads(v) for k, v in rows.items()} for t, rows in self.parties[party].tables.items()}

    # -- driving ------------------------------------------------------------

    def command(self, terminal: str, name: str, **args: Any) -> TerminalOutput:
        out = self.outputs[terminal] = TerminalOutput()
        self._queue.append((terminal, Command(name, args)))
        self.run()
        return out

    def run(self, max_steps: int = 100_000) -> None:
        steps = 0
        while self._queue:
            steps += 1
            assert steps < max_steps, "the world does not settle"
            party, event = self._queue.popleft()
            effects = self.parties[party].core.handle(event, self.now_ms)
            self._apply(party, effects)

    def release_held(self) -> None:
        """Deliver the frames ``hold`` kept back: late, but in order."""
        held, self._held = self._held, []
        self._queue.extend(held)
        self.run()

    def advance(self, ms: int) -> None:
        """Move the clock, firing every timer that falls due, in order."""
        target = self.now_ms + ms
        while self._timers and self._timers[0][0] <= target:
            at, seq, party, key = heapq.heappop(self._timers)
            if self._timer_live.get((party, key)) != seq:
                continue  # cancelled or re-armed
            del self._timer_live[(party, key)]
            self.now_ms = max(self.now_ms, at)
            self._queue.append((party, TimerFired(key)))
            self.run()
        self.now_ms = target

    def _apply(self, party: str, effects: list[Any]) -> None:
        state = self.parties[party]
        # Persist, then speak: records first.
        for e in effects:
            if isinstance(e, Put):
                state.tables.setdefault(e.table, {})[e.key] = e.encoded
            elif isinstance(e, Delete):
                state.tables.get(e.table, {}).pop(e.key, None)
            elif isinstance(e, LedgerWrite):
                state.ledger_writes += 1
        for e in effects:
            if isinstance(e, RECORD_TYPES):
                continue
            if isinstance(e, Send):
                if (party, e.to) in self.cut:
                    continue
                route = self._routes.get((party, e.to))
                if route is not None:
                    if (party, e.to) in self.hold:
                        self._held.append((route[0], Received(route[1], e.frame)))
                    else:
                        self._queue.append((route[0], Received(route[1], e.frame)))
            elif isinstance(e, SetTimer):
                self._seq += 1
                self._timer_live[(party, e.key)] = self._seq
                heapq.heappush(self._timers, (e.at_ms, self._seq, party, e.key))
            elif isinstance(e, CancelTimer):
                self._timer_live.pop((party, e.key), None)
            elif isinstance(e, Display):
                self.outputs.setdefault(party, TerminalOutput()).displays.append(e.text)
            elif isinstance(e, Print):
                self.outputs.setdefault(party, TerminalOutput()).slips.append(e.slip)
            elif isinstance(e, Done):
                self.outputs.setdefault(party, TerminalOutput()).done = e
            elif isinstance(e, Trace):
                self.traces.append((party, e))
            elif isinstance(e, Close):
                pass

