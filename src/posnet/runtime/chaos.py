"""The fault proxy: stand on one link of the network and break it on purpose.

A :class:`ChaosProxy` listens where a client (a terminal, the acquirer, the
switch) connects, connects on to the real server (the acquirer, the switch,
an issuer), and carries the 2-byte-length frames of posnet's wire both ways:
``up`` is client to server, ``down`` server to client. Each direction has its
own :class:`Faults`: latency with jitter, dropped frames, a reset connection,
flipped bits, frames cut into pieces, duplicates, and a black hole.

Every decision is drawn from random streams seeded from one seed, so a run
replays: the proxy keeps one ``random.Random(f"{seed}:{name}")``, and each
accepted connection draws from it the seed of its own two streams (one per
direction). The frames of one connection meet the same faults in the same
order whatever the timing of the others, as long as the connections arrive
in the same order. Each frame takes the same draws whatever the faults are,
so turning one fault on does not shift the others' decisions.

A stream that stops framing (a length of 0 or over ``MAX_FRAME_BYTES``) is
not the proxy's to judge: that direction of that connection falls back to
raw forwarding for the rest of its life, so the server (or client) sees the
bad bytes and answers them as it would without the proxy.

:class:`ChaosControl` is a small HTTP/JSON endpoint to look at and change the
faults of running proxies; ``register_cli`` adds ``posnet chaos``; and
``plan_proxies`` puts a proxy on every link of a configured network
(``[chaos]`` in the network file, docs/chaos.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import random
import signal
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import config as cfg
from ..wire import MAX_FRAME_BYTES

log = logging.getLogger("posnet.chaos")

DIRECTIONS = ("up", "down")

# Limits, each with its unit.
MAX_DELAY_MS = 600_000  # ten minutes: longer than any timeout of the network, so "never arrives in time" is expressible
MAX_NEXT_FRAMES = 1_000_000  # the largest drop_next / reset_next / corrupt_next
CORRUPT_MAX_BITS = 3  # a corrupted frame has 1 to 3 bits flipped
SPLIT_MAX_PIECES = 4  # a split frame leaves in 2 to 4 writes
SPLIT_PAUSE_MS = 2  # between the pieces of a split frame: long enough for each to be its own TCP segment
READ_CHUNK_BYTES = 65_536
PIPE_QUEUE_FRAMES = 256  # frames waiting to leave, per direction of a connection; a full queue stops reading
CONNECT_TIMEOUT_S = 5.0  # to reach the target when a client arrives
MAX_CONNECTIONS = 1_000  # client connections a proxy carries at once
DECISION_LOG_MAX = 10_000  # decisions kept for inspection (the oldest go first)
HTTP_MAX_HEADER_BYTES = 8_192
HTTP_MAX_BODY_BYTES = 65_536
HTTP_READ_TIMEOUT_S = 5.0
HTTP_CLIENT_TIMEOUT_S = 10.0
DEFAULT_CONTROL = "127.0.0.1:19600"


class FaultError(cfg.ConfigError):
    """Faults that cannot be: an unknown name, a value out of range. The message says which."""


# -- faults ---------------------------------------------------------------------------


@dataclass
class Faults:
    """What one direction of a proxy does to the frames that cross it.

    Probabilities are per frame, 0.0 (never) to 1.0 (every frame). The
    ``*_next`` counts act on exactly the next N frames, before any
    probability, and count down as they act (tests need determinism).
    """

    delay_ms: int = 0  # every frame waits this long …
    jitter_ms: int = 0  # … plus a uniform 0..jitter_ms; order within a connection is kept
    drop: float = 0.0  # the frame vanishes
    drop_next: int = 0
    reset: float = 0.0  # the connection is reset (RST) on both sides instead of carrying the frame
    reset_next: int = 0
    corrupt: float = 0.0  # 1 to CORRUPT_MAX_BITS bits of the payload flip; the length prefix stays right
    corrupt_next: int = 0
    split: float = 0.0  # the frame leaves in 2 to SPLIT_MAX_PIECES writes, SPLIT_PAUSE_MS apart
    duplicate: float = 0.0  # the frame is delivered twice
    black_hole: bool = False  # every byte in this direction is swallowed; the connection stays open

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Faults:
        if not isinstance(values, Mapping):
            raise FaultError(f"faults are an object of name: value, not {type(values).__name__}")
        unknown = [k for k in values if k not in _KINDS]
        if unknown:
            raise FaultError(f"unknown fault {unknown[0]!r}; the faults are {', '.join(_KINDS)}")
        return cls(**values)

    def changed(self, **changes: Any) -> Faults:
        """A copy with some faults changed (validated; this one is left alone)."""
        return Faults.from_dict({**self.to_dict(), **changes})

    @property
    def active(self) -> bool:
        return self != Faults()

    def describe(self) -> str:
        """The faults that are on, as `posnet chaos` takes them: ``drop=0.1,delay_ms=50``."""
        on = [f"{k}={_shown(v)}" for k, v in self.to_dict().items() if v != getattr(_HEALED, k)]
        return ",".join(on) or "none"


def _shown(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


_KINDS: dict[str, type] = {f.name: type(f.default) for f in fields(Faults)}


def _checked(name: str, value: Any) -> Any:
    kind = _KINDS[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise FaultError(f"{name}: {value!r} is not true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"{name}: {value!r} is not a number")
    if kind is float:
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise FaultError(f"{name}: {value!r} is not a probability from 0.0 to 1.0")
        return float(value)
    if not isinstance(value, int):
        if not float(value).is_integer():
            raise FaultError(f"{name}: {value!r} is not a whole number")
        value = int(value)
    top = MAX_NEXT_FRAMES if name.endswith("_next") else MAX_DELAY_MS
    if not 0 <= value <= top:
        raise FaultError(f"{name}: {value} is outside 0..{top}")
    return value


_HEALED = Faults()


def parse_value(name: str, text: str) -> Any:
    """A fault's value as typed on the command line: ``true``, ``3``, ``0.25``."""
    if name not in _KINDS:
        raise FaultError(f"unknown fault {name!r}; the faults are {', '.join(_KINDS)}")
    kind = _KINDS[name]
    t = text.strip().lower()
    if kind is bool:
        if t in ("true", "1", "on", "yes"):
            return True
        if t in ("false", "0", "off", "no"):
            return False
        raise FaultError(f"{name}: {text!r} is not true or false")
    try:
        return int(t) if kind is int else float(t)
    except ValueError:
        raise FaultError(f"{name}: {text!r} is not a {'whole number' if kind is int else 'number'}") from None


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["drop=0.1,delay_ms=50", "black_hole=true"]`` -> ``{"drop": 0.1, "delay_ms": 50, "black_hole": True}``."""
    out: dict[str, Any] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, eq, text = part.partition("=")
            if not eq or not text.strip():
                raise FaultError(f"{part!r}: write NAME=VALUE, e.g. drop=0.1 or black_hole=true")
            out[name.strip()] = parse_value(name.strip(), text)
    Faults.from_dict(out)  # every value checked before any is used
    return out


# -- decisions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What happens to one frame."""

    action: str  # "pass", "drop", "swallow" (black hole), "reset"
    delay_s: float = 0.0
    flips: tuple[int, ...] = ()  # bit positions flipped in the payload
    cuts: tuple[int, ...] = ()  # offsets in the framed bytes (prefix included) where a write ends
    duplicate: bool = False

    def summary(self) -> str:
        parts = [self.action]
        if self.flips:
            parts.append(f"corrupt:{'/'.join(map(str, self.flips))}")
        if self.cuts:
            parts.append(f"split:{'/'.join(map(str, self.cuts))}")
        if self.duplicate:
            parts.append("duplicate")
        if self.delay_s:
            parts.append(f"delay:{self.delay_s * 1000:.3f}ms")
        return " ".join(parts)


