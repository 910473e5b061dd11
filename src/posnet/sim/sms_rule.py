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
    """The ids the SMS of one card account's money events are keyed by."""
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


def check(issuer: Any, outbox: dict[str, dict[str, Any]]) -> list[str]:
    """What breaks the rule at one issuer, whose SMS (all of them) are ``outbox``."""
    violations: list[str] = []
    expected: dict[str, str] = {}  # event id -> masked card
    for pan, card in issuer.config.cards.items():
        if card.phone:
            expected.update(dict.fromkeys(money_events(issuer, card.account_id), mask_pan(pan)))
    for key in sorted(expected.keys() - outbox.keys()):
        violations.append(f"{issuer.config.name}: money event {key} of {expected[key]} has no SMS")
    for key in sorted(outbox.keys() - expected.keys()):
        violations.append(f"{issuer.config.name}: SMS {key} ({outbox[key]['event']}, {outbox[key]['card']}) tells of no money event")
    return violations
