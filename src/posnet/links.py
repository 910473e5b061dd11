"""Watching a host link: echo tests when it is idle, and a close when the echo goes unanswered.

A host that hears nothing from its peer for ``interval_ms`` sends an echo
test (0800, F70 301); if nothing at all comes back within ``timeout_ms`` it
closes the link, and the driver reconnects with backoff. Shared by the
acquirer (its link to the switch) and the switch (its links to the issuers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .effects import CancelTimer, Close, Effect, Send, SetTimer, Trace

ECHO_TIMER = "echo:"
ECHO_TIMEOUT_TIMER = "echo-timeout:"


@dataclass(frozen=True)
class LinkLimits:
    echo_interval_ms: int = 60_000  # an idle link is tested once a minute
    echo_timeout_ms: int = 10_000  # an echo unanswered this long closes the link


class LinkWatch:
    def __init__(self, link: str, limits: LinkLimits, build_echo: Callable[[int], bytes]):
        self.link = link
        self.limits = limits
        self.build_echo = build_echo
        self.up = False
        self.last_heard_ms = 0

    def owns(self, timer_key: str) -> bool:
        return timer_key in (ECHO_TIMER + self.link, ECHO_TIMEOUT_TIMER + self.link)

    def link_up(self, now_ms: int) -> list[Effect]:
        self.up, self.last_heard_ms = True, now_ms
        return [SetTimer(ECHO_TIMER + self.link, now_ms + self.limits.echo_interval_ms)]

    def link_down(self) -> list[Effect]:
        self.up = False
        return [CancelTimer(ECHO_TIMER + self.link), CancelTimer(ECHO_TIMEOUT_TIMER + self.link)]

    def heard(self, now_ms: int) -> list[Effect]:
        """Any frame from the peer shows the link is alive."""
        self.last_heard_ms = now_ms
        return [CancelTimer(ECHO_TIMEOUT_TIMER + self.link)]

    def on_timer(self, key: str, now_ms: int) -> list[Effect]:
        if not self.up:
            return []
        if key == ECHO_TIMEOUT_TIMER + self.link:
            return [Trace("", "echo test unanswered: link closed", {"link": self.link}), Close(self.link)]
        idle_ms = now_ms - self.last_heard_ms
        effects: list[Effect] = [SetTimer(ECHO_TIMER + self.link, now_ms + self.limits.echo_interval_ms)]
        if idle_ms >= self.limits.echo_interval_ms:
            effects += [
                Send(self.link, self.build_echo(now_ms)),
                SetTimer(ECHO_TIMEOUT_TIMER + self.link, now_ms + self.limits.echo_timeout_ms),
            ]
        return effects