ROLLS_PER_FRAME = 6


def decide(faults: Faults, rng: random.Random, payload_len: int) -> Decision:
    """The fate of one frame of ``payload_len`` bytes. Counts down the ``*_next`` faults it uses."""
    assert 1 <= payload_len <= MAX_FRAME_BYTES, payload_len
    # Every frame takes the same draws from the stream, whatever the faults and the
    # outcome: six rolls and the seed of its details (which bits, where to cut). So
    # switching one fault on or off never shifts another fault's decisions.
    r_reset, r_drop, r_corrupt, r_split, r_duplicate, r_jitter = (rng.random() for _ in range(ROLLS_PER_FRAME))
    detail_seed = rng.getrandbits(64)
    if faults.black_hole:
        return Decision("swallow")
    if faults.reset_next > 0:
        faults.reset_next -= 1
        return Decision("reset")
    if r_reset < faults.reset:
        return Decision("reset")
    if faults.drop_next > 0:
        faults.drop_next -= 1
        return Decision("drop")
    if r_drop < faults.drop:
        return Decision("drop")
    corrupt = faults.corrupt_next > 0 or r_corrupt < faults.corrupt
    if faults.corrupt_next > 0:
        faults.corrupt_next -= 1
    split = r_split < faults.split
    details = random.Random(detail_seed) if corrupt or split else None
    flips: tuple[int, ...] = ()
    if corrupt:
        bits = payload_len * 8
        flips = tuple(sorted(details.sample(range(bits), min(bits, details.randint(1, CORRUPT_MAX_BITS)))))
    cuts: tuple[int, ...] = ()
    if split:
        total = 2 + payload_len
        pieces = min(total, details.randint(2, SPLIT_MAX_PIECES))
        cuts = tuple(sorted(details.sample(range(1, total), pieces - 1)))
    delay_s = (faults.delay_ms + r_jitter * faults.jitter_ms) / 1000
    decision = Decision("pass", delay_s, flips, cuts, r_duplicate < faults.duplicate)
    assert len(decision.cuts) < SPLIT_MAX_PIECES and len(decision.flips) <= CORRUPT_MAX_BITS
    return decision


