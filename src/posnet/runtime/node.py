"""The TCP runtime: one party core, its store, its server and its links, on asyncio.

Inputs (frames, timers, link events) are handed to the core one at a time.
The effects of every input handled in one turn of the event loop are
gathered; their records are committed in one transaction (group commit);
only then do their frames leave, timers start and traces get written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..effects import (
    RECORD_TYPES,
    CancelTimer,
    Close,
    LinkDown,
    LinkUp,
    Publish,
    Received,
    Send,
    SetTimer,
    TimerFired,
    Trace,
)
from ..gcpause import gc_paused
from ..wire import FrameReader, WireError, frame
from .clock import NetworkClock, wall_ms
from .store import PartyStore

log = logging.getLogger("posnet.runtime")

RECONNECT_FIRST_S = 0.2
RECONNECT_CAP_S = 5.0
MAX_CONNECTIONS = 1_000  # inbound connections a party accepts at once
ADVANCE_FIRINGS_MAX = 10_000  # timers one clock advance fires inline; any more fire from the loop just after

now_ms = wall_ms  # real time, for a driver outside a network; a party reads its NetworkClock


@dataclass(frozen=True)
class LinkSpec:
    name: str
    host: str
    port: int


class _Conn(asyncio.Protocol):
    def __init__(self, node: "PartyNode", name: str, on_lost=None):
        self.node = node
        self.name = name
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.node._conns[self.name] = self

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except WireError as e:
            self.node._trace(Trace("", "bad framing: connection closed", {"peer": self.name, "error": str(e)}))
            assert self.transport is not None
            self.transport.close()
            return
        for f in frames:
            self.node.submit(Received(self.name, f))

    def connection_lost(self, exc) -> None:
        self.node._conns.pop(self.name, None)
        if self.on_lost:
            self.on_lost()


class PartyNode:
    def __init__(
        self,
        name: str,
        core: Any,
        store: PartyStore,
        listen: tuple[str, int] | None,
        links: list[LinkSpec] = (),
        trace_path: Path | None = None,
        clock: NetworkClock | None = None,
    ):
        self.name = name
        self.clock = clock or NetworkClock()
        self.publish = None  # writes a Publish effect (runtime/clearing_io.py), set by the party's opener
        self.core = core
        self.store = store
        self.listen = listen
        self.links = list(links)
        self._conns: dict[str, _Conn] = {}
        self._timers: dict[str, tuple[int, asyncio.TimerHandle]] = {}  # key -> (at_ms, handle)
        self._pending: list[Any] = []
        self._flush_scheduled = False
        self._next_conn = 0
        self._server: asyncio.AbstractServer | None = None
        self._link_tasks: list[asyncio.Task] = []
        self._trace_file = open(trace_path, "a", encoding="utf-8") if trace_path else None
        self._stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # Beside the core in this process (the issuer's SMS notifier, runtime/notifier.py): told of each
        # group of records once committed; started with the node, stopped before its store closes.
        self.after_commit: list[Any] = []  # callables taking the committed records
        self.companions: list[Any] = []  # objects with start() and async stop()

    # -- lifecycle ----------------------------------------------------------

    async def start(self, restore_effects: list[Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self._execute(restore_effects)
        for c in self.companions:
            c.start()
        if self.listen:
            self._server = await self.loop.create_server(self._accept, self.listen[0], self.listen[1], reuse_address=True)
        for link in self.links:
            self._link_tasks.append(asyncio.create_task(self._keep_link(link)))

    def _accept(self) -> _Conn:
        self._next_conn += 1
        conn = _Conn(self, f"conn:{self._next_conn}")
        if len(self._conns) >= MAX_CONNECTIONS:
            self.loop.call_soon(lambda: conn.transport and conn.transport.close())
        return conn

    async def _keep_link(self, link: LinkSpec) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stopping:
            lost = asyncio.Event()
            try:
                await self.loop.create_connection(
                    lambda lost=lost: _Conn(self, link.name, on_lost=lost.set), link.host, link.port
                )
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_CAP_S)
                continue
            delay = RECONNECT_FIRST_S
            self.submit(LinkUp(link.name))
            await lost.wait()
            if not self._stopping:
                self.submit(LinkDown(link.name))

    async def stop(self) -> None:
        self._stopping = True
        for c in self.companions:
            await c.stop()
        if self._server:
            self._server.close()
        for t in self._link_tasks:
            t.cancel()
        for c in list(self._conns.values()):
            if c.transport:
                c.transport.close()
        for _, h in self._timers.values():
            h.cancel()
        self._flush()
        self.store.close()
        if self._trace_file:
            self._trace_file.close()

    # -- the loop -----------------------------------------------------------

    def submit(self, event: Any) -> None:
        if self._stopping:
            return
        try:
            with gc_paused():
                effects = self.core.handle(event, self.clock.now_ms())
        except Exception:  # a bug in a core must not take the party down with money in flight
            log.exception("%s: core failed on %s", self.name, type(event).__name__)
            return
        self._pending.extend(effects)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def handle_now(self, event: Any) -> list[Any]:
        """An operator's command: handled at once, its records committed before this returns."""
        with gc_paused():
            effects = self.core.handle(event, self.clock.now_ms())
        self._pending.extend(effects)
        self._flush()
        return effects

    def advance_clock(self, offset_ms: int) -> list[str]:
        """`posnet clock advance`: the network's clock moved forward. The timers now due fire at once,
        earliest first, each committed before the next; the rest are re-armed for the new time.
        Returns the keys of the timers that fired."""
        self.clock.move_to(offset_ms)
        fired: list[str] = []
        while len(fired) < ADVANCE_FIRINGS_MAX:
            now = self.clock.now_ms()
            due = min(((at_ms, key) for key, (at_ms, _) in self._timers.items() if at_ms <= now), default=None)
            if due is None:
                break
            self._timers[due[1]][1].cancel()
            self._fire(due[1])
            self._flush()
            fired.append(due[1])
        for key, (at_ms, _) in list(self._timers.items()):
            self._arm(key, at_ms)
        return fired

    def _flush(self) -> None:
        self._flush_scheduled = False
        effects, self._pending = self._pending, []
        if effects:
            self._execute(effects)

    def _execute(self, effects: list[Any]) -> None:
        # Persist, then speak.
        records = [e for e in effects if isinstance(e, RECORD_TYPES)]
        if records:
            with gc_paused():
                self.store.commit(records)
            for hook in self.after_commit:
                hook(records)
        for e in effects:
            if isinstance(e, Send):
                conn = self._conns.get(e.to)
                if conn is None or conn.transport is None:
                    self._trace(Trace("", "no connection: frame dropped", {"to": e.to}))
                else:
                    conn.transport.write(frame(e.frame))
            elif isinstance(e, SetTimer):
                self._arm(e.key, e.at_ms)
            elif isinstance(e, CancelTimer):
                old = self._timers.pop(e.key, None)
                if old:
                    old[1].cancel()
            elif isinstance(e, Close):
                conn = self._conns.get(e.to)
                if conn and conn.transport:
                    conn.transport.close()
            elif isinstance(e, Trace):
                self._trace(e)
            elif isinstance(e, Publish):
                if self.publish is None:
                    self._trace(Trace("", "no clearing folder: file not written", {"box": e.box, "file": e.name}))
                else:
                    self.publish(e)
        if self._trace_file is not None:
            self._trace_file.flush()  # once a group: the trace of what was just said

    def _arm(self, key: str, at_ms: int) -> None:
        """Start (or restart) a timer; it keeps its absolute time so a clock advance can re-arm it."""
        old = self._timers.pop(key, None)
        if old:
            old[1].cancel()
        delay_s = max(0.0, (at_ms - self.clock.now_ms()) / 1000)
        self._timers[key] = (at_ms, self.loop.call_later(delay_s, self._fire, key))

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.submit(TimerFired(key))

    def _trace(self, t: Trace) -> None:
        if self._trace_file is None:
            return
        line = {"ms": self.clock.now_ms(), "party": self.name, "lifecycle": t.lifecycle, "event": t.event, **t.detail}
        self._trace_file.write(json.dumps(line, ensure_ascii=False) + "\n")
