"""SMS to the cardholder (动账通知): what the issuer tells the card's phone when its money moves.

One money event, one SMS. Each message is a record of the ``sms_outbox``
table keyed by the id of the money event — the ledger transfer of the hold,
of its release (void or reversal), of the refund credit, of the posting, or
the id derived from the hold for its expiry — written in the same commit as
the movement itself. The same event can therefore never yield two messages,
and a message is never lost: it waits in the outbox until every channel
(the local inbox, the SMS gateway's webhook) has it. The notifier
(``posnet.runtime.notifier``) delivers; the core is told with the command
``sms-delivered`` and removes the row once every channel has it.

The wording follows the banks' (docs/sms.md): the bank's name in 【】, the
card only as 尾号 and its last four digits, the time in China Standard Time,
the amount in 人民币 yuan, the merchant, and the available balance after the
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
DELIVERED = "sms-delivered"  # the notifier's command: {"ids": [...], "channel": "inbox"} (or "id")
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


def text(bank: str, event: str, pan: str, amount_fen: int, balance_fen: int, merchant: str, at_ms: int, since_ms: int | None = None) -> str:
    body = WORDING[event].format(
        t=when(at_ms), t0=when(since_ms if since_ms is not None else at_ms), m=merchant, a=yuan(amount_fen), b=yuan(balance_fen)
    )
    return f"【{bank}】您尾号{pan[-4:]}的卡{body}"


def notice(config, event: str, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> Put | None:
    """The outbox record of one money event of ``card`` (an issuer.core.CardRecord), or None when the
    card has no phone or the issuer sends no SMS. ``auth`` is the authorization of the purchase (its
    merchant and time); ``balance_fen`` the card's available balance after the movement."""
    assert event in WORDING, event
    if not card.phone or not config.sms_channels:
        return None
    key = str(event_id)
    value = {
        "id": key,
        "event": event,
        "bank": config.display_name or config.name,
        "phone": card.phone,
        "card": mask_pan(card.pan),
        "text": text(
            config.display_name or config.name, event, card.pan, amount_fen, balance_fen, merchant_of(auth), now_ms, auth.get("at_ms")
        ),
        "at_ms": now_ms,
        "rrn": auth.get("rrn", ""),
        "amount_fen": amount_fen,
        "balance_fen": balance_fen,
        "delivered": [],
    }
    return Put(OUTBOX, key, value)


def posted(config, auth: dict[str, Any], card, amount_fen: int, event_id: int | str, now_ms: int, balance_fen: int) -> Put | None:
    """The SMS of a hold posted by a presentment (入账), only when the issuer's ``sms_on_post`` is on.
    ``event_id``: the id of the posting transfer."""
    if not config.sms_on_post:
        return None
    return notice(config, "posted", auth, card, amount_fen, event_id, now_ms, balance_fen)


# -- the outbox, as the core keeps it -------------------------------------------------


def track(outbox: dict[str, dict[str, Any]], effects: list[Effect]) -> None:
    """Keep the core's view of its outbox: every outbox row an input wrote (whoever built it)."""
    for e in effects:
        if isinstance(e, Put) and e.table == OUTBOX:
            outbox[e.key] = e.value


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
    """The notifier delivered ``args["ids"]`` (or ``args["id"]``) on ``args["channel"]``: the row is
    marked, and removed once every channel has it. A mark for a row already gone changes nothing."""
    ids = args.get("ids") or ([args["id"]] if "id" in args else [])
    channel = str(args.get("channel", ""))
    effects: list[Effect] = []
    for key in map(str, ids):
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