def flip_bits(payload: bytes, flips: Sequence[int]) -> bytes:
    out = bytearray(payload)
    for bit in flips:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def cut(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    return [data[a:b] for a, b in itertools.pairwise((0, *cuts, len(data)))]


# -- the proxy ------------------------------------------------------------------------


def _new_stats() -> dict[str, int]:
    return dict.fromkeys(
        (
            "frames",  # whole frames read
            "passed",  # frames written on (a duplicate counts once)
            "dropped",
            "swallowed",  # by the black hole
            "corrupted",
            "split",
            "duplicated",
            "delayed",
            "resets",
            "framing_errors",  # streams that stopped framing and went raw
            "raw_bytes",  # bytes forwarded raw, after a framing error
            "swallowed_bytes",  # raw bytes swallowed by the black hole
        ),
        0,
    )


@dataclass
class _Out:
    at: float  # time.monotonic() before which it must not leave
    pieces: list[bytes] = field(default_factory=list)
    reset: bool = False
    frame: bool = True  # a frame (counted as passed) or raw bytes
    copies: int = 1


_EOF = object()


async def _sleep_until(at: float) -> None:
    # time.monotonic(), not loop.time(): uvloop's clock is cached per loop turn and would let a frame out early.
    while (left := at - time.monotonic()) > 0:
        await asyncio.sleep(left)


class _Pipe:
    """One direction of one connection: read, frame, decide, and write in order."""

    def __init__(self, conn: _Connection, direction: str, reader, writer, rng: random.Random):
        self.conn = conn
        self.direction = direction
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.rng = rng
        self.queue: asyncio.Queue = asyncio.Queue(PIPE_QUEUE_FRAMES)
        self.buf = bytearray()
        self.raw = False
        self.frame_no = 0
        self.last_at = 0.0  # nothing leaves before what was queued before it

    @property
    def stats(self) -> dict[str, int]:
        return self.conn.proxy._stats[self.direction]

    async def read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_CHUNK_BYTES)
                if not data:
                    break
                await self._feed(data)
            if self.buf:  # a frame cut short by the end of the stream: pass what there is
                rest, self.buf = bytes(self.buf), bytearray()
                await self._raw(rest)
            await self.queue.put(_EOF)
        except (ConnectionError, OSError) as e:
            log.debug("%s #%d %s: read failed: %s", self.conn.proxy.name, self.conn.no, self.direction, e)
            self.conn.close(reset=True)

    async def _feed(self, data: bytes) -> None:
        if self.raw:
            await self._raw(data)
            return
        self.buf += data
        while len(self.buf) >= 2:
            n = int.from_bytes(self.buf[:2], "big")
            if n == 0 or n > MAX_FRAME_BYTES:
                self.raw = True
                self.stats["framing_errors"] += 1
                log.warning(
                    "%s #%d %s: frame length %d outside 1..%d; forwarding this direction raw from here on",
                    self.conn.proxy.name, self.conn.no, self.direction, n, MAX_FRAME_BYTES,
                )
                rest, self.buf = bytes(self.buf), bytearray()
                await self._raw(rest)
                return
            if len(self.buf) < 2 + n:
                return
            payload = bytes(self.buf[2 : 2 + n])
            del self.buf[: 2 + n]
            await self._frame(payload)

    async def _frame(self, payload: bytes) -> None:
        proxy = self.conn.proxy
        d = decide(proxy.faults(self.direction), self.rng, len(payload))
        self.frame_no += 1
        proxy._log_decision(self.conn.no, self.direction, self.frame_no, d)
        s = self.stats
        s["frames"] += 1
        if d.action == "swallow":
            s["swallowed"] += 1
            return
        if d.action == "drop":
            s["dropped"] += 1
            return
        if d.action == "reset":
            s["resets"] += 1
            await self.queue.put(_Out(at=max(time.monotonic(), self.last_at), reset=True))
            return
        if d.flips:
            s["corrupted"] += 1
            payload = flip_bits(payload, d.flips)
        if d.cuts:
            s["split"] += 1
        if d.duplicate:
            s["duplicated"] += 1
        if d.delay_s > 0:
            s["delayed"] += 1
        self.last_at = max(time.monotonic() + d.delay_s, self.last_at)
        framed = len(payload).to_bytes(2, "big") + payload
        await self.queue.put(_Out(self.last_at, cut(framed, d.cuts), copies=2 if d.duplicate else 1))

    async def _raw(self, data: bytes) -> None:
        # No rolls here: raw chunk boundaries follow TCP timing, and would make the streams unreplayable.
        faults = self.conn.proxy.faults(self.direction)
        if faults.black_hole:
            self.stats["swallowed_bytes"] += len(data)
            return
        self.last_at = max(time.monotonic() + faults.delay_ms / 1000, self.last_at)
        await self.queue.put(_Out(self.last_at, [data], frame=False))

    async def write_loop(self) -> None:
        try:
            while True:
                out = await self.queue.get()
                if out is _EOF:
                    # The sender finished: say so to the other side, keep the way back open.
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                await _sleep_until(out.at)
                if out.reset:
                    self.conn.close(reset=True)
                    return
                for _ in range(out.copies):
                    for i, piece in enumerate(out.pieces):
                        if i:
                            await asyncio.sleep(SPLIT_PAUSE_MS / 1000)
                        self.writer.write(piece)
                        await self.writer.drain()
                if out.frame:
                    self.stats["passed"] += 1
                else:
                    self.stats["raw_bytes"] += sum(map(len, out.pieces))
        except (ConnectionError, OSError, RuntimeError) as e:
            log.debug("%s #%d %s: write failed: %s", self.conn.proxy.name, self.conn.no, self.direction, e)
            self.conn.close(reset=True)


