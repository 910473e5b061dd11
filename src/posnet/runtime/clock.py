"""The network's clock: real time plus an offset that a demo or a test moves forward.

The time that drives cut-off and the expiry of holds is the runtime's, never a
core's: a core is handed ``now_ms``. With ``[network] dev_clock = true`` the
runtime reads real time plus an offset kept in ``data/clock.json``, so
``posnet clock advance 48h`` makes two days pass in a second and a hold that
never cleared is released before your eyes. Every process of the network reads
the same file (the parties when they start, ``posnet pos``, ``posnet acquirer``),
and a running party is told the new offset over its control socket: it re-arms
its timers for the new time and fires, earliest first, those now due.

Time only moves forward: the offset only grows. Without ``dev_clock`` the
offset is 0 whatever the file says, and ``posnet clock advance`` refuses.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .. import config as cfg
from .. import timefmt
from . import control

CLOCK_FILE = "clock.json"  # in the network's data folder
ADVANCE_MAX_S = 3_660 * 86_400  # one advance moves at most ten years: past any card's expiry, not into overflow
FIRED_SHOWN_MAX = 5  # timers of a party named in what `posnet clock advance` prints
ADVANCE_REPLY_TIMEOUT_S = 60.0  # a party expiring many holds at once takes its time to answer
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNIT_S = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def wall_ms() -> int:
    """Real time, milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def parse_duration_s(text: str) -> int:
    """``90s``, ``30m``, ``48h``, ``2d``, ``1d12h`` -> seconds (more than 0, at most ADVANCE_MAX_S)."""
    given = text.strip().lower()
    m = _DURATION.fullmatch(given)
    if not given or m is None:
        raise cfg.ConfigError(f"{text!r} is not a duration: write it like 90s, 30m, 48h, 2d or 1d12h")
    seconds = sum(int(n) * unit_s for n, (_, unit_s) in zip(m.groups(), _UNIT_S, strict=True) if n)
    if seconds <= 0:
        raise cfg.ConfigError(f"{text!r}: the clock only moves forward; give a duration of 1s or more")
    if seconds > ADVANCE_MAX_S:
        raise cfg.ConfigError(f"{text!r}: one advance moves the clock at most {format_duration(ADVANCE_MAX_S)}")
    return seconds


def format_duration(seconds: int) -> str:
    """Seconds as ``1d12h``, ``49h`` is ``2d1h``; ``0s`` for none."""
    parts = []
    for unit, unit_s in _UNIT_S:
        n, seconds = divmod(seconds, unit_s)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


class NetworkClock:
    """Real time plus the network's offset, read by a driver and handed to its core as ``now_ms``."""

    def __init__(self, offset_ms: int = 0):
        assert offset_ms >= 0, offset_ms
        self.offset_ms = offset_ms

    @classmethod
    def of(cls, net: cfg.Network) -> "NetworkClock":
        """The clock of a network as it stands in its data folder (real time, off dev mode)."""
        return cls(read_offset_ms(net) if dev_clock(net) else 0)

    def now_ms(self) -> int:
        return wall_ms() + self.offset_ms

    def move_to(self, offset_ms: int) -> bool:
        """Take a new offset if it is later than this one (forward only); say whether the clock moved."""
        if offset_ms <= self.offset_ms:
            return False
        self.offset_ms = offset_ms
        return True


# -- the offset in the data folder -------------------------------------------------


def dev_clock(net: cfg.Network) -> bool:
    return net.raw.get("network", {}).get("dev_clock", False) is True


def clock_path(net: cfg.Network) -> Path:
    return net.data_dir / CLOCK_FILE


def read_offset_ms(net: cfg.Network) -> int:
    path = clock_path(net)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except ValueError as e:
        raise cfg.ConfigError(f"{path}: not a clock file ({e}); delete it to go back to real time") from None
    offset_ms = data.get("offset_ms") if isinstance(data, dict) else None
    if type(offset_ms) is not int or offset_ms < 0:
        raise cfg.ConfigError(f"{path}: offset_ms must be a whole number of milliseconds, 0 or more")
    return offset_ms


