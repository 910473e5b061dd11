"""SMS to the cardholder (动账通知): what the issuer tells the card's phone when its money moves.

One money event, one SMS, written to the ``sms_outbox`` in the same commit
as the movement itself, so a message is never lost: it waits in the outbox
until every channel (the local inbox, the SMS gateway's webhook) has it. An
SMS's ``id`` is the id of the money event — the ledger transfer of the hold,
of its release (void or reversal), of the refund credit, of the posting, or
the id derived from the hold for its expiry — and the ledger moves money
once per event, so an event is told once; the inbox and the gateway take an
SMS by that id (once only).

The outbox is one sequence of SMS, numbered in the order they were written;
the SMS of one input are one record, a page (below). The notifier
(``posnet.runtime.notifier``) delivers them in that order and tells the core,
with the command ``sms-delivered``, how far each channel has them; the core
records that mark and removes the pages every channel is through.

An SMS keeps the event's facts (card masked, merchant, amounts, balance
after, times); the words are put together when it is delivered (``text``).
The wording follows the banks' (docs/sms.md): the bank's name in 【】, the
card only as 尾号 and its last four digits, the time in China Standard Time,
the amount in 人民币 yuan, the merchant, and the available balance after the
movement. A card without a phone number gets no SMS (it has not signed up for
动账通知).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Any

from .. import timefmt
from ..effects import Delete, Effect, Put
from ..ledger.ids import derive_id

OUTBOX = "sms_outbox"
DELIVERED = "sms-delivered"  # the notifier's command: {"keys": [outbox keys], "channel": "inbox"}
INBOX = "inbox"  # the cardholder's phone, a SQLite file in the issuer's folder
WEBHOOK = "webhook"  # the SMS gateway, over HTTP

# What happened to the money, and how a bank says it (the text after 您尾号NNNN的卡).
# {t}: when it happened; {t0}: when the purchase was made; {m}: the merchant; {a}: amount; {b}: balance.
WORDING = {
    "hold": "于{t}在{m}消费人民币{a}元，可用余额{b}元。",
    "void": "于{t}在{m}消费撤销，退回人民币{a}元，可用余额{b}元。",
    "reversal": "于{t}在{m}消费冲正，退回人民币{a}元，可用余额{b}元。",
    "expiry": "{t0}在{m}消费冻结的人民币{a}元，因商户未请款已于{t}解冻，可用余额{b}元。",
    "refund": "于{t}在{m}退货收入人民币{a}元，可用余额{b}元。",
    "void-reversal": "于{t}在{m}消费撤销被冲正，原消费人民币{a}元恢复扣款，可用余额{b}元。",
    "refund-reversal": "于{t}在{m}退货冲正，支出人民币{a}元，可用余额{b}元。",
    "posted": "{t0}在{m}消费人民币{a}元已于{t}入账，可用余额{b}元。",
}
EVENTS = tuple(WORDING)


def yuan(fen: int) -> str:
    """12.34 for 1234 fen: exact, no floating point."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def when(at_ms: int) -> str:
    """11月24日14:05, China Standard Time, as the banks write it."""
    return _minute(at_ms // 60_000)


@lru_cache(maxsize=4096)
def _minute(minute: int) -> str:
    # Per minute, once: a sweep tells a million holds of the same minute, placed in a few thousand.
    d = timefmt.local(minute * 60_000)
    return f"{d.month}月{d.day}日{d:%H:%M}"


def merchant_of(auth: dict[str, Any]) -> str:
    """The merchant's name from F43 as the authorization kept it, else its id (F42)."""
    return auth.get("merchant") or (f"商户{auth['merchant_id']}" if auth.get("merchant_id") else "商户")


def expiry_event_id(hold_id: int) -> int:
    """The id of a hold's expiry, which is no transfer of its own: derived from the hold."""
    return derive_id("expiry", str(hold_id))


SINCE_EVENTS = frozenset(e for e, words in WORDING.items() if "{t0}" in words)  # told with the purchase's time


def text(bank: str, row: dict[str, Any]) -> str:
    """The words of the SMS of outbox ``row``, from bank ``bank`` (the issuer's display name)."""
    if "text" in row:  # a row written before the words were put together at delivery
        return str(row["text"])
    at_ms = row["at_ms"]
    since_ms = row.get("since_ms")
    body = WORDING[row["event"]].format(
        t=when(at_ms), t0=when(at_ms if since_ms is None else since_ms), m=row["merchant"], a=yuan(row["amount_fen"]), b=yuan(row["balance_fen"])
    )
    return f"【{bank}】您尾号{row['card'][-4:]}的卡{body}"


def bank_of(config) -> str:
    """The bank's name to its cardholders (an issuer.core.IssuerConfig)."""
    return config.display_name or config.name


def notice(config, event: str, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> tuple | None:
    """The outbox line (``FIELDS``) of one money event of ``card`` (an issuer.core.CardRecord), or None
    when the card has no phone or the issuer sends no SMS. ``auth`` is the authorization of the purchase
    (its merchant and time); ``balance_fen`` the card's available balance after the movement."""
    assert event in WORDING, event
    if not card.phone or not config.sms_channels:
        return None
    return (
        str(event_id), event, card.phone, card.masked_pan, merchant_of(auth), now_ms, amount_fen, balance_fen,
        auth.get("rrn", ""), auth.get("at_ms") if event in SINCE_EVENTS else None,
    )


def posted(config, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> tuple | None:
    """The SMS of a hold posted by a presentment (入账), only when the issuer's ``sms_on_post`` is on.
    ``event_id``: the id of the posting transfer."""
    if not config.sms_on_post:
        return None
    return notice(config, "posted", auth, card, amount_fen, event_id, now_ms, balance_fen)


# -- the outbox, as the core keeps it -------------------------------------------------
#
# The outbox is one sequence of SMS, numbered 1, 2, 3, ... in the order they were written. The SMS
# one input wrote are one record, a page: its key is the first one's number (12 digits, so keys sort
# as numbers), its value the column names and one line per SMS. An expiry sweep of 100,000 holds
# writes one page, not 100,000 records. What a channel has is one number, the SMS it has "through"
# (every SMS up to it, in the record ``THROUGH``); a page leaves once every channel is through it.

FIELDS = ("id", "event", "phone", "card", "merchant", "at_ms", "amount_fen", "balance_fen", "rrn", "since_ms")
THROUGH = "sms_delivered"  # table of one record, "through": {channel: the last SMS it has, and every one before}
KEY_DIGITS = 12


def page_key(first: int) -> str:
    return f"{first:0{KEY_DIGITS}d}"


def page(lines: list[tuple]) -> dict[str, Any]:
    """An outbox record of ``lines`` (each a ``notice``), numbered from its key on."""
    return {"fields": FIELDS, "sms": lines}


def as_row(line: tuple | list, fields: tuple[str, ...] | list[str] = FIELDS) -> dict[str, Any]:
    """One SMS of a page as a dict of its fields (``since_ms`` only when it has one)."""
    row = dict(zip(fields, line))
    if row.get("since_ms", 0) is None:
        del row["since_ms"]
    return row


def page_rows(key: str, value: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """A page's SMS, each with its number."""
    first = int(key)
    fields = value["fields"]
    return [(first + i, as_row(line, fields)) for i, line in enumerate(value["sms"])]


def numbered(pages: dict[str, dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every SMS of ``pages``, oldest first."""
    return [x for key in sorted(pages) for x in page_rows(key, pages[key])]


def last_number(page_key_: str, value: dict[str, Any]) -> int:
    return int(page_key_) + len(value["sms"]) - 1


def restore(records: dict[str, dict[str, Any]], through: dict[str, int], channels: tuple[str, ...]
            ) -> tuple[dict[str, dict[str, Any]], int, list[Effect]]:
    """The outbox after a start: its pages, the number of the newest SMS, and the records to write —
    pages every (now configured) channel is through are deleted. A row of the outbox's first form
    (one SMS, keyed by its event id, its words already put together) becomes a page of its own."""
    pages = OrderedDict((k, v) for k, v in sorted(records.items()) if "fields" in v)  # oldest first, always
    newest = max([last_number(k, v) for k, v in pages.items()] + [int(n) for n in through.values()] + [0])
    effects: list[Effect] = []
    for key, row in sorted(records.items()):
        if key in pages:
            continue
        newest += 1
        fields = FIELDS + ("text",)
        value = {"fields": fields, "sms": [tuple(row.get(f) for f in fields)]}
        pages[page_key(newest)] = value
        effects += [Delete(OUTBOX, key), Put(OUTBOX, page_key(newest), value)]
    done = min((int(through.get(c, 0)) for c in channels), default=0)
    return pages, newest, effects + _drop_through(pages, done)


def delivered(pages: dict[str, dict[str, Any]], through: dict[str, int], args: dict[str, Any], channels: tuple[str, ...]) -> list[Effect]:
    """The notifier has every SMS up to ``args["through"]`` on ``args["channel"]``: the mark moves on (never
    back), and the pages every channel is through are deleted."""
    channel, upto = str(args.get("channel", "")), int(args.get("through", 0))
    if channel not in channels or upto <= through.get(channel, 0):
        return []
    through[channel] = upto
    return [Put(THROUGH, "through", dict(through)), *_drop_through(pages, min(through.get(c, 0) for c in channels))]


def _drop_through(pages: "OrderedDict[str, dict[str, Any]]", done: int) -> list[Effect]:
    """Delete the oldest pages while every SMS of each is through (``pages`` is kept oldest first, so this
    looks at the pages it deletes and one more, however long the outbox has grown)."""
    gone: list[Effect] = []
    while pages:
        key = next(iter(pages))
        if last_number(key, pages[key]) > done:
            break
        del pages[key]
        gone.append(Delete(OUTBOX, key))
    return gone