def _linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the coming close a reset (RST), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Connection:
    """A client's connection and the proxy's connection on to the target."""

    def __init__(self, proxy: ChaosProxy, no: int, seed: int, client, server):
        self.proxy = proxy
        self.no = no
        self.writers = (client[1], server[1])
        self.pipes = (
            _Pipe(self, "up", client[0], server[1], random.Random(f"{seed}:up")),
            _Pipe(self, "down", server[0], client[1], random.Random(f"{seed}:down")),
        )
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    async def run(self) -> None:
        self.tasks = [asyncio.create_task(c) for p in self.pipes for c in (p.read_loop(), p.write_loop())]
        try:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for w in self.writers:
            if reset:
                _linger_zero(w)
                w.transport.abort()
            else:
                w.close()
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()


class ChaosProxy:
    """A fault-injecting TCP proxy between clients at ``listen`` and the server at ``target``.

    ``up`` and ``down`` may be changed while it runs (``set_faults`` checks the
    values; assigning a new :class:`Faults` works too). A change applies to the
    frames read after it; frames already waiting out a delay leave as decided.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        seed: int = 0,
        name: str = "",
        up: Faults | None = None,
        down: Faults | None = None,
    ):
        self.listen = (listen[0], int(listen[1]))
        self.target = (target[0], int(target[1]))
        self.seed = seed
        self.name = name or f"{target[0]}:{target[1]}"
        self.up = up if up is not None else Faults()
        self.down = down if down is not None else Faults()
        self._rng = random.Random(f"{seed}:{self.name}")
        self._stats = {d: _new_stats() for d in DIRECTIONS}
        self._conn_stats = {"accepted": 0, "refused": 0, "target_unreachable": 0}
        self._conns: set[_Connection] = set()
        self._handlers: set[asyncio.Task] = set()
        self._next_no = 0
        self._decisions: deque[tuple[int, str, int, str]] = deque(maxlen=DECISION_LOG_MAX)
        self._server: asyncio.AbstractServer | None = None

    # -- faults --------------------------------------------------------------------

    def faults(self, direction: str) -> Faults:
        if direction == "up":
            return self.up
        if direction == "down":
            return self.down
        raise FaultError(f"direction {direction!r}: up (client to server) or down (server to client)")

    def set_faults(self, direction: str, **changes: Any) -> None:
        """Change some faults of ``up``, ``down`` or ``both``; nothing changes if any value is wrong."""
        directions = DIRECTIONS if direction == "both" else (direction,)
        if direction != "both":
            self.faults(direction)  # a clear error for a wrong direction
        new = {d: self.faults(d).changed(**changes) for d in directions}
        for d, f in new.items():
            setattr(self, d, f)
            log.info("%s: %s faults now %s", self.name, d, f.describe())

    def heal(self) -> None:
        """Every fault off, both ways. Frames swallowed or dropped before stay lost."""
        self.up, self.down = Faults(), Faults()
        log.info("%s: healed", self.name)

    # -- what happened -------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "connections": {**self._conn_stats, "open": len(self._conns)},
            "up": dict(self._stats["up"]),
            "down": dict(self._stats["down"]),
        }

    @property
    def decisions(self) -> list[tuple[int, str, int, str]]:
        """(connection number, direction, frame number, decision) of the latest frames, oldest first."""
        return list(self._decisions)

    def _log_decision(self, conn_no: int, direction: str, frame_no: int, d: Decision) -> None:
        self._decisions.append((conn_no, direction, frame_no, d.summary()))

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the system chose, when asked for port 0)."""
        if self._server and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return host, port
        return self.listen

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        return {
            "name": self.name,
            "listen": f"{host}:{port}",
            "target": f"{self.target[0]}:{self.target[1]}",
            "seed": self.seed,
            "faults": {"up": self.up.to_dict(), "down": self.down.to_dict()},
            "stats": self.stats,
        }

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1], reuse_address=True)
        log.info("%s: %s:%d -> %s:%d, seed %d", self.name, *self.address, *self.target, self.seed)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        for t in list(self._handlers):
            t.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await self._carry(reader, writer)
        except asyncio.CancelledError:
            # stop() ends the handlers; this task belongs to the server and nobody awaits it,
            # so it ends quietly rather than leave asyncio a cancelled task to complain about.
            writer.close()
        finally:
            self._handlers.discard(task)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conn_stats["accepted"] += 1
        if len(self._conns) >= MAX_CONNECTIONS:
            self._conn_stats["refused"] += 1
            writer.close()
            return
        # Number and seed are taken at accept, before any wait: the order of arrival decides them.
        self._next_no += 1
        no, seed = self._next_no, self._rng.getrandbits(64)
        try:
            server = await asyncio.wait_for(asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as e:
            self._conn_stats["target_unreachable"] += 1
            log.warning("%s #%d: target %s:%d unreachable (%s); client closed", self.name, no, *self.target, e)
            writer.close()
            return
        conn = _Connection(self, no, seed, (reader, writer), server)
        self._conns.add(conn)
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)


