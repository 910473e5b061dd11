"""An in-process world: the party cores wired together, no sockets, a clock the caller moves.

Every input — a frame arriving, a timer, a command — is an event on one
queue ordered by time. Frames travel through in-memory links; a link can lose,
delay, duplicate, reorder or corrupt them (``link_fault``). Records are kept in
memory per party as they would be committed, so a party can crash — losing
its memory, its timers and what was on its links — and start again from its
store. It runs the very same cores as the TCP runtime.

With no faults and no latency every frame is delivered at once, in order:
``command`` returns once the network is quiet.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..clearing_files import CLEARING_FILE
from ..effects import (
    RECORD_TYPES,
    CancelTimer,
    Close,
    Command,
    Delete,
    Display,
    Done,
    LedgerWrite,
    LinkDown,
    LinkUp,
    Print,
    Publish,
    Put,
    Received,
    Send,
    SetTimer,
    TerminalOutput,
    TimerFired,
    Trace,
)

# A link fault decides what becomes of one frame: a list of (delay_ms, frame) deliveries.
# [] loses it; two entries duplicate it; a delay makes it late (and lets later frames overtake it).
LinkFault = Callable[[str, str, bytes], list[tuple[int, bytes]]]


@dataclass
class PartyState:
    core: Any
    factory: Callable[[], Any] | None = None  # builds a fresh core after a crash
    tables: dict[str, dict[str, str]] = field(default_factory=dict)  # committed records, as JSON
    ledger_changes: list[Any] = field(default_factory=list)  # committed ledger change sets, in order
    ledger_writes: int = 0
    up: bool = True
    crashes: int = 0


class World:
    def __init__(self, now_ms: int):
        self.now_ms = now_ms
        self.parties: dict[str, PartyState] = {}
        self._routes: dict[tuple[str, str], tuple[str, str]] = {}
        self._queue: deque[tuple[str, Any]] = deque()
        # (at_ms, seq, party, event, epoch): timers and late deliveries, in time order; an event
        # for a party that crashed since it was scheduled (another epoch) is lost with the process.
        self._events: list[tuple[int, int, str, Any, int]] = []
        self._timer_live: dict[tuple[str, str], int] = {}
        self._seq = 0
        self.outputs: dict[str, TerminalOutput] = {}
        self.traces: list[tuple[int, str, Trace]] = []  # (time, party, trace)
        self.keep_traces = True
        self.cut: set[tuple[str, str]] = set()  # (party, link) pairs whose frames are lost
        self.hold: set[tuple[str, str]] = set()  # (party, link) pairs whose frames wait for release_held()
        self._held: list[tuple[str, Received]] = []
        self.link_fault: LinkFault | None = None
        self.on_done: Callable[[str, Done, TerminalOutput], None] | None = None
        self.trace_hash = hashlib.sha256()
        self.events_handled = 0
        # Clearing files (posnet.clearing_files): box -> name -> text, the party that reads each box,
        # and the files their reader has handled (the runtime moves those to done/).
        self.boxes: dict[str, dict[str, str]] = {}
        self.box_owner: dict[str, str] = {}
        self.files_done: set[tuple[str, str]] = set()

    def add(self, name: str, core: Any, restore: bool = True, factory: Callable[[], Any] | None = None) -> None:
        self.parties[name] = PartyState(core, factory)
        if restore:
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

    def submit(self, party: str, event: Any) -> None:
        """Queue an input for a party without running the world."""
        if isinstance(event, Command):
            self.outputs[party] = TerminalOutput()
        self._queue.append((party, event))

    def run(self, max_steps: int = 1_000_000) -> None:
        """Handle everything due now."""
        steps = 0
        while self._queue:
            steps += 1
            assert steps < max_steps, "the world does not settle"
            party, event = self._queue.popleft()
            self._handle(party, event)

    def _handle(self, party: str, event: Any) -> None:
        state = self.parties[party]
        if not state.up:
            return  # a crashed party hears nothing
        self.events_handled += 1
        self._hash(party, event)
        effects = state.core.handle(event, self.now_ms)
        self._apply(party, effects)
        if isinstance(event, Command) and event.name == CLEARING_FILE:
            self.files_done.add((event.args["box"], event.args["name"]))

    def _hash(self, party: str, event: Any) -> None:
        if isinstance(event, Received):
            detail = event.frame
        elif isinstance(event, TimerFired):
            detail = event.key.encode()
        elif isinstance(event, Command):
            detail = repr(sorted(event.args.items())).encode() + event.name.encode()
        else:
            detail = repr(event).encode()
        self.trace_hash.update(f"{self.now_ms}|{party}|{type(event).__name__}|".encode() + detail)

    def next_event_ms(self) -> int | None:
        while self._events:
            at, seq, party, event, epoch = self._events[0]
            stale = epoch != self.parties[party].crashes
            if stale or (isinstance(event, TimerFired) and self._timer_live.get((party, event.key)) != seq):
                heapq.heappop(self._events)  # cancelled, re-armed, or lost in a crash
                continue
            return at
        return None

    def advance(self, ms: int) -> None:
        """Move the clock, handling every timer and late frame that falls due, in order."""
        self.advance_to(self.now_ms + ms)

    def advance_to(self, target_ms: int) -> None:
        self.run()
        while True:
            at = self.next_event_ms()
            if at is None or at > target_ms:
                break
            self._next_event()
        self.now_ms = max(self.now_ms, target_ms)

    def step(self) -> bool:
        """Only the next timer or late frame, whenever it falls due, and what it causes at once (False:
        none is left): for a test that looks between two inputs, as between the slices of a cut-off."""
        self.run()
        if self.next_event_ms() is None:
            return False
        self._next_event()
        return True

    def _next_event(self) -> None:
        at, seq, party, event, _ = heapq.heappop(self._events)
        if isinstance(event, TimerFired):
            del self._timer_live[(party, event.key)]
        self.now_ms = max(self.now_ms, at)
        self._handle(party, event)
        self.run()

    def release_held(self) -> None:
        """Deliver the frames ``hold`` kept back: late, but in order."""
        held, self._held = self._held, []
        self._queue.extend(held)
        self.run()

    def _schedule(self, at_ms: int, party: str, event: Any) -> int:
        self._seq += 1
        heapq.heappush(self._events, (at_ms, self._seq, party, event, self.parties[party].crashes))
        return self._seq

    # -- crashes ------------------------------------------------------------

    def crash(self, party: str) -> None:
        """The process dies: memory, timers and frames in flight to it are gone; its store stays."""
        state = self.parties[party]
        if not state.up:
            return
        state.up = False
        state.crashes += 1
        for key in [k for k in self._timer_live if k[0] == party]:
            del self._timer_live[key]
        self._queue = deque((p, e) for p, e in self._queue if p != party)
        for (a, a_link), (b, _) in self._routes.items():
            if b == party and self.parties[a].up:
                self._queue.append((a, LinkDown(a_link)))
        self.run()

    def restart(self, party: str) -> None:
        """Start the party again from its store, as the runtime does, and bring its links up."""
        state = self.parties[party]
        assert not state.up and state.factory is not None, f"{party} cannot be restarted"
        core = state.factory()
        if state.ledger_changes:
            core.ledger = rebuild_ledger(state.ledger_changes)
        state.core = core
        state.up = True
        self._apply(party, core.restore(self.tables(party), self.now_ms))
        for box, owner in self.box_owner.items():  # files that came while it was down
            if owner == party:
                for name in sorted(self.boxes.get(box, {})):
                    self._deliver_file(box, name)
        for (a, a_link), (b, b_source) in self._routes.items():
            if a == party and self.parties[b].up:
                self._queue.append((a, LinkUp(a_link)))
                self._queue.append((b, LinkUp(b_source)))
        self.run()

    # -- effects ------------------------------------------------------------

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
                state.ledger_changes.append(e.changes)
        printed = False
        for e in effects:
            if isinstance(e, RECORD_TYPES):
                continue
            if isinstance(e, Send):
                self._send(party, e)
            elif isinstance(e, SetTimer):
                seq = self._schedule(e.at_ms, party, TimerFired(e.key))
                self._timer_live[(party, e.key)] = seq
            elif isinstance(e, CancelTimer):
                self._timer_live.pop((party, e.key), None)
            elif isinstance(e, Display):
                self.outputs.setdefault(party, TerminalOutput()).displays.append(e.text)
            elif isinstance(e, Print):
                self.outputs.setdefault(party, TerminalOutput()).slips.append(e.slip)
                printed = True
            elif isinstance(e, Done):
                out = self.outputs.setdefault(party, TerminalOutput())
                out.done = e
                if self.on_done is not None:
                    self.on_done(party, e, out)
            elif isinstance(e, Publish):
                self.boxes.setdefault(e.box, {})[e.name] = e.text
                self._deliver_file(e.box, e.name)
            elif isinstance(e, Trace):
                if self.keep_traces:
                    self.traces.append((self.now_ms, party, e))
            elif isinstance(e, Close):
                route = self._routes.get((party, e.to))
                if route is not None and e.to.startswith(("switch", "issuer:")):
                    # A host link closed: both ends see it drop, and the client reconnects.
                    self._queue.append((party, LinkDown(e.to)))
                    self._queue.append((party, LinkUp(e.to)))
        if printed:  # the paper is out: the terminal closes its print jobs
            self._queue.append((party, Command("printed")))

    def _deliver_file(self, box: str, name: str) -> None:
        owner = self.box_owner.get(box)
        if owner is None or (box, name) in self.files_done or not self.parties[owner].up:
            return
        self._queue.append((owner, Command(CLEARING_FILE, {"box": box, "name": name, "text": self.boxes[box][name]})))

    def _send(self, party: str, e: Send) -> None:
        if (party, e.to) in self.cut:
            return
        route = self._routes.get((party, e.to))
        if route is None or not self.parties[route[0]].up:
            return
        received = Received(route[1], e.frame)
        if (party, e.to) in self.hold:
            self._held.append((route[0], received))
            return
        if self.link_fault is None:
            self._queue.append((route[0], received))
            return
        for delay_ms, frame in self.link_fault(party, e.to, e.frame):
            if delay_ms <= 0:
                self._queue.append((route[0], Received(route[1], frame)))
            else:
                self._schedule(self.now_ms + delay_ms, route[0], Received(route[1], frame))


def rebuild_ledger(changes: list[Any]):
    """The ledger a restarted party reads back: its committed change sets, replayed into a store."""
    import sqlite3

    from ..ledger import SqliteLedgerStore

    conn = sqlite3.connect(":memory:", isolation_level=None)
    store = SqliteLedgerStore(conn)
    store.migrate()
    conn.execute("BEGIN")
    for c in changes:
        store.write(c)
    conn.execute("COMMIT")
    ledger = store.load()
    conn.close()
    return ledger
