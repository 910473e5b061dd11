"""An operator's command to a running party: one JSON line over a Unix socket in the party's folder.

``posnet acquirer inject-tmk`` reaches the acquirer this way while it runs:
the command becomes a ``Command`` input of the party's core, handled on the
party's event loop like any other input, and answered once its records are
committed. When no party listens (it is not running), ``send`` returns
``None`` and the caller may apply the command to the store itself.
``clock-advance`` (``posnet clock advance``) is the node's own: it moves the
node's clock and re-arms its timers; the core only sees the timers that fire.

Only processes that can open the party's folder can connect: the socket is
created there with mode 0600.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from ..effects import Command, Trace

SOCKET_NAME = "control.sock"
SOCKET_PATH_MAX = 100  # bytes; sun_path holds 108 on Linux
LINE_MAX_BYTES = 64 * 1024
REPLY_TIMEOUT_S = 10.0
# A command to the node, not to its core: the driver owns the clock (runtime/clock.py).
CLOCK_ADVANCE = "clock-advance"


def socket_path(directory: Path) -> Path:
    """The control socket of the party whose folder is ``directory`` (a short one in /tmp if that is too long)."""
    p = Path(directory) / SOCKET_NAME
    if len(os.fsencode(str(p))) <= SOCKET_PATH_MAX:
        return p
    digest = hashlib.sha256(os.fsencode(str(Path(directory).resolve()))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"posnet-{digest}.sock"


async def serve(node: Any, directory: Path) -> asyncio.AbstractServer:
    """Listen for operator commands to ``node`` (a runtime.node.PartyNode)."""
    path = socket_path(directory)
    if path.exists():
        path.unlink()  # left by a process that died: nobody listens on it

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                cmd = Command(str(request["name"]), dict(request.get("args", {})))
            except (ValueError, KeyError, TypeError) as e:
                reply: dict[str, Any] = {"ok": False, "error": f"bad command: {e}"}
            else:
                if cmd.name == CLOCK_ADVANCE:
                    reply = _clock_advance(node, cmd.args)
                else:
                    effects = node.handle_now(cmd)
                    traces = [{"event": t.event, **t.detail} for t in effects if isinstance(t, Trace)]
                    reply = {"ok": True, "traces": traces}
            writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(on_client, path=str(path), limit=LINE_MAX_BYTES)
    os.chmod(path, 0o600)
    return server


def _clock_advance(node: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The network clock's new offset: answered once the timers it made due have fired and committed."""
    offset_ms = args.get("offset_ms")
    if type(offset_ms) is not int or offset_ms < 0:
        return {"ok": False, "error": f"{CLOCK_ADVANCE}: offset_ms is a whole number of milliseconds, 0 or more"}
    fired = node.advance_clock(offset_ms)
    return {"ok": True, "offset_ms": node.clock.offset_ms, "fired": fired}


def send(directory: Path, name: str, args: dict[str, Any], timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any] | None:
    """Hand a running party a command; ``None`` when no party listens."""
    path = socket_path(directory)
    if not path.exists():
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket left by a party that died
        s.sendall(json.dumps({"name": name, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(LINE_MAX_BYTES)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return json.loads(data)