# -- the control endpoint -------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
}


class ChaosControl:
    """HTTP/JSON on one port for the faults of one or many proxies, by name.

    ``GET /proxies``, ``GET /proxies/<name>``, ``POST /proxies/<name>/faults``
    (``{"direction": "up"|"down"|"both", "<fault>": value, …}``),
    ``POST /proxies/<name>/heal``, ``POST /heal``. Every answer is JSON; an
    error is ``{"error": "…"}`` with 400, 404 or 405.
    """

    def __init__(self, proxies: Iterable[ChaosProxy] = (), listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.proxies: dict[str, ChaosProxy] = {}
        for p in proxies:
            self.add(p)
        self.listen = (listen[0], int(listen[1]))
        self._server: asyncio.AbstractServer | None = None

    def add(self, proxy: ChaosProxy) -> None:
        if proxy.name in self.proxies:
            raise FaultError(f"two proxies named {proxy.name!r}")
        self.proxies[proxy.name] = proxy

    @property
    def address(self) -> tuple[str, int]:
        if self._server and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return host, port
        return self.listen

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.listen[0], self.listen[1], reuse_address=True, limit=HTTP_MAX_HEADER_BYTES
        )
        log.info("chaos control on %s", self.url)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def handle(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        """Route one request; returns (status, JSON-able answer). No sockets: tests call it directly."""
        try:
            return 200, self._route(method.upper(), path, body)
        except _HttpError as e:
            return e.status, {"error": str(e)}
        except FaultError as e:
            return 400, {"error": str(e)}

    def _proxy(self, name: str) -> ChaosProxy:
        p = self.proxies.get(name)
        if p is None:
            raise _HttpError(404, f"no proxy {name!r}; the proxies are {', '.join(self.proxies) or 'none'}")
        return p

    def _route(self, method: str, path: str, body: bytes) -> Any:
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(path).path.split("/") if p]

        def only(allowed: str) -> None:
            if method != allowed:
                raise _HttpError(405, f"{method} {path}: use {allowed}")

        if not parts:
            only("GET")
            return {
                "proxies": list(self.proxies),
                "endpoints": [
                    "GET /proxies",
                    "GET /proxies/<name>",
                    "POST /proxies/<name>/faults {\"direction\": \"up|down|both\", \"<fault>\": value}",
                    "POST /proxies/<name>/heal",
                    "POST /heal",
                ],
            }
        if parts == ["heal"]:
            only("POST")
            for p in self.proxies.values():
                p.heal()
            return [p.describe() for p in self.proxies.values()]
        if parts[0] != "proxies" or len(parts) > 3:
            raise _HttpError(404, f"no such endpoint {path!r}; GET / lists them")
        if len(parts) == 1:
            only("GET")
            return [p.describe() for p in self.proxies.values()]
        proxy = self._proxy(parts[1])
        if len(parts) == 2:
            only("GET")
            return proxy.describe()
        if parts[2] == "heal":
            only("POST")
            proxy.heal()
            return proxy.describe()
        if parts[2] == "faults":
            if method == "GET":
                return {"up": proxy.up.to_dict(), "down": proxy.down.to_dict()}
            only("POST")
            try:
                changes = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError) as e:
                raise _HttpError(400, f"the body is not JSON: {e}") from None
            if not isinstance(changes, dict):
                raise _HttpError(400, "the body is a JSON object: {\"direction\": \"up\", \"drop_next\": 1}")
            direction = changes.pop("direction", None)
            if direction not in ("up", "down", "both"):
                raise _HttpError(400, f"direction {direction!r}: give \"up\", \"down\" or \"both\"")
            proxy.set_faults(direction, **changes)
            return proxy.describe()
        raise _HttpError(404, f"no such endpoint {path!r}; GET / lists them")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, path, body = await asyncio.wait_for(self._read_request(reader), HTTP_READ_TIMEOUT_S)
                status, answer = self.handle(method, path, body)
            except TimeoutError:
                status, answer = 408, {"error": f"request not complete in {HTTP_READ_TIMEOUT_S:g} s"}
            except _HttpError as e:
                status, answer = e.status, {"error": str(e)}
            data = (json.dumps(answer, indent=2) + "\n").encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head + data)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _HttpError(413, f"request head over {HTTP_MAX_HEADER_BYTES} bytes") from None
        except asyncio.IncompleteReadError:
            raise _HttpError(400, "the request ended before its head did") from None
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split()
        if len(request) != 3:
            raise _HttpError(400, f"not an HTTP request line: {lines[0][:80]!r}")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise _HttpError(400, f"Content-Length {value.strip()!r} is not a number") from None
        if not 0 <= length <= HTTP_MAX_BODY_BYTES:
            raise _HttpError(413, f"body of {length} bytes; at most {HTTP_MAX_BODY_BYTES}")
        try:
            body = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise _HttpError(400, f"the body ended before its {length} bytes") from None
        return request[0], request[1], body


