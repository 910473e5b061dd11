"""The terminal's driver: one POS function at a time over a real TCP connection.

Like a dial-up or GPRS POS, the terminal opens a connection to the
acquirer for a function and closes it after. Its store (journal, counters,
keys, pending reversal) is its own SQLite file, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, Callable

from .. import config as cfg
from ..effects import (
    RECORD_TYPES,
    CancelTimer,
    Command,
    Display,
    Done,
    Print,
    Received,
    Send,
    SetTimer,
    TerminalOutput,
    TimerFired,
)
from ..terminal.core import RESPONSE_TIMER, Terminal
from ..wire import FrameReader, WireError, frame
from . import chaos
from .clock import NetworkClock
from .parties import party_dir, security_module
from .store import PartyStore

CONNECT_TIMEOUT_S = 5.0
# Where `posnet pos power-cut --at …` kills the terminal's process (SIGKILL, as a power cut):
POWER_CUT_POINTS = (
    "sent",  # the request is on the wire, its reply not yet heard
    "approved",  # the approval is in the journal, the printer not yet started
    "printing",  # the first slip is out, the rest not
)


class TerminalDriver:
    def __init__(
        self,
        net: cfg.Network,
        terminal_id: str | None = None,
        on_display: Callable[[str], None] | None = None,
        on_print: Callable[[Any], None] | None = None,
        power_cut_at: str | None = None,
    ):
        tcfg, clear_tmk = cfg.terminal_config(net, terminal_id)
        self.name = f"pos-{tcfg.terminal_id}"
        directory = party_dir(net, self.name)
        self.hsm = security_module(directory)
        self.store = PartyStore(directory / "terminal.sqlite")
        self.core = Terminal(tcfg, self.hsm, self.hsm.import_clear_key(clear_tmk))
        self.clock = NetworkClock.of(net)  # the network's time, advanced in dev mode (runtime/clock.py)
        restored = self.core.restore(self.store.load(), self.clock.now_ms())
        self.store.commit([e for e in restored if isinstance(e, RECORD_TYPES)])
        self.endpoint = cfg.Endpoint(*chaos.upstream_endpoint(net, "terminal", "acquirer"))
        self.on_display = on_display
        self.on_print = on_print
        assert power_cut_at in (None, *POWER_CUT_POINTS), power_cut_at
        self.power_cut_at = power_cut_at

    def close(self) -> None:
        self.store.close()

    def run(self, name: str, **args) -> TerminalOutput:
        return asyncio.run(self.run_async(name, **args))

    async def run_async(self, name: str, **args) -> TerminalOutput:
        out = TerminalOutput()
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        frames = FrameReader()
        deadline_ms: int | None = None
        inbox: list[bytes] = []
        effects = self.core.handle(Command(name, args), self.clock.now_ms())
        try:
            while True:
                records = [e for e in effects if isinstance(e, RECORD_TYPES)]
                if records:
                    self.store.commit(records)  # persist, then speak
                if self.power_cut_at == "approved" and any(isinstance(e, Done) and e.ok for e in effects):
                    self._power_cut()
                printed = False
                next_events = []
                for e in effects:
                    if isinstance(e, Send):
                        if writer is None:
                            try:
                                reader, writer = await asyncio.wait_for(
                                    asyncio.open_connection(self.endpoint.host, self.endpoint.port), CONNECT_TIMEOUT_S
                                )
                            except (OSError, asyncio.TimeoutError):
                                out.displays.append("通讯失败 CONNECTION FAILED")
                                next_events.append(TimerFired(RESPONSE_TIMER))
                                continue
                        writer.write(frame(e.frame))
                        await writer.drain()
                        if self.power_cut_at == "sent":
                            self._power_cut()
                    elif isinstance(e, SetTimer):
                        deadline_ms = e.at_ms
                    elif isinstance(e, CancelTimer):
                        deadline_ms = None
                    elif isinstance(e, Display):
                        out.displays.append(e.text)
                        if self.on_display:
                            self.on_display(e.text)
                    elif isinstance(e, Print):
                        out.slips.append(e.slip)
                        if self.on_print:
                            self.on_print(e.slip)
                        if self.power_cut_at == "printing":
                            self._power_cut()
                        printed = True
                    elif isinstance(e, Done):
                        out.done = e
                if printed:  # the printer is done with what it was given: the print jobs close
                    done_records = [e for e in self.core.handle(Command("printed"), self.clock.now_ms()) if isinstance(e, RECORD_TYPES)]
                    if done_records:
                        self.store.commit(done_records)
                if out.done is not None:
                    return out
                if next_events:
                    effects = []
                    for ev in next_events:
                        effects += self.core.handle(ev, self.clock.now_ms())
                    continue
                event = await self._next_event(reader, frames, inbox, deadline_ms)
                if isinstance(event, str):  # the acquirer closed the connection
                    reader = writer = None
                    frames = FrameReader()
                    event = await self._wait_until(deadline_ms)
                effects = self.core.handle(event, self.clock.now_ms())
        finally:
            if writer is not None:
                writer.close()

    @staticmethod
    def _power_cut() -> None:
        """The power goes: no cleanup, no flush, nothing after this line runs."""
        os.kill(os.getpid(), signal.SIGKILL)

    async def _next_event(self, reader, frames: FrameReader, inbox: list[bytes], deadline_ms: int | None):
        while not inbox:
            if reader is None:
                return await self._wait_until(deadline_ms)
            timeout = None if deadline_ms is None else max(0.0, (deadline_ms - self.clock.now_ms()) / 1000)
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout)
            except asyncio.TimeoutError:
                return TimerFired(RESPONSE_TIMER)
            except OSError:
                return "closed"
            if not data:
                return "closed"
            try:
                inbox.extend(frames.feed(data))
            except WireError:
                return Received("acquirer", data)  # let the core judge an unreadable reply
        return Received("acquirer", inbox.pop(0))

    async def _wait_until(self, deadline_ms: int | None):
        if deadline_ms is not None:
            await asyncio.sleep(max(0.0, (deadline_ms - self.clock.now_ms()) / 1000))
        return TimerFired(RESPONSE_TIMER)


def wait_for_port(host: str, port: int, timeout_s: float = 15.0) -> bool:
    import socket

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
