"""The simulator's SMS rule: every money event of a card with a phone has exactly one SMS, and every
SMS is of a money event.

Nobody delivers SMS in the simulated world, so an issuer's ``sms_outbox``
holds every SMS it ever wrote. The money events are read from the issuer's
books: a hold placed (a pending transfer from the card), its void, its expiry,
its posting when the issuer tells of postings, and every other transfer into
or out of the card but the opening balance and an overdraft advance (which
come with a hold placed again, told once with it).
"""

from __future__ import annotations

from typing import Any

from ..effects import mask_pan
from ..issuer import sms
from ..ledger import TransferFlags, chart

SILENT_CODES = (chart.OPENING_BALANCE, chart.OVERDRAFT_ADVANCE)


def money_events(issuer: Any, account_id: int) -> set[str]:
    """The ids of one card account's money events: the ``id`` of the SMS of each."""
    ledger = issuer.ledger
    out: set[str] = set()
    for t in ledger.account_history(account_id):
        if t.flags & TransferFlags.PENDING:
            out.add(str(t.id))
            if ledger.pending_status(t.id) == "expired":
                out.add(str(sms.expiry_event_id(t.id)))
        elif t.flags & TransferFlags.VOID_PENDING:
            out.add(str(t.id))
        elif t.flags & TransferFlags.POST_PENDING:
            if issuer.config.sms_on_post:
                out.add(str(t.id))
        elif t.code not in SILENT_CODES and t.amount > 0:
            out.add(str(t.id))
    return out


def check(issuer: Any, outbox: dict[int, dict[str, Any]]) -> list[str]:
    """What breaks the rule at one issuer, whose SMS (all of them) are ``outbox``, by their numbers
    (``issuer.sms.numbered``)."""
    violations: list[str] = []
    expected: dict[str, str] = {}  # event id -> masked card
    for pan, card in issuer.config.cards.items():
        if card.phone:
            expected.update(dict.fromkeys(money_events(issuer, card.account_id), mask_pan(pan)))
    told: dict[str, dict[str, Any]] = {}  # event id -> its SMS
    for number, row in sorted(outbox.items()):
        if row["id"] in told:
            violations.append(f"{issuer.config.name}: money event {row['id']} of {row['card']} told twice (SMS number {number})")
        told[row["id"]] = row
    for event_id in sorted(expected.keys() - told.keys()):
        violations.append(f"{issuer.config.name}: money event {event_id} of {expected[event_id]} has no SMS")
    for event_id in sorted(told.keys() - expected.keys()):
        violations.append(f"{issuer.config.name}: SMS {event_id} ({told[event_id]['event']}, {told[event_id]['card']}) tells of no money event")
    return violations