# -- a network's proxies --------------------------------------------------------------


@dataclass(frozen=True)
class ProxySpec:
    """One proxy to run: where it listens, where it forwards, and who stands on either side."""

    name: str  # the link: terminal-acquirer, acquirer-switch, switch-<issuer>
    listen: tuple[str, int]
    target: tuple[str, int]
    client: str = ""  # the party that connects through it: terminal, acquirer, switch
    server: str = ""  # the party behind it: acquirer, switch, issuer-<name>
    up: Faults = field(default_factory=Faults, hash=False)
    down: Faults = field(default_factory=Faults, hash=False)

    def proxy(self, seed: int) -> ChaosProxy:
        # Copies: a running proxy counts its *_next faults down; the plan stays as planned.
        up, down = Faults(**self.up.to_dict()), Faults(**self.down.to_dict())
        return ChaosProxy(self.listen, self.target, seed, self.name, up, down)


_CHAOS_KEYS = ("enabled", "base_port", "control_port", "seed", "links")


def _int_key(section: Mapping[str, Any], key: str, where: str) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise cfg.ConfigError(f"{where}: '{key}' must be a whole number, not {value!r}")
    return value


def chaos_settings(net: cfg.Network) -> dict[str, Any] | None:
    """The checked ``[chaos]`` section, or None when it is absent or not enabled."""
    section = net.raw.get("chaos")
    if section is None:
        return None
    where = f"{net.path}: [chaos]"
    if not isinstance(section, dict):
        raise cfg.ConfigError(f"{where} must be a table")
    unknown = [k for k in section if k not in _CHAOS_KEYS]
    if unknown:
        raise cfg.ConfigError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(_CHAOS_KEYS)}")
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise cfg.ConfigError(f"{where}: 'enabled' is true or false")
    if not enabled:
        return None
    if "base_port" not in section:
        raise cfg.ConfigError(f"{where}: missing 'base_port' (the first proxy's port; each link takes the next)")
    base = _int_key(section, "base_port", where)
    seed = _int_key(section, "seed", where) if "seed" in section else 0
    control = _int_key(section, "control_port", where) if "control_port" in section else None
    links = section.get("links", {})
    if not isinstance(links, dict):
        raise cfg.ConfigError(f"{where}: 'links' is a table of [chaos.links.<link>]")
    return {"base_port": base, "control_port": control, "seed": seed, "links": links}


def _links(net: cfg.Network) -> list[tuple[str, str, str]]:
    """(link name, client party, server party) for every link of the network, in a fixed order."""
    return [
        ("terminal-acquirer", "terminal", "acquirer"),
        ("acquirer-switch", "acquirer", "switch"),
        *((f"switch-{i['name']}", "switch", f"issuer-{i['name']}") for i in net.issuers),
    ]


