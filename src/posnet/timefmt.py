"""The driver's clock (milliseconds since the epoch) as the trade writes it.

Cores never read a clock; they are handed ``now_ms`` and format it here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CHINA_STANDARD_TIME = timezone(timedelta(hours=8))


def local(now_ms: int, tz: timezone = CHINA_STANDARD_TIME) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz)


def hhmmss(now_ms: int) -> str:
    return local(now_ms).strftime("%H%M%S")


def mmdd(now_ms: int) -> str:
    return local(now_ms).strftime("%m%d")


def yymm(now_ms: int) -> str:
    return local(now_ms).strftime("%y%m")


def transmission_time(now_ms: int) -> str:
    """F7 on the host legs: MMDDhhmmss in UTC."""
    return datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime("%m%d%H%M%S")


def stamp(now_ms: int) -> str:
    """A readable local date and time for receipts and reports."""
    return local(now_ms).strftime("%Y/%m/%d %H:%M:%S")