def advance(net: cfg.Network, seconds: int) -> int:
    """Add ``seconds`` to the network's offset, in its data folder; return the new offset (ms)."""
    if not dev_clock(net):
        raise cfg.ConfigError(
            f"the network clock moves only in dev mode: put `dev_clock = true` under [network] in {net.path}"
        )
    assert 0 < seconds <= ADVANCE_MAX_S, seconds
    path = clock_path(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:  # two advances at once add up, neither is lost
        fcntl.flock(lock, fcntl.LOCK_EX)
        offset_ms = read_offset_ms(net) + seconds * 1000
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset_ms": offset_ms}) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # a reader sees the old offset or the new one, never half of one
    return offset_ms


def tell_parties(net: cfg.Network, offset_ms: int) -> dict[str, dict[str, Any] | None]:
    """Hand every running party the new offset; ``None`` for a party that is not running."""
    out: dict[str, dict[str, Any] | None] = {}
    for party in net.party_names():
        try:
            out[party] = control.send(net.data_dir / party, control.CLOCK_ADVANCE, {"offset_ms": offset_ms},
                                      timeout_s=ADVANCE_REPLY_TIMEOUT_S)
        except (OSError, ValueError) as e:  # it listens but did not answer in time, or answered garbage
            out[party] = {"ok": False, "error": f"no answer: {e}"}
    return out


# -- posnet clock ---------------------------------------------------------------------


def network_time(now_ms: int) -> str:
    return f"{timefmt.stamp(now_ms)} CST"


def cmd_show(args) -> int:
    net = cfg.load(args.config)
    clock = NetworkClock.of(net)
    now = clock.now_ms()
    if args.json:
        print(json.dumps({"now_ms": now, "offset_ms": clock.offset_ms, "dev_clock": dev_clock(net)}))
    elif dev_clock(net):
        print(f"network time {network_time(now)} (dev clock: real time + {format_duration(clock.offset_ms // 1000)})")
    else:
        print(f"network time {network_time(now)} (real time; dev_clock is off)")
    return 0


def timers_fired(keys: list[str]) -> str:
    """``2 timers fell due: hold-expiry, saf:bank-a``, naming at most FIRED_SHOWN_MAX of them."""
    said = f"{len(keys)} timer{'' if len(keys) == 1 else 's'} fell due"
    if not keys:
        return said
    shown = ", ".join(keys[:FIRED_SHOWN_MAX])
    return f"{said}: {shown}{', …' if len(keys) > FIRED_SHOWN_MAX else ''}"


def cmd_advance(args) -> int:
    seconds = parse_duration_s(args.duration)
    net = cfg.load(args.config)
    offset_ms = advance(net, seconds)
    replies = tell_parties(net, offset_ms)
    now = NetworkClock(offset_ms).now_ms()
    print(f"network time {network_time(now)} (advanced {args.duration.strip().lower()}; "
          f"real time + {format_duration(offset_ms // 1000)})")
    failed = 0
    for party, reply in replies.items():
        if reply is None:
            print(f"  {party:<16} not running: takes the new time when it starts")
        elif reply.get("ok"):
            print(f"  {party:<16} told; {timers_fired(reply.get('fired', []))}")
        else:
            failed += 1
            print(f"  {party:<16} {reply.get('error')}: restart it to take the new time", file=sys.stderr)
    return 1 if failed else 0


def register_cli(sub, with_config) -> None:
    sp = sub.add_parser("clock", help="the network's clock: show it, or move it forward in dev mode")
    ops = sp.add_subparsers(dest="operation", required=True)
    f = with_config(ops.add_parser("show", help="the network's time (CST) and how far it is ahead of real time"))
    f.add_argument("--json", action="store_true", help="now_ms, offset_ms and dev_clock as JSON")
    f.set_defaults(fn=cmd_show)
    f = with_config(ops.add_parser("advance", help="move the clock forward (dev_clock only): holds expire, timers fire"))
    f.add_argument("duration", help="how far: 90s, 30m, 48h, 2d, 1d12h")
    f.set_defaults(fn=cmd_advance)