def plan_proxies(net: cfg.Network) -> list[ProxySpec]:
    """A proxy on every link when ``[chaos] enabled = true``; none otherwise.

    Ports: ``base_port`` for terminal-acquirer, ``+1`` for acquirer-switch,
    ``+2 …`` for switch-<issuer> in the order of ``[[issuers]]``. Each listens
    on the network's host and forwards to the party's configured port.
    """
    s = chaos_settings(net)
    if s is None:
        return []
    links = _links(net)
    names = [name for name, _, _ in links]
    where = f"{net.path}: [chaos]"
    for name in s["links"]:
        if name not in names:
            raise cfg.ConfigError(f"{where}: no link {name!r}; the links are {', '.join(names)}")
    base = s["base_port"]
    if not 1 <= base <= 65535 - len(links) + 1:
        raise cfg.ConfigError(f"{where}: base_port {base} leaves no room for {len(links)} ports below 65536")
    party_ports = {net.endpoint(p).port: p for p in net.party_names()}
    specs = []
    for n, (name, client, server) in enumerate(links):
        port = base + n
        if port in party_ports:
            raise cfg.ConfigError(f"{where}: link {name} would listen on {port}, the port of {party_ports[port]}")
        faults = s["links"].get(name, {})
        if not isinstance(faults, dict) or any(k not in DIRECTIONS for k in faults):
            raise cfg.ConfigError(f"{where}: [chaos.links.{name}] holds 'up' and 'down' tables of faults")
        try:
            up, down = (Faults.from_dict(faults.get(d, {})) for d in DIRECTIONS)
        except FaultError as e:
            raise cfg.ConfigError(f"{where}: [chaos.links.{name}]: {e}") from None
        ep = net.endpoint(server)
        specs.append(ProxySpec(name, (net.host, port), (ep.host, ep.port), client, server, up, down))
    control = _control_port(s, len(specs))
    if control in party_ports or control in {sp.listen[1] for sp in specs} or not 1 <= control <= 65535:
        raise cfg.ConfigError(f"{where}: control port {control} is taken by a party or a proxy, or out of range")
    return specs


def _control_port(settings: Mapping[str, Any], n_links: int) -> int:
    explicit = settings["control_port"]
    return explicit if explicit is not None else settings["base_port"] + n_links


def control_address(net: cfg.Network) -> tuple[str, int] | None:
    """Where the control endpoint of the network's proxies listens (default: the port after the last proxy)."""
    specs = plan_proxies(net)
    if not specs:
        return None
    s = chaos_settings(net)
    assert s is not None
    return net.host, _control_port(s, len(specs))


def proxied_endpoints(net: cfg.Network) -> dict[str, tuple[str, int]]:
    """Link name -> where that link's client connects instead of the server: the proxy's address."""
    return {spec.name: spec.listen for spec in plan_proxies(net)}


def upstream_endpoint(net: cfg.Network, client: str, server: str) -> tuple[str, int]:
    """Where ``client`` (terminal, acquirer, switch) connects to reach the party ``server``:
    the proxy on that link when ``[chaos]`` is enabled, else the server itself."""
    for spec in plan_proxies(net):
        if spec.client == client and spec.server == server:
            return spec.listen
    ep = net.endpoint(server)
    return ep.host, ep.port


