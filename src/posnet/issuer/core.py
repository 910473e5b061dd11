"""The issuer's core (发卡行): cards, PINs, holds, balances, in the ledger.

A request is checked in this order, and the first failure answers:
card known (14), lost or stolen (41/43), blocked (62), expired (54), PIN
(55; 75 once the tries are spent; 99 for a block that is not format 0),
amount limit (61), funds (51). An approval places a hold (挂账): a pending
ledger transfer from the cardholder's account to the scheme settlement
account, which clearing posts, a void or reversal voids, and which expires
on its own when nobody claims it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from .. import timefmt
from ..effects import Command, Effect, LedgerWrite, Put, Received, SetTimer, Send, TimerFired, Trace, mask_pan
from ..ledger import Account, AccountFlags, CreateTransferResult, Ledger, Transfer, TransferFlags
from ..ledger import chart
from ..ledger.ids import derive_id
from ..security import PinBlockFormatError, SecurityModule
from ..wire import RC, Kind, Message, WireError, response_mti
from ..wire.codec import decode_host, encode_host
from ..wire.codes import host_kind, is_request
from ..wire.fields import build_balance, parse_f90, parse_track2
from . import clearing, sms
from ..clearing_files import CLEARING_FILE, CUTOFF_TIMER, next_cutoff_ms

SWITCH = "switch"
HOLD_EXPIRY_TIMER = "hold-expiry"

# System accounts of the issuer's books (docs/ledger.md).
from .accounts import FUNDING_ACCOUNT, INTERCHANGE_INCOME_ACCOUNT, SCHEME_SETTLEMENT_ACCOUNT, SUSPENSE_ACCOUNT  # noqa: E402


@dataclass(frozen=True)
class CardRecord:
    pan: str
    expiry: str  # YYMM
    account_id: int
    pin_offset: str
    status: str = "active"  # active | lost | stolen | blocked
    per_transaction_limit_fen: int = 5_000_000  # 50,000.00 yuan
    cardholder: str = ""
    phone: str = ""
    masked_pan: str = field(init=False, repr=False, compare=False)  # as SMS and traces show it, worked out once

    def __post_init__(self) -> None:
        object.__setattr__(self, "masked_pan", mask_pan(self.pan))


@dataclass(frozen=True)
class IssuerConfig:
    name: str
    institution_id: str
    zpk: str  # zone PIN key shared with the switch (handle)
    zak: str  # zone MAC key shared with the switch (handle)
    pvk: str  # PIN verification key (handle)
    cards: dict[str, CardRecord] = field(default_factory=dict)
    opening_balances_fen: dict[int, int] = field(default_factory=dict)  # account id -> balance
    hold_expiry_s: int = 48 * 3600
    # At most this many holds released by one input (a few seconds of work); the rest by the next, at
    # once. A sweep of a million holds (after a stop, or a clock advanced) then leaves the issuer answering
    # sales between slices; smaller slices cost more commits (docs/performance.md).
    expiry_slice: int = 100_000
    pin_tries_limit: int = 3
    cutoff: time = time(23, 0)  # the daily cut-off: the reconciliation report of the day
    display_name: str = ""  # the bank's name to its cardholders: the 【】 of its SMS (default: name)
    sms_on_post: bool = False  # an SMS also when clearing posts a hold (入账)
    sms_channels: tuple[str, ...] = (sms.INBOX,)  # where each SMS must reach before it leaves the outbox


STATUS_RC = {"lost": RC.LOST_CARD, "stolen": RC.STOLEN_CARD, "blocked": RC.RESTRICTED_CARD}


class Issuer:
    def __init__(self, config: IssuerConfig, hsm: SecurityModule, ledger: Ledger | None = None):
        self.config = config
        self.hsm = hsm
        self.ledger = ledger or Ledger()
        self.auths: dict[str, dict[str, Any]] = {}  # host key (acquirer:F7:STAN) -> authorization
        self.pin_tries: dict[str, dict[str, Any]] = {}  # PAN -> {"count", "day"}
        self.counters: dict[str, int] = {"auth": 0}
        self._expiry_armed_ms: int | None = None
        self._hold_keys: dict[int, str] = {}  # hold id -> its authorization's key, for the holds placed
        self.sms_outbox: dict[str, dict[str, Any]] = OrderedDict()  # pages of SMS not yet on every channel, oldest first (issuer/sms.py)
        self.sms_through: dict[str, int] = {}  # channel -> the last SMS it has, and every one before
        self._sms_seq = 0  # the newest SMS's number
        self._sms_out: list[tuple] = []  # SMS of the input being handled: one page
        # Clearing (issuer/clearing.py): files posted, the open days' reconciliation, the cut-off.
        self.files_in: dict[str, dict[str, Any]] = {}
        self.recon: dict[str, dict[str, Any]] = {}
        self.closed_cutoff_ms: int | None = None
        self.cutoff_ms = 0

    # -- state --------------------------------------------------------------

    def restore(self, tables: dict[str, dict[str, dict[str, Any]]], now_ms: int) -> list[Effect]:
        self.auths = {k: dict(v) for k, v in tables.get("auths", {}).items()}
        self._follow_holds()
        pending = self.ledger.pending_status
        self._hold_keys = {a["hold_id"]: k for k, a in self.auths.items() if a.get("hold_id") and pending(a["hold_id"]) == "pending"}
        self.pin_tries = {k: dict(v) for k, v in tables.get("pin_tries", {}).items()}
        self.counters.update(tables.get("state", {}).get("counters", {}))
        self.sms_through = {k: int(v) for k, v in tables.get(sms.THROUGH, {}).get("through", {}).items()}
        self.sms_outbox, self._sms_seq, delivered = sms.restore(tables.get(sms.OUTBOX, {}), self.sms_through, self.config.sms_channels)
        self.files_in = {k: dict(v) for k, v in tables.get("clearing_files_in", {}).items()}
        self.recon = {k: dict(v) for k, v in tables.get("reconciliation", {}).items() if "closed_ms" not in v}
        self.closed_cutoff_ms = tables.get("state", {}).get("cutoff", {}).get("closed_cutoff_ms")
        closed = [v for v in tables.get("reconciliation", {}).values() if "closed_ms" in v]
        effects = self._provision(now_ms)
        if closed:  # the last report again: it may have been committed and never written
            effects += clearing.report(self.config.name, max(closed, key=lambda r: r["day"]))
        return effects + delivered + self._arm_expiry() + self._arm_cutoff(now_ms)

    def _follow_holds(self) -> None:
        """An authorization stored as held takes what became of its hold from the ledger: expiry and
        posting write no authorization record of their own (a sweep or a clearing file of a million
        holds would rewrite a million records); the ledger's expiry or posting, committed with them,
        is the record."""
        status_of = self.ledger.pending_status
        for key, auth in self.auths.items():
            if auth.get("status") != "held":
                continue
            became = status_of(auth["hold_id"])
            if became == "expired":
                auth["status"] = "expired"
            elif became == "posted":
                post = self.ledger.transfer(clearing.posting_id(key))
                auth.update(status="posted", posted_fen=post.amount if post else auth["amount_fen"])

    def _arm_cutoff(self, now_ms: int) -> list[Effect]:
        # After the last cut-off closed (a missed one fires at once, so no day is skipped).
        self.cutoff_ms = next_cutoff_ms(self.closed_cutoff_ms if self.closed_cutoff_ms is not None else now_ms, self.config.cutoff)
        return [SetTimer(CUTOFF_TIMER, self.cutoff_ms + clearing.RECONCILE_AFTER_MS)]

    def _provision(self, now_ms: int) -> list[Effect]:
        """Open the books: system accounts, one account per cardholder, opening balances."""
        accounts = [
            Account(SCHEME_SETTLEMENT_ACCOUNT, chart.CNY, chart.ISSUER_SCHEME_SETTLEMENT),
            Account(FUNDING_ACCOUNT, chart.CNY, chart.ISSUER_FUNDING),
            Account(INTERCHANGE_INCOME_ACCOUNT, chart.CNY, chart.ISSUER_INTERCHANGE_INCOME),
            Account(SUSPENSE_ACCOUNT, chart.CNY, chart.ISSUER_SUSPENSE),
        ]
        ids = sorted({c.account_id for c in self.config.cards.values()} | set(self.config.opening_balances_fen))
        accounts += [
            Account(i, chart.CNY, chart.ISSUER_CARDHOLDER, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for i in ids
        ]
        new = [a for a in accounts if self.ledger.account(a.id) is None]
        if new:
            self.ledger.create_accounts(new, now_ms)
        opening = [
            Transfer(derive_id("opening", str(i)), FUNDING_ACCOUNT, i, amount, chart.CNY, chart.OPENING_BALANCE)
            for i, amount in sorted(self.config.opening_balances_fen.items())
            if amount > 0 and self.ledger.transfer(derive_id("opening", str(i))) is None
        ]
        if opening:
            results = self.ledger.create_transfers(opening, now_ms)
            assert all(r in (CreateTransferResult.OK, CreateTransferResult.EXISTS) for r in results), results
        changes = self.ledger.take_changes()
        return [LedgerWrite(changes)] if changes else []

    def available_fen(self, account_id: int) -> int:
        return self.ledger.available(account_id) or 0

    def balance_of_card(self, pan: str) -> int:
        return self.available_fen(self.config.cards[pan].account_id)

    # -- inputs -------------------------------------------------------------

    def handle(self, event, now_ms: int) -> list[Effect]:
        if isinstance(event, Received):
            effects = self._request(event.source, event.frame, now_ms)
        elif isinstance(event, TimerFired) and event.key == HOLD_EXPIRY_TIMER:
            self._expiry_armed_ms = None
            effects = self._expire(now_ms, self.config.expiry_slice)
        elif isinstance(event, Command) and event.name == CLEARING_FILE:
            effects = clearing.post_file(self, str(event.args["name"]), str(event.args["text"]), now_ms)
        elif isinstance(event, TimerFired) and event.key == CUTOFF_TIMER:
            effects = clearing.close_day(self, self.cutoff_ms, now_ms) + self._arm_cutoff(now_ms)
        elif isinstance(event, Command) and event.name == sms.DELIVERED:
            effects = sms.delivered(self.sms_outbox, self.sms_through, event.args, self.config.sms_channels)
        else:
            effects = []
        changes = self.ledger.take_changes()
        if changes:
            effects.insert(0, LedgerWrite(changes))
        if self._sms_out:  # in the same commit as the money movement they tell of: one page
            key = sms.page_key(self._sms_seq + 1)
            self._sms_seq += len(self._sms_out)
            self.sms_outbox[key] = page = sms.page(self._sms_out)
            effects.append(Put(sms.OUTBOX, key, page))
            self._sms_out = []
        return effects + self._arm_expiry()

    def _notify(self, event: str, sale: dict[str, Any], amount_fen: int, event_id: int, now_ms: int) -> None:
        """The cardholder's SMS of one money event of ``sale``'s card (issuer/sms.py)."""
        card = self.config.cards.get(sale["pan"])
        if card is not None:
            self._tell(card, event, sale, amount_fen, event_id, now_ms)

    def _tell(self, card: CardRecord, event: str, sale: dict[str, Any], amount_fen: int, event_id: int, now_ms: int) -> None:
        line = sms.notice(self.config, event, sale, card, amount_fen, event_id, now_ms, self.available_fen(card.account_id))
        if line is not None:
            self._sms_out.append(line)

    def expire_due(self, now_ms: int) -> list[Effect]:
        """Release every hold whose time is up, in one input (before clearing meets them)."""
        return self._expire(now_ms, None)

    def forget_hold(self, hold_id: int) -> None:
        """A hold posted by clearing: no expiry will look for its authorization."""
        self._hold_keys.pop(hold_id, None)

    def notify_posted(self, auth: dict[str, Any], amount_fen: int, event_id: int, now_ms: int) -> None:
        """A hold posted by clearing: an SMS only when the issuer's ``sms_on_post`` says so (unasked,
        the card's balance is not even looked up: a million postings at a cut-off)."""
        if not self.config.sms_on_post:
            return
        card = self.config.cards.get(auth["pan"])
        if card is None:
            return
        line = sms.posted(self.config, auth, card, amount_fen, event_id, now_ms, self.available_fen(card.account_id))
        if line is not None:
            self._sms_out.append(line)

    def notify_credited(self, row: dict[str, Any], card: CardRecord, event_id: int, now_ms: int) -> None:
        """A credit that came by clearing (a refund presented with no authorization, a manual credit)."""
        merchant = {"rrn": row["lifecycle"], "pan": row["pan"], "merchant_id": row["merchant_id"]}
        self._notify("refund", merchant, row["amount_fen"], event_id, now_ms)

    def _arm_expiry(self) -> list[Effect]:
        nxt = self.ledger.next_expiry_ms()
        if nxt is None or nxt == self._expiry_armed_ms:
            return []
        self._expiry_armed_ms = nxt
        return [SetTimer(HOLD_EXPIRY_TIMER, nxt)]

    def _expire(self, now_ms: int, limit: int | None) -> list[Effect]:
        """Release the holds due (the ``limit`` earliest; ``_arm_expiry`` then re-arms the timer
        at once for the rest)."""
        effects: list[Effect] = []
        cards = self.config.cards
        for hold_id in self.ledger.expire_pending(now_ms, limit):
            key = self._hold_keys.pop(hold_id, None)
            auth = self.auths.get(key) if key is not None else None
            if auth is None or auth.get("hold_id") != hold_id:
                continue
            card = cards.get(auth["pan"])
            if card is not None:
                self._tell(card, "expiry", auth, auth["amount_fen"], sms.expiry_event_id(hold_id), now_ms)
            if auth["status"] == "held":
                auth["status"] = "expired"  # no record: the ledger's expiry is it (_follow_holds)
                masked = card.masked_pan if card is not None else mask_pan(auth["pan"])
                effects.append(Trace(auth["rrn"], "hold expired and released", {"pan": masked, "amount": auth["amount_fen"]}))
        return effects

    def _request(self, source: str, frame: bytes, now_ms: int) -> list[Effect]:
        try:
            req = decode_host(frame)
        except WireError as e:
            return [Trace("", "unreadable frame from switch", {"error": str(e)})]
        if not is_request(req.mti):
            return [Trace("", "not a request from the switch: dropped", {"mti": req.mti})]
        if not self.hsm.verify_retail_mac(self.config.zak, req.mac_input(), req.mac_value()):
            return [Trace(req.get(37) or "", "bad MAC from switch", {}), self._reply(source, req, RC.MAC_ERROR)]
        kind = host_kind(req.mti, req.get(3))
        key = f"{(req.get(32) or '').lstrip('0')}:{req.get(7)}:{req.get(11)}"
        if kind is Kind.ECHO:
            return [self._reply(source, req, RC.APPROVED)]
        if kind is Kind.REVERSAL:
            return self._reversal(source, req, now_ms)
        if kind is None:
            return [self._reply(source, req, RC.FUNCTION_NOT_SUPPORTED)]
        if f"reversal:{key}" in self.auths:
            # Its reversal overtook it: the transaction is cancelled; nothing may be held for it now.
            return [Trace((req.get(37) or "").strip(), "request after its own reversal: declined", {}),
                    self._reply(source, req, RC.INVALID_TRANSACTION)]
        seen = self.auths.get(key)
        if seen is not None:
            # A retransmission: the first answer again, and no money moves.
            return [Trace(seen["rrn"], "duplicate request: first answer repeated", {}), self._reply(source, req, seen["rc"], seen)]
        try:
            rc, auth = self._decide(req, kind, key, now_ms)
        except WireError:
            rc, auth = RC.FORMAT_ERROR, None
        if auth is None:
            auth = {"kind": kind.value, "rrn": (req.get(37) or "").strip(), "pan": req.get(2) or "", "amount_fen": int(req.get(4) or 0)}
        auth["rc"] = rc
        effects: list[Effect] = []
        if auth.pop("pin_checked", False):
            effects.append(Put("pin_tries", auth["pan"], self.pin_tries[auth["pan"]]))
        if auth.get("auth_code"):
            effects.append(Put("state", "counters", self.counters))
        if auth.get("touched"):
            effects.append(Put("auths", auth["touched"], self.auths[auth["touched"]]))
        if kind is not Kind.INQUIRY:
            self.auths[key] = auth
            effects.append(Put("auths", key, auth))
        effects.append(Trace(auth["rrn"], f"{kind.value} decided", {"rc": rc, "pan": mask_pan(auth["pan"]), "amount": auth["amount_fen"]}))
        extra = dict(auth)
        if kind is Kind.INQUIRY and rc == RC.APPROVED:
            extra["balance"] = build_balance(self.available_fen(self.config.cards[auth["pan"]].account_id))
        effects.append(self._reply(source, req, rc, extra))
        return effects

    def _reply(self, source: str, req: Message, rc: str, auth: dict[str, Any] | None = None) -> Send:
        fields = {k: v for k, v in req.fields.items() if k in ("2", "3", "4", "7", "11", "12", "13", "32", "37", "41", "42", "49", "100")}
        fields["39"] = rc
        fields["100"] = self.config.institution_id
        if auth and rc == RC.APPROVED and auth.get("auth_code"):
            fields["38"] = auth["auth_code"]
        if auth and auth.get("balance"):
            fields["54"] = auth["balance"]
        reply = Message(response_mti(req.mti), fields)
        return Send(source, encode_host(reply, mac=lambda d: self.hsm.retail_mac(self.config.zak, d)))

    # -- decisions ----------------------------------------------------------

    def _check_card(self, req: Message, now_ms: int) -> tuple[str, CardRecord | None, str]:
        pan = req.get(2) or ""
        presented_expiry = req.get(14) or ""
        if req.has(35):
            t2 = parse_track2(req["35"])
            pan = pan or t2.pan
            presented_expiry = t2.expiry
        card = self.config.cards.get(pan)
        if card is None:
            return RC.INVALID_CARD, None, pan
        if card.status in STATUS_RC:
            return STATUS_RC[card.status], card, pan
        today = timefmt.yymm(now_ms)
        if card.expiry < today or (presented_expiry and presented_expiry != card.expiry):
            return RC.EXPIRED_CARD, card, pan
        return RC.APPROVED, card, pan

    def _check_pin(self, req: Message, card: CardRecord, auth: dict[str, Any], now_ms: int) -> str:
        if not req.has(52):
            return RC.APPROVED
        day = timefmt.local(now_ms).strftime("%Y%m%d")
        tries = self.pin_tries.setdefault(card.pan, {"count": 0, "day": day})
        if tries["day"] != day:  # wrong tries are forgiven the next day
            tries.update(count=0, day=day)
        if tries["count"] >= self.config.pin_tries_limit:
            return RC.PIN_TRIES_EXCEEDED
        try:
            ok = self.hsm.verify_pin(self.config.zpk, bytes.fromhex(req["52"]), card.pan, self.config.pvk, card.pin_offset)
        except PinBlockFormatError:
            return RC.PIN_FORMAT_ERROR
        auth["pin_checked"] = True
        if ok:
            tries["count"] = 0
            return RC.APPROVED
        tries["count"] += 1
        return RC.PIN_TRIES_EXCEEDED if tries["count"] >= self.config.pin_tries_limit else RC.WRONG_PIN

    def _decide(self, req: Message, kind: Kind, key: str, now_ms: int) -> tuple[str, dict[str, Any]]:
        rrn = (req.get(37) or "").strip()
        amount = int(req.get(4) or 0)
        rc, card, pan = self._check_card(req, now_ms)
        auth: dict[str, Any] = {"kind": kind.value, "rrn": rrn, "pan": pan, "amount_fen": amount, "status": "declined"}
        if rc != RC.APPROVED:
            return rc, auth
        assert card is not None
        if kind in (Kind.INQUIRY, Kind.SALE):
            rc = self._check_pin(req, card, auth, now_ms)
            if rc != RC.APPROVED:
                return rc, auth
        if kind is Kind.INQUIRY:
            return RC.APPROVED, auth
        if kind is Kind.SALE:
            return self._sale(req, card, key, auth, now_ms)
        original_key = parse_f90(req.get(90)).key
        original = self.auths.get(original_key)
        if original is None or original["kind"] != "sale" or original.get("pan") != pan:
            return RC.ORIGINAL_NOT_FOUND, auth
        auth["original"] = original_key
        if kind is Kind.VOID:
            return self._void(original_key, original, auth, amount, now_ms)
        if kind is Kind.REFUND:
            return self._refund(original_key, original, card, auth, amount, now_ms)
        return RC.FUNCTION_NOT_SUPPORTED, auth

    def _next_auth_code(self) -> str:
        self.counters["auth"] = self.counters["auth"] % 999_999 + 1
        return f"{self.counters['auth']:06d}"

    def _sale(self, req, card: CardRecord, key: str, auth, now_ms) -> tuple[str, dict[str, Any]]:
        amount = auth["amount_fen"]
        if amount <= 0:
            return RC.INVALID_AMOUNT, auth
        if amount > card.per_transaction_limit_fen:
            return RC.EXCEEDS_AMOUNT_LIMIT, auth
        hold_id = derive_id("hold", key)
        hold = Transfer(
            hold_id,
            card.account_id,
            SCHEME_SETTLEMENT_ACCOUNT,
            amount,
            chart.CNY,
            chart.PURCHASE_HOLD,
            TransferFlags.PENDING,
            user_data=derive_id("lifecycle", key),
            timeout_s=self.config.hold_expiry_s,
        )
        (result,) = self.ledger.create_transfers([hold], now_ms)
        if result == CreateTransferResult.EXCEEDS_CREDITS:
            return RC.INSUFFICIENT_FUNDS, auth
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            return RC.SYSTEM_MALFUNCTION, auth
        auth.update(status="held", hold_id=hold_id, auth_code=self._next_auth_code(), refunded_fen=0)
        self._hold_keys[hold_id] = key
        # What the cardholder's SMS names, now and at the hold's release or expiry.
        auth.update(merchant=(req.get(43) or "").strip(), merchant_id=(req.get(42) or "").strip(), at_ms=now_ms)
        self._notify("hold", auth, amount, hold_id, now_ms)
        return RC.APPROVED, auth

    def _release(self, original: dict[str, Any], transfer_key: str, now_ms: int) -> int | None:
        """Void the original's hold (a release is a ledger void, never a new credit); the void's id."""
        hold_id = original["hold_id"]
        # Accounts, amount, ledger and code 0: taken from the pending transfer, as TigerBeetle does.
        void = Transfer(derive_id(transfer_key), 0, 0, 0, 0, 0, TransferFlags.VOID_PENDING, pending_id=hold_id)
        (result,) = self.ledger.create_transfers([void], now_ms)
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            return None  # e.g. past its time: the expiry releases it, and tells the cardholder
        self.forget_hold(hold_id)
        return void.id

    def _void(self, original_key, original, auth, amount, now_ms) -> tuple[str, dict[str, Any]]:
        if original["status"] != "held":
            return RC.INVALID_TRANSACTION, auth
        if amount != original["amount_fen"]:
            return RC.AMOUNT_DIFFERS, auth
        released = self._release(original, f"void:{original_key}", now_ms)
        if not released:
            return RC.INVALID_TRANSACTION, auth
        self._notify("void", original, original["amount_fen"], released, now_ms)
        original["status"] = "voided"
        self.auths[original_key] = original
        auth.update(status="approved", auth_code=self._next_auth_code(), touched=original_key)
        return RC.APPROVED, auth

    def _refund(self, original_key, original, card: CardRecord, auth, amount, now_ms) -> tuple[str, dict[str, Any]]:
        if original["status"] not in ("held", "posted"):
            return RC.INVALID_TRANSACTION, auth
        if amount <= 0:
            return RC.INVALID_AMOUNT, auth
        if original.get("refunded_fen", 0) + amount > original["amount_fen"]:
            return RC.EXCEEDS_AMOUNT_LIMIT, auth  # partial refunds, up to the original's amount in all
        credit = Transfer(
            derive_id("refund", auth["rrn"], original_key, str(original.get("refunded_fen", 0))),
            SCHEME_SETTLEMENT_ACCOUNT,
            card.account_id,
            amount,
            chart.CNY,
            chart.REFUND_CREDIT,
            user_data=derive_id("lifecycle", original_key),
        )
        (result,) = self.ledger.create_transfers([credit], now_ms)
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            return RC.SYSTEM_MALFUNCTION, auth
        original["refunded_fen"] = original.get("refunded_fen", 0) + amount
        self.auths[original_key] = original
        self._notify("refund", original, amount, credit.id, now_ms)
        auth.update(status="approved", auth_code=self._next_auth_code(), touched=original_key)
        return RC.APPROVED, auth

    def _reversal(self, source: str, req: Message, now_ms: int) -> list[Effect]:
        """Idempotent: an unknown original is acknowledged and recorded; a second reversal releases nothing."""
        try:
            original_key = parse_f90(req.get(90)).key
        except WireError:
            original_key = f"{(req.get(32) or '').lstrip('0')}:{req.get(7)}:{req.get(11)}"
        original = self.auths.get(original_key)
        effects: list[Effect] = []
        lifecycle = (req.get(37) or "").strip()
        if original is None:
            marker = {"kind": "reversal-of-unknown", "rrn": lifecycle, "pan": req.get(2) or "", "amount_fen": int(req.get(4) or 0), "rc": RC.APPROVED, "status": "unknown-original"}
            self.auths.setdefault(f"reversal:{original_key}", marker)
            effects.append(Put("auths", f"reversal:{original_key}", marker))
            effects.append(Trace(lifecycle, "reversal of an unknown original: acknowledged", {}))
        elif original["kind"] == "sale" and original.get("status") == "held":
            released = self._release(original, f"reversal:{original_key}", now_ms)
            if released:
                self._notify("reversal", original, original["amount_fen"], released, now_ms)
            original["status"] = "reversed"
            effects.append(Put("auths", original_key, original))
            effects.append(Trace(lifecycle, "reversal: hold released", {"amount": original["amount_fen"]}))
        elif original["kind"] == "void" and original.get("status") == "approved":
            effects += self._reinstate(original_key, original, now_ms)
        elif original["kind"] == "refund" and original.get("status") == "approved":
            effects += self._take_back_refund(original_key, original, now_ms)
        else:
            effects.append(Trace(lifecycle, "reversal: nothing to release", {"status": original.get("status")}))
        return effects + [self._reply(source, req, RC.APPROVED)]

    def _take_back_refund(self, refund_key: str, refund: dict[str, Any], now_ms: int) -> list[Effect]:
        """A reversed refund: the credit is taken back (as far as the account allows; the rest is suspense)."""
        sale_key = refund["touched"]
        sale = self.auths[sale_key]
        card = self.config.cards[refund["pan"]]
        take_back = Transfer(
            derive_id("refund-reversal", refund_key), card.account_id, SCHEME_SETTLEMENT_ACCOUNT, refund["amount_fen"],
            chart.CNY, chart.REFUND_CREDIT, TransferFlags.BALANCING_DEBIT, user_data=derive_id("lifecycle", sale_key),
        )
        (result,) = self.ledger.create_transfers([take_back], now_ms)
        refund["status"] = "reversed"
        sale["refunded_fen"] = sale.get("refunded_fen", 0) - refund["amount_fen"]
        effects: list[Effect] = [Put("auths", refund_key, refund), Put("auths", sale_key, sale)]
        taken = self.ledger.transfer(take_back.id)
        if taken is not None and taken.amount > 0:
            self._notify("refund-reversal", sale, taken.amount, taken.id, now_ms)
        if taken is None or taken.amount < refund["amount_fen"]:
            short = refund["amount_fen"] - (taken.amount if taken else 0)
            effects.append(Trace(refund["rrn"], "refund reversed but the cardholder had spent part of it", {"short_fen": short, "result": str(result)}))
        else:
            effects.append(Trace(refund["rrn"], "refund reversed: credit taken back", {"amount": refund["amount_fen"]}))
        return effects

    def debit_with_advance(self, debit: Transfer, advance_id: int, now_ms: int) -> tuple[CreateTransferResult, int]:
        """Debit a cardholder (a hold or a posting) for something that stands whatever the balance:
        what the card can no longer cover is advanced from suspense (``OVERDRAFT_ADVANCE``), an
        exception to follow up. Returns the debit's result and the amount advanced (0: none)."""
        (result,) = self.ledger.create_transfers([debit], now_ms)
        if result != CreateTransferResult.EXCEEDS_CREDITS:
            return result, 0
        shortfall = debit.amount - self.available_fen(debit.debit_account_id)
        advance = Transfer(advance_id, SUSPENSE_ACCOUNT, debit.debit_account_id, shortfall, chart.CNY,
                           chart.OVERDRAFT_ADVANCE, TransferFlags.LINKED, user_data=debit.user_data)
        return self.ledger.create_transfers([advance, debit], now_ms)[-1], shortfall

    def _reinstate(self, void_key: str, void: dict[str, Any], now_ms: int) -> list[Effect]:
        """A reversed void: the sale stands again, so its hold is placed again."""
        sale_key = void["touched"]
        sale = self.auths[sale_key]
        if sale.get("status") == "posted":  # clearing met the voided sale first and took it: it stands already
            void["status"] = "reversed"
            return [Put("auths", void_key, void), Trace(sale["rrn"], "void reversed: the sale was posted by clearing already", {})]
        card = self.config.cards[sale["pan"]]
        hold_id = derive_id("rehold", void_key)
        hold = Transfer(
            hold_id, card.account_id, SCHEME_SETTLEMENT_ACCOUNT, sale["amount_fen"], chart.CNY, chart.PURCHASE_HOLD,
            TransferFlags.PENDING, user_data=derive_id("lifecycle", sale_key), timeout_s=self.config.hold_expiry_s,
        )
        # The sale was authorized while the money was there, and it stands: the hold goes back in full.
        result, advanced = self.debit_with_advance(hold, derive_id("advance", void_key), now_ms)
        void["status"] = "reversed"
        effects: list[Effect] = [Put("auths", void_key, void)]
        if advanced:
            effects.append(Trace(sale["rrn"], "void reversed: hold placed again with an overdraft advance", {"advance_fen": advanced}))
        if result in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            sale.update(status="held", hold_id=hold_id)
            self._hold_keys[hold_id] = sale_key
            effects.append(Put("auths", sale_key, sale))
            self._notify("void-reversal", sale, sale["amount_fen"], hold_id, now_ms)
        else:
            effects.append(Trace(sale["rrn"], "void reversed but the hold could not be placed again", {"result": str(result)}))
        return effects
