"""The vocabulary between a party core and the driver that runs it.

A core is a plain object. The driver hands it one input at a time, with the
time, and gets back a list of effects. Records (``Put``, ``Delete``,
``LedgerWrite``) must be committed before any other effect of the same list is
carried out: persist, then speak (DESIGN.md principle 3).

Addresses are opaque strings chosen by the driver: a named link the core
asked for (``"switch"``, ``"issuer:bank-a"``) or the source of an inbound
message (``Received.source``), to which a reply is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

# One encoder for every record (json.dumps with options builds a new one per call).
_record_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# -- inputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    source: str
    frame: bytes


@dataclass(frozen=True)
class TimerFired:
    key: str


@dataclass(frozen=True)
class LinkUp:
    link: str


@dataclass(frozen=True)
class LinkDown:
    link: str


@dataclass(frozen=True)
class Command:
    """An operator's or cardholder's action at a party (a terminal key press, an admin command)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


Input = Union[Received, TimerFired, LinkUp, LinkDown, Command]

# -- records: committed before anything else leaves -----------------------------


@dataclass(frozen=True)
class Put:
    """Write ``value`` under (table, key). The value is serialized at once, so
    later changes to the live object do not leak into what is committed."""

    table: str
    key: str
    value: dict[str, Any]
    encoded: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", _record_json(self.value))


@dataclass(frozen=True)
class Delete:
    table: str
    key: str


@dataclass(frozen=True)
class LedgerWrite:
    """The ledger's change set since the last input (posnet.ledger.LedgerChanges)."""

    changes: Any


RECORD_TYPES = (Put, Delete, LedgerWrite)

# -- outputs, after the commit --------------------------------------------------


@dataclass(frozen=True)
class Send:
    to: str
    frame: bytes


@dataclass(frozen=True)
class Close:
    to: str


@dataclass(frozen=True)
class SetTimer:
    key: str
    at_ms: int


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class Trace:
    """One hop of one transaction, for the trace log. PANs already masked."""

    lifecycle: str
    event: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Publish:
    """A file for another party or for the operator (a clearing file, a report), written by the
    driver after the commit into ``box``. The same (box, name) is always the same file, so
    publishing it again after a restart is harmless (posnet.clearing_files)."""

    box: str
    name: str
    text: str


@dataclass(frozen=True)
class Display:
    """What a terminal's screen shows."""

    text: str


@dataclass(frozen=True)
class Print:
    """A slip for the terminal's printer (posnet.terminal.receipt.Receipt or a fault slip)."""

    slip: Any


@dataclass(frozen=True)
class Done:
    """A terminal function is over; ``result`` says how it ended."""

    ok: bool
    response_code: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class TerminalOutput:
    """What a terminal function showed, printed and how it ended, as a driver gathers it."""

    displays: list[str] = field(default_factory=list)
    slips: list[Any] = field(default_factory=list)
    done: Done | None = None


Effect = Union[Put, Delete, LedgerWrite, Send, Close, SetTimer, CancelTimer, Trace, Publish, Display, Print, Done]


def mask_pan(pan: str | None) -> str:
    """First 6 and last 4 digits, the rest as ``*`` (DOMAIN.md §3)."""
    if not pan:
        return ""
    if len(pan) < 13:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