async def run_proxies(
    specs: Sequence[ProxySpec],
    control_port: int | None = None,
    seed: int = 0,
    *,
    control_host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Run the proxies (and a control endpoint for them, unless ``control_port`` is None)
    until ``stop`` is set, or SIGINT/SIGTERM without one. Returns each proxy's final state."""
    proxies = [spec.proxy(seed) for spec in specs]
    control = ChaosControl(proxies, (control_host, control_port)) if control_port is not None else None
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    started: list[Any] = []
    try:
        for p in proxies:
            await p.start()
            started.append(p)
            if not quiet:
                host, port = p.address
                print(f"  chaos {p.name:<20} {host}:{port} -> {p.target[0]}:{p.target[1]}  "
                      f"up {p.up.describe()}  down {p.down.describe()}", flush=True)
        if control:
            await control.start()
            started.append(control)
            if not quiet:
                print(f"  chaos control          {control.url}  (seed {seed})", flush=True)
        if ready:
            ready.set()
        await stop.wait()
    finally:
        for s in reversed(started):
            await s.stop()
    final = [p.describe() for p in proxies]
    if not quiet:
        for d in final:
            print(json.dumps({"proxy": d["name"], "stats": d["stats"]}), flush=True)
    return final


# -- the command line -----------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:19583``, ``:19583`` or ``19583`` (host 127.0.0.1)."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:19583") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port outside 0..65535")
    return host.strip("[]") or "127.0.0.1", number


def _run(coro) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(levelname)s %(message)s")


def cmd_proxy(args) -> int:
    up = parse_assignments(args.up or [])
    down = parse_assignments(args.down or [])
    name = args.name or f"{args.target[0]}:{args.target[1]}"
    spec = ProxySpec(name, args.listen, args.target, up=Faults(**up), down=Faults(**down))
    _logging()
    control_host, control_port = args.control if args.control else (None, None)
    _run(run_proxies([spec], control_port, args.seed, control_host=control_host or "127.0.0.1"))
    return 0


def cmd_run(args) -> int:
    net = cfg.load(args.config)
    specs = plan_proxies(net)
    if not specs:
        raise cfg.ConfigError(f"{net.path}: [chaos] is not enabled; add enabled = true and base_port (docs/chaos.md)")
    s = chaos_settings(net)
    assert s is not None
    control = control_address(net)
    assert control is not None
    _logging()
    _run(run_proxies(specs, control[1], s["seed"], control_host=control[0]))
    return 0


def _call(control: tuple[str, int], method: str, path: str, body: Any = None) -> int:
    url = f"http://{control[0]}:{control[1]}{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_CLIENT_TIMEOUT_S) as answer:
            print(answer.read().decode().rstrip())
            return 0
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            text = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        print(f"posnet chaos: {text}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"posnet chaos: no control endpoint at {url}: {reason}", file=sys.stderr)
        return 1


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def cmd_set(args) -> int:
    changes = parse_assignments(args.changes)
    return _call(args.control, "POST", f"/proxies/{_quote(args.name)}/faults", {"direction": args.direction, **changes})


def cmd_heal(args) -> int:
    return _call(args.control, "POST", f"/proxies/{_quote(args.name)}/heal" if args.name else "/heal", {})


def cmd_show(args) -> int:
    return _call(args.control, "GET", f"/proxies/{_quote(args.name)}" if args.name else "/proxies")


def _add_commands(parser: argparse.ArgumentParser) -> None:
    fault_names = ", ".join(_KINDS)
    sub = parser.add_subparsers(dest="chaos_command", required=True)
    default_control = os.environ.get("POSNET_CHAOS_CONTROL", DEFAULT_CONTROL)

    def with_control(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--control", type=parse_address, default=parse_address(default_control),
                        help=f"the control endpoint, HOST:PORT (default {default_control}; env POSNET_CHAOS_CONTROL)")
        return sp

    sp = sub.add_parser("proxy", help="run one fault proxy in the foreground until Ctrl-C",
                        description=f"faults: {fault_names}")
    sp.add_argument("--listen", type=parse_address, required=True, help="where clients connect, HOST:PORT")
    sp.add_argument("--target", type=parse_address, required=True, help="the server behind it, HOST:PORT")
    sp.add_argument("--name", default="", help="the proxy's name at the control endpoint (default the target)")
    sp.add_argument("--control", type=parse_address, help="also serve the control endpoint here, HOST:PORT")
    sp.add_argument("--seed", type=int, default=0, help="seed of every fault decision (default 0): a run replays")
    sp.add_argument("--up", action="append", metavar="NAME=VALUE,…",
                    help="faults client to server, e.g. drop=0.1,delay_ms=50")
    sp.add_argument("--down", action="append", metavar="NAME=VALUE,…", help="faults server to client")
    sp.set_defaults(fn=cmd_proxy)

    sp = sub.add_parser("run", help="a proxy on every link of the network's [chaos] plan, and their control endpoint")
    sp.add_argument("--config", default=os.environ.get("POSNET_CONFIG", "posnet.toml"),
                    help="network file (default posnet.toml)")
    sp.set_defaults(fn=cmd_run)

    sp = with_control(sub.add_parser("set", help="change the faults of a running proxy",
                                     description=f"faults: {fault_names}"))
    sp.add_argument("name", help="the proxy, e.g. acquirer-switch")
    sp.add_argument("--direction", choices=("up", "down", "both"), default="both",
                    help="up = client to server, down = server to client (default both)")
    sp.add_argument("changes", nargs="+", metavar="NAME=VALUE", help="e.g. drop_next=1 delay_ms=200 black_hole=true")
    sp.set_defaults(fn=cmd_set)

    sp = with_control(sub.add_parser("heal", help="every fault off, on one proxy or all"))
    sp.add_argument("name", nargs="?", help="the proxy (default: all)")
    sp.set_defaults(fn=cmd_heal)

    sp = with_control(sub.add_parser("show", help="faults and counters of the proxies, as JSON"))
    sp.add_argument("name", nargs="?", help="one proxy (default: all)")
    sp.set_defaults(fn=cmd_show)


def register_cli(subparsers) -> None:
    """Add ``posnet chaos …`` to the posnet command's subparsers."""
    parser = subparsers.add_parser("chaos", help="fault proxies on the network's links: delay, drop, reset, corrupt …")
    _add_commands(parser)


def main(argv: list[str] | None = None) -> int:
    """``python -m posnet.runtime.chaos proxy|run|set|heal|show …``: the same as ``posnet chaos``."""
    parser = argparse.ArgumentParser(prog="posnet chaos", description="fault proxies on the network's links")
    _add_commands(parser)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except cfg.ConfigError as e:
        print(f"posnet chaos: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
