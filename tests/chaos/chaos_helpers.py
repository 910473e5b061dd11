"""A tiny frame server and client over loopback TCP, to put a fault proxy between."""

from __future__ import annotations

import asyncio
import contextlib
import time

from posnet.runtime.chaos import ChaosProxy
from posnet.wire import MAX_FRAME_BYTES, FrameReader, frame

WAIT_S = 2.0  # how long a test waits for something that should come
QUIET_S = 0.3  # how long a test listens to be sure something does not come


def run(coro, timeout_s: float = 15.0, loop: str = "asyncio"):
    async def bounded():
        return await asyncio.wait_for(coro, timeout_s)

    if loop == "uvloop":
        import uvloop

        return uvloop.run(bounded())
    return asyncio.run(bounded())


class FrameServer:
    """Records every byte and every frame it gets; echoes each frame back unless ``echo=False``.

    It frames leniently: on a bad length it stops framing that connection and only records bytes.
    """

    def __init__(self, echo: bool = True):
        self.echo = echo
        self.frames: list[bytes] = []
        self.raw = bytearray()
        self.reads = 0
        self.connections = 0
        self.closed_connections = 0
        self.got_frame = asyncio.Event()
        self.got_eof = asyncio.Event()
        self.lost = asyncio.Event()  # a connection ended
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FrameServer:
        self._server = await asyncio.start_server(self._serve, host, port)
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        buf = bytearray()
        framing = True
        try:
            while data := await reader.read(65536):
                self.reads += 1
                self.raw += data
                if not framing:
                    continue
                buf += data
                got = []
                while len(buf) >= 2:
                    n = int.from_bytes(buf[:2], "big")
                    if n == 0 or n > MAX_FRAME_BYTES:
                        framing = False
                        break
                    if len(buf) < 2 + n:
                        break
                    got.append(bytes(buf[2 : 2 + n]))
                    del buf[: 2 + n]
                for f in got:
                    self.frames.append(f)
                    self.got_frame.set()
                    if self.echo:
                        writer.write(frame(f))
                        await writer.drain()
            self.got_eof.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed_connections += 1
            self.lost.set()
            writer.close()

    async def wait_frames(self, n: int, timeout_s: float = WAIT_S) -> list[bytes]:
        end = time.monotonic() + timeout_s
        while len(self.frames) < n:
            if time.monotonic() > end:
                raise AssertionError(f"the server has {len(self.frames)} frames, expected {n}")
            await asyncio.sleep(0.005)
        return self.frames


class Client:
    opened: list[Client] = []  # closed by rig() at the end of a test

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        Client.opened.append(self)
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.inbox: list[bytes] = []
        self.reads = 0

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> Client:
        return cls(*await asyncio.open_connection(*address))

    def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(frame(p) for p in payloads))

    async def recv(self, timeout_s: float = WAIT_S) -> bytes:
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
            if not data:
                raise ConnectionError("the connection closed")
            self.reads += 1
            self.inbox += self.frames.feed(data)
        return self.inbox.pop(0)

    async def recv_n(self, n: int, timeout_s: float = WAIT_S) -> list[bytes]:
        return [await self.recv(timeout_s) for _ in range(n)]

    async def nothing(self, for_s: float = QUIET_S) -> None:
        """Assert that no frame comes for a while (and that the connection stays open)."""
        with contextlib.suppress(asyncio.TimeoutError):
            got = await self.recv(for_s)
            raise AssertionError(f"a frame came through: {got!r}")

    async def closed(self, timeout_s: float = WAIT_S) -> bool:
        """True once the connection is closed or reset by the other side."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
                if not data:
                    return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def rig(echo: bool = True, seed: int = 0, name: str = "link", **faults):
    """A frame server, and a proxy in front of it with ``up_*``/``down_*`` faults: ``up_drop_next=2``."""
    server = await FrameServer(echo).start()
    proxy = ChaosProxy(("127.0.0.1", 0), server.address, seed=seed, name=name)
    for key, value in faults.items():
        direction, _, fault = key.partition("_")
        proxy.set_faults(direction, **{fault: value})
    await proxy.start()
    try:
        yield server, proxy
    finally:
        close_clients()
        await proxy.stop()
        await server.stop()


def close_clients() -> None:
    while Client.opened:
        Client.opened.pop().close()


def payloads(n: int, size: int = 40) -> list[bytes]:
    """Distinct payloads: frame i starts with its number."""
    return [f"{i:04d}".encode() + bytes((i * 7 + k) % 256 for k in range(size - 4)) for i in range(n)]
