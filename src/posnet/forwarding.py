"""Store and forward: advices a host owes upstream, kept until acknowledged.

A reversal (冲正) a host has accepted must reach the next hop even if the link
is down or the process restarts. The queue is a table of the party's store;
each item is resent as a repeat (0401) with bounded exponential backoff until
its acknowledgement (0410) arrives. Shared by the acquirer and the switch;
each owns one instance and decides what goes in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .effects import CancelTimer, Delete, Effect, Put, Send, SetTimer, Trace
from .wire import Message

TIMER_PREFIX = "saf:"
# Answers that end the repeats: done, a duplicate of one already done (DOMAIN.md §3), or nothing to reverse.
DELIVERED_CODES = ("00", "94", "25")


@dataclass(frozen=True)
class ForwardingLimits:
    first_retry_ms: int = 5_000  # wait this long for an acknowledgement before the first repeat
    backoff_cap_ms: int = 60_000  # repeats slow down to at most one per minute
    max_items: int = 100_000  # beyond this the host refuses new reversals (96) rather than lose one


class StoreAndForward:
    def __init__(self, table: str, link: str, limits: ForwardingLimits = ForwardingLimits()):
        self.table = table
        self.link = link
        self.limits = limits
        self.items: dict[str, dict[str, Any]] = {}

    def restore(self, rows: dict[str, dict[str, Any]], now_ms: int) -> list[Effect]:
        """After a restart: everything still queued goes out again soon."""
        self.items = {k: dict(v) for k, v in rows.items()}
        return [SetTimer(TIMER_PREFIX + key, now_ms) for key in self.items]

    def kick(self, now_ms: int) -> list[Effect]:
        """The link is back: resend everything owed now."""
        return [SetTimer(TIMER_PREFIX + key, now_ms) for key in self.items]

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limits.max_items

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def enqueue(self, key: str, msg: Message, encode: Callable[[Message], bytes], now_ms: int) -> list[Effect]:
        if key in self.items:
            return []  # already owed: the queue sends it; nothing more to do
        item = {"mti": msg.mti, "fields": dict(msg.fields), "attempts": 1}
        self.items[key] = item
        return [
            Put(self.table, key, item),
            Send(self.link, encode(Message(msg.mti, dict(msg.fields)))),
            SetTimer(TIMER_PREFIX + key, now_ms + self.limits.first_retry_ms),
        ]

    def on_answer(self, key: str, response_code: str | None) -> list[Effect]:
        """The next hop answered an advice: delivered, or refused (a MAC error, say) and repeated later."""
        if key not in self.items:
            return []
        if response_code not in DELIVERED_CODES:
            return [Trace("", "advice refused: kept for the next repeat", {"key": key, "rc": response_code})]
        del self.items[key]
        return [Delete(self.table, key), CancelTimer(TIMER_PREFIX + key)]

    def on_timer(self, timer_key: str, encode: Callable[[Message], bytes], now_ms: int) -> list[Effect]:
        key = timer_key[len(TIMER_PREFIX) :]
        item = self.items.get(key)
        if item is None:
            return []
        item["attempts"] += 1
        repeat_mti = item["mti"][:3] + "1"  # 0400 -> 0401
        delay = min(self.limits.first_retry_ms * 2 ** min(item["attempts"] - 1, 16), self.limits.backoff_cap_ms)
        return [
            Put(self.table, key, item),
            Send(self.link, encode(Message(repeat_mti, dict(item["fields"])))),
            SetTimer(timer_key, now_ms + delay),
        ]
