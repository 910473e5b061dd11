"""SMS to the cardholder (动账通知): what the issuer tells the card's phone when its money moves.

One money event, one SMS. Each message is a record of the ``sms_outbox``
table, written in the same commit as the movement itself, so a message is
never lost: it waits in the outbox until every channel (the local inbox, the
SMS gateway's webhook) has it. Its ``id`` is the id of the money event — the
ledger transfer of the hold, of its release (void or reversal), of the refund
credit, of the posting, or the id derived from the hold for its expiry — and
the ledger moves money once per event, so an event is told once; the inbox
and the gateway take an SMS by that id (once only). The row's key is the
outbox's own sequence (``000000000001``, ...), so rows are delivered in the
order they were written, also after a restart, and a sweep's rows land
together at the end of the table. The notifier (``posnet.runtime.notifier``)
delivers; the core is told with the command ``sms-delivered`` and removes
the row once every channel has it.

A row holds the event's facts (card masked, merchant, amounts, balance,
times); the words are put together when it is delivered (``text``). The
wording follows the banks' (docs/sms.md): the bank's name in 【】, the card
only as 尾号 and its last four digits, the time in China Standard Time, the
amount in 人民币 yuan, the merchant, and the available balance after the
movement. A card without a phone number gets no SMS (it has not signed up for
动账通知).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .. import timefmt
from ..effects import Delete, Effect, Put, mask_pan
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
    body = WORDING[row["event"]].format(
        t=when(at_ms), t0=when(row.get("since_ms", at_ms)), m=row["merchant"], a=yuan(row["amount_fen"]), b=yuan(row["balance_fen"])
    )
    return f"【{bank}】您尾号{row['card'][-4:]}的卡{body}"


def bank_of(config) -> str:
    """The bank's name to its cardholders (an issuer.core.IssuerConfig)."""
    return config.display_name or config.name


def notice(config, event: str, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> dict[str, Any] | None:
    """The outbox row of one money event of ``card`` (an issuer.core.CardRecord), or None when the
    card has no phone or the issuer sends no SMS. ``auth`` is the authorization of the purchase (its
    merchant and time); ``balance_fen`` the card's available balance after the movement."""
    assert event in WORDING, event
    if not card.phone or not config.sms_channels:
        return None
    row = {
        "id": str(event_id),
        "event": event,
        "phone": card.phone,
        "card": mask_pan(card.pan),
        "merchant": merchant_of(auth),
        "at_ms": now_ms,
        "amount_fen": amount_fen,
        "balance_fen": balance_fen,
        "rrn": auth.get("rrn", ""),
    }
    if event in SINCE_EVENTS and auth.get("at_ms") is not None:
        row["since_ms"] = auth["at_ms"]
    return row


def posted(config, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> dict[str, Any] | None:
    """The SMS of a hold posted by a presentment (入账), only when the issuer's ``sms_on_post`` is on.
    ``event_id``: the id of the posting transfer."""
    if not config.sms_on_post:
        return None
    return notice(config, "posted", auth, card, amount_fen, event_id, now_ms, balance_fen)


# -- the outbox, as the core keeps it -------------------------------------------------


KEY_DIGITS = 12  # an outbox key: the row's place in the outbox's sequence


def outbox_key(seq: int) -> str:
    return f"{seq:0{KEY_DIGITS}d}"


def last_seq(outbox: dict[str, dict[str, Any]]) -> int:
    """The sequence number of the newest row kept (0 for none): the next row's comes after it."""
    return max((int(k) for k in outbox if len(k) == KEY_DIGITS and k.isdigit()), default=0)


def restore(outbox_rows: dict[str, dict[str, Any]], channels: tuple[str, ...]) -> tuple[dict[str, dict[str, Any]], list[Effect]]:
    """The outbox after a start: rows every (now configured) channel has are removed."""
    outbox: dict[str, dict[str, Any]] = {}
    gone: list[Effect] = []
    for key, row in outbox_rows.items():
        if set(channels) <= set(row.get("delivered", [])):
            gone.append(Delete(OUTBOX, key))
        else:
            outbox[key] = dict(row)
    return outbox, gone


def delivered(outbox: dict[str, dict[str, Any]], args: dict[str, Any], channels: tuple[str, ...]) -> list[Effect]:
    """The notifier delivered the rows ``args["keys"]`` (outbox keys) on ``args["channel"]``: each is
    marked, and removed once every channel has it. A mark for a row already gone changes nothing."""
    channel = str(args.get("channel", ""))
    effects: list[Effect] = []
    for key in map(str, args.get("keys", ())):
        row = outbox.get(key)
        if row is None:
            continue
        row = outbox[key] = {**row, "delivered": sorted({*row.get("delivered", []), channel})}
        if set(channels) <= set(row["delivered"]):
            del outbox[key]
            effects.append(Delete(OUTBOX, key))
        else:
            effects.append(Put(OUTBOX, key, row))
    return effects
