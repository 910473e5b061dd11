"""The POS terminal's core: counters, keys, journal, reversal, receipts.

No I/O: the driver hands it commands (a key press on the POS), replies from
the acquirer and timers, and carries out the effects it returns. One
function runs at a time: an online function sends one request and waits for
its reply or its timeout; a pending reversal goes first (DOMAIN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import timefmt
from ..effects import (
    CancelTimer,
    Command,
    Delete,
    Display,
    Done,
    Effect,
    Put,
    Received,
    Send,
    SetTimer,
    TimerFired,
    Trace,
    mask_pan,
)
from ..security import KeyCheckError, SecurityModule
from ..wire import RC, Message, NetworkCode, ProcessingCode, TxType, WireError, response_mti, response_text
from ..wire.codec import decode_terminal, encode_terminal
from ..wire.fields import (
    BALANCED as SETTLEMENT_BALANCED,
    BATCH_ITEMS_PER_MESSAGE,
    F60,
    F61,
    Totals,
    build_batch_items,
    Track2,
    build_settlement_totals,
    parse_balance,
    parse_f60,
    parse_f62,
    track2_for_terminal,
)
from .receipt import CARDHOLDER_COPY, MERCHANT_COPY, FaultSlip, Receipt, SettlementSlip, yuan
from .devices import DeviceSettings
from .functions import DeviceFunctions

ACQUIRER = "acquirer"  # the one link a terminal has
RESPONSE_TIMER = "response"
TRACE_MAX = 999_999
SECURITY_INFO_FORMAT0_DOUBLE = "2600000000000000"  # F53: ISO format 0 PIN block, double-length key

# Fields a reversal leaves out of the original request (DOMAIN.md §3).
REVERSAL_DROPS = ("35", "36", "52", "26", "53", "37", "64")


@dataclass(frozen=True)
class TerminalConfig:
    terminal_id: str
    merchant_id: str
    merchant_name: str
    acquirer_name: str = "POSNET"
    tpdu: str = "6000030000"
    header: str = "602200000000"
    operator: str = "01"
    response_timeout_ms: int = 30_000
    reversal_attempts: int = 3
    reverse_at_once: bool = False  # send the reversal right after a failure, not before the next transaction
    auto_sign_on: bool = True  # after a 77 or A0, sign on again by itself before the next function
    print_copies: tuple[str, ...] = (MERCHANT_COPY, CARDHOLDER_COPY)
    device: DeviceSettings = DeviceSettings()  # paper roll, battery levels, protection password


@dataclass(frozen=True)
class Card:
    """What the card reader gives: the PAN and expiry of a swiped magnetic stripe."""

    pan: str
    expiry: str  # YYMM
    service_code: str = "201"
    entry_mode: str = "02"  # 02 swipe

    def track2(self) -> str:
        return track2_for_terminal(Track2(self.pan, self.expiry, self.service_code).encode())


@dataclass
class _Round:
    """One pass over the reversal records: before a function (``deferred``), after a failure
    (``outcome``, with reverse_at_once), or by hand."""

    deferred: Command | None = None
    outcome: Done | None = None
    tried: set[str] = field(default_factory=set)
    reversed_any: bool = False
    failed_any: bool = False
    last_rc: str | None = None


@dataclass
class _Exchange:
    """The request in flight and what to do with its reply."""

    kind: str
    request: Message
    reversible: bool
    card: Card | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TerminalError(Exception):
    pass


class Terminal(DeviceFunctions):
    ONLINE = ("sign-on", "sign-off", "echo", "inquiry", "sale", "void", "refund", "send-reversal", "settle")

    def __init__(self, config: TerminalConfig, hsm: SecurityModule, tmk: str | None):
        self.config = config
        self.hsm = hsm
        self.counters: dict[str, Any] = {"trace_no": 0, "batch_no": "000001"}
        self.keys: dict[str, Any] = {"tmk": tmk, "pik": None, "mak": None, "tdk": None, "signed_on": False}
        self.journal: dict[str, dict[str, Any]] = {}
        # Reversal records (冲正记录) by voucher number, oldest first. Usually none or one; more
        # only when a reversal could not be delivered and the terminal went on trading.
        self.reversals: dict[str, dict[str, Any]] = {}
        self.last_voucher: str | None = None
        self._exchange: _Exchange | None = None
        self.settling: dict[str, Any] | None = None  # a settlement under way, kept across a power cut
        self._auto_reversed = False  # the function now running followed an automatic reversal

    # -- state --------------------------------------------------------------

    def restore(self, tables: dict[str, dict[str, dict[str, Any]]], now_ms: int = 0) -> list[Effect]:
        state = tables.get("state", {})
        if "counters" in state:
            self.counters = dict(state["counters"])
        if "keys" in state:
            self.keys = dict(state["keys"])
        self.journal = dict(tables.get("journal", {}))
        self.reversals = dict(sorted(tables.get("reversal", {}).items(), key=lambda kv: kv[1]["created_ms"]))
        self.last_voucher = max(self.journal, default=None)
        self.settling = state.get("settlement")
        return self._restore_devices(tables)

    @property
    def reversal(self) -> dict[str, Any] | None:
        """The oldest reversal record, if any."""
        return next(iter(self.reversals.values()), None)

    @property
    def signed_on(self) -> bool:
        return bool(self.keys.get("signed_on"))

    @property
    def busy(self) -> bool:
        return self._exchange is not None

    def _put_counters(self) -> Put:
        return Put("state", "counters", dict(self.counters))

    def _put_keys(self) -> Put:
        return Put("state", "keys", dict(self.keys))

    def _next_trace(self) -> str:
        n = self.counters["trace_no"] % TRACE_MAX + 1
        self.counters["trace_no"] = n
        return f"{n:06d}"

    # -- inputs -------------------------------------------------------------

    def handle(self, event, now_ms: int) -> list[Effect]:
        if isinstance(event, Command):
            return self._device_gate(event, now_ms)  # device checks first (terminal/functions.py)
        if isinstance(event, Received):
            return self._reply(event.frame, now_ms)
        if isinstance(event, TimerFired) and event.key == RESPONSE_TIMER:
            return self._timeout(now_ms)
        return []

    def _command(self, cmd: Command, now_ms: int) -> list[Effect]:
        if cmd.name not in self.ONLINE:
            raise TerminalError(f"unknown terminal function {cmd.name!r}")
        if self._exchange is not None:
            return [Display("终端忙 TERMINAL BUSY"), Done(False, result={"error": "busy"})]
        self._auto_reversed = False
        if cmd.name not in ("sign-on", "echo") and not self.signed_on:
            if self.keys.get("sign_on_again") and self.config.auto_sign_on and self.keys.get("tmk"):
                # The host asked for a new sign-on (77, A0): do it, then the function.
                ex = self._build_sign_on({}, now_ms)
                ex.extra["then"] = cmd
                return [Display("重新签到 SIGNING ON AGAIN")] + self._send(ex, now_ms)
            return [Display("请先签到 PLEASE SIGN ON"), Done(False, result={"error": "not signed on"})]
        if cmd.name == "send-reversal":
            return self._manual_reversal(now_ms)
        if self.settling is not None and cmd.name not in ("settle", "sign-on", "echo"):
            return [Display("结算未完成,请先结算 SETTLEMENT NOT FINISHED: SETTLE FIRST"),
                    Done(False, result={"error": "settlement not finished"})]
        if self.reversals and cmd.name not in ("sign-on", "echo"):
            # Before anything else goes online, what is owed is reversed (DOMAIN.md §3).
            return self._next_reversal(_Round(deferred=cmd), now_ms)
        return self._start(cmd, now_ms)

    def _manual_reversal(self, now_ms: int) -> list[Effect]:
        """The operator sends the pending reversals by hand, also those whose attempts ran out (手工冲正)."""
        if not self.reversals:
            return [Display("无冲正记录 NO PENDING REVERSAL"), Done(True, result={"reversal": "none"})]
        for record in self.reversals.values():
            record.update(attempts=0, failed=False)
        return self._next_reversal(_Round(), now_ms)

    def _start(self, cmd: Command, now_ms: int) -> list[Effect]:
        builder = getattr(self, "_build_" + cmd.name.replace("-", "_"))
        built = builder(cmd.args, now_ms)
        if isinstance(built, list):  # the function ended before going online
            return built
        return self._send(built, now_ms)

    # -- requests -----------------------------------------------------------

    def _base(self, mti: str, now_ms: int) -> Message:
        return Message(
            mti,
            {"11": self._next_trace(), "41": self.config.terminal_id, "42": self.config.merchant_id},
            tpdu=self.config.tpdu,
            header=self.config.header,
        )

    def _card_fields(self, msg: Message, card: Card, pin: str | None) -> None:
        msg.fields["2"] = card.pan
        msg.fields["14"] = card.expiry
        msg.fields["22"] = card.entry_mode + ("1" if pin else "2")
        msg.fields["35"] = card.track2()
        if pin:
            msg.fields["26"] = "12"
            msg.fields["52"] = self.hsm.encrypt_pin(self.keys["pik"], pin, card.pan).hex().upper()
            msg.fields["53"] = SECURITY_INFO_FORMAT0_DOUBLE

    def _f60(self, tx_type: str, network: str = NetworkCode.NONE) -> str:
        return F60(tx_type, self.counters["batch_no"], network).encode()

    def _build_sign_on(self, args, now_ms) -> _Exchange:
        msg = self._base("0800", now_ms)
        msg.fields["60"] = self._f60(TxType.NETWORK, NetworkCode.SIGN_ON_DOUBLE)
        msg.fields["63"] = f"{self.config.operator:<3}"
        return _Exchange("sign-on", msg, reversible=False)

    def _build_sign_off(self, args, now_ms) -> _Exchange:
        msg = self._base("0820", now_ms)
        msg.fields["60"] = self._f60(TxType.NETWORK, NetworkCode.SIGN_OFF)
        return _Exchange("sign-off", msg, reversible=False)

    def _build_echo(self, args, now_ms) -> _Exchange:
        msg = self._base("0820", now_ms)
        msg.fields["60"] = self._f60(TxType.NETWORK, NetworkCode.ECHO)
        return _Exchange("echo", msg, reversible=False)

    def _build_inquiry(self, args, now_ms) -> _Exchange:
        card: Card = args["card"]
        msg = self._base("0200", now_ms)
        msg.fields.update({"3": ProcessingCode.BALANCE_INQUIRY, "25": "00", "49": "156"})
        self._card_fields(msg, card, args.get("pin"))
        msg.fields["60"] = self._f60(TxType.INQUIRY)
        return _Exchange("inquiry", msg, reversible=False, card=card)

    def _build_sale(self, args, now_ms) -> _Exchange | list[Effect]:
        card: Card = args["card"]
        amount = int(args["amount_fen"])
        if amount <= 0 or amount > 999_999_999_999:
            return [Display("金额无效 INVALID AMOUNT"), Done(False, result={"error": "invalid amount"})]
        msg = self._base("0200", now_ms)
        msg.fields.update({"3": ProcessingCode.PURCHASE, "4": f"{amount:012d}", "25": "00", "49": "156"})
        self._card_fields(msg, card, args.get("pin"))
        msg.fields["60"] = self._f60(TxType.SALE)
        return _Exchange("sale", msg, reversible=True, card=card)

    def _build_void(self, args, now_ms) -> _Exchange | list[Effect]:
        voucher = f"{int(args['voucher_no']):06d}"
        original = self.journal.get(voucher)
        if original is None or original["kind"] != "sale":
            return [Display("原交易不存在 ORIGINAL NOT FOUND"), Done(False, RC.ORIGINAL_NOT_FOUND)]
        if original.get("voided"):
            return [Display("原交易已撤销 ALREADY VOIDED"), Done(False, RC.INVALID_TRANSACTION)]
        card: Card = args.get("card") or Card(original["pan"], original["expiry"])
        if card.pan != original["pan"]:
            return [Display("卡号不符 CARD DIFFERS FROM ORIGINAL"), Done(False, RC.INVALID_CARD)]
        msg = self._base("0200", now_ms)
        msg.fields.update(
            {
                "3": ProcessingCode.VOID,
                "4": f"{original['amount_fen']:012d}",
                "25": "00",
                "37": original["reference_no"],
                "38": original["auth_code"],
                "49": "156",
                "61": F61(original["batch_no"], voucher).encode(),
            }
        )
        self._card_fields(msg, card, args.get("pin"))
        msg.fields["60"] = self._f60(TxType.VOID)
        return _Exchange("void", msg, reversible=True, card=card, extra={"original": voucher})

    def _build_refund(self, args, now_ms) -> _Exchange | list[Effect]:
        card: Card = args["card"]
        amount = int(args["amount_fen"])
        if amount <= 0:
            return [Display("金额无效 INVALID AMOUNT"), Done(False, result={"error": "invalid amount"})]
        msg = self._base("0220", now_ms)
        msg.fields.update(
            {
                "3": ProcessingCode.REFUND,
                "4": f"{amount:012d}",
                "25": "00",
                "37": f"{args['reference_no']:>12}"[:12],
                "49": "156",
                "61": F61("000000", "000000", args["date_mmdd"]).encode(),
            }
        )
        self._card_fields(msg, card, args.get("pin"))
        msg.fields["60"] = self._f60(TxType.REFUND)
        return _Exchange(
            "refund",
            msg,
            reversible=False,
            card=card,
            extra={"original_reference": args["reference_no"], "original_date": args["date_mmdd"]},
        )

    def _mac(self, data: bytes) -> bytes:
        return self.hsm.cup_mac(self.keys["mak"], data)

    def _send(self, ex: _Exchange, now_ms: int) -> list[Effect]:
        macced = ex.request.mti not in ("0800", "0820")
        frame = encode_terminal(ex.request, mac=self._mac if macced else None)
        records: list[Effect] = [self._put_counters(), *ex.extra.get("records", ())]
        if ex.reversible:
            # Written as the request goes out: if nothing comes back, this is what reverses it.
            record = self._reversal_record(ex, now_ms)
            self.reversals[record["voucher_no"]] = record
            records.append(Put("reversal", record["voucher_no"], record))
        self._exchange = ex
        return [
            *records,
            Send(ACQUIRER, frame),
            SetTimer(RESPONSE_TIMER, now_ms + self.config.response_timeout_ms),
            Display("处理中 PROCESSING"),
            Trace(self._lifecycle(ex.request), "request sent", self._summary(ex.request)),
        ]

    def _reversal_record(self, ex: _Exchange, now_ms: int) -> dict[str, Any]:
        fields = {k: v for k, v in ex.request.fields.items() if k not in REVERSAL_DROPS}
        fields["39"] = RC.UNKNOWN_OUTCOME
        return {
            "fields": fields,
            "kind": ex.kind,
            "attempts": 0,
            "voucher_no": ex.request["11"],
            "amount_fen": int(ex.request.get(4) or 0),
            "created_ms": now_ms,
            "failed": False,
        }

    def _next_reversal(self, rnd: "_Round", now_ms: int) -> list[Effect]:
        """Send the next reversal of this round; when none is left, go on with what waited."""
        for voucher in self.reversals:
            if voucher not in rnd.tried:
                return self._send_reversal(voucher, rnd, now_ms)
        effects: list[Effect] = []
        if rnd.deferred is not None:
            if rnd.reversed_any:
                self._auto_reversed = True
                effects.append(Display("自动冲正成功 AUTO REVERSAL DONE"))
            return effects + self._start(rnd.deferred, now_ms)
        failed: Done | None = rnd.outcome
        state = "done" if not rnd.failed_any else "failed"
        if failed is None:  # reversals on their own
            return effects + [Done(not rnd.failed_any, rnd.last_rc, {"reversal": state})]
        return effects + [Done(False, failed.response_code, {**failed.result, "reversal": state})]

    def _send_reversal(self, voucher: str, rnd: "_Round", now_ms: int) -> list[Effect]:
        record = self.reversals[voucher]
        msg = Message("0400", dict(record["fields"]), tpdu=self.config.tpdu, header=self.config.header)
        self._exchange = _Exchange("reversal", msg, reversible=False, extra={"round": rnd, "voucher": voucher})
        record["attempts"] += 1
        return [
            Put("reversal", voucher, record),
            Send(ACQUIRER, encode_terminal(msg, mac=self._mac)),
            SetTimer(RESPONSE_TIMER, now_ms + self.config.response_timeout_ms),
            Display("冲正中 REVERSING"),
            Trace(self._lifecycle(msg), "reversal sent", {"attempt": record["attempts"]}),
        ]

    # -- replies ------------------------------------------------------------

    def _reply(self, frame: bytes, now_ms: int) -> list[Effect]:
        ex = self._exchange
        if ex is None:
            return [Trace("", "reply with nothing in flight: ignored", {"bytes": len(frame)})]
        try:
            reply = decode_terminal(frame)
        except WireError as e:
            return self._failed(ex, RC.UNKNOWN_OUTCOME, f"无法解析应答 UNREADABLE REPLY: {e}", now_ms)
        if not self._matches(ex.request, reply):
            return [Trace(self._lifecycle(reply), "reply does not match the request: ignored", self._summary(reply))]
        rc = reply.get(39) or ""
        # DOMAIN.md §3: an approval must carry a good MAC. posnet also checks the MAC of any reply
        # that carries one: a bit flipped in F39 must not turn a host's approval into a "decline"
        # that the terminal would not reverse.
        if ex.request.mti not in ("0800", "0820") and (rc == RC.APPROVED or reply.has(64)):
            if not reply.has(64) or not self.hsm.verify_cup_mac(self.keys["mak"], reply.mac_input(), reply.mac_value()):
                return self._failed(ex, RC.MAC_ERROR, response_text(RC.MAC_ERROR), now_ms, sign_on_again=True)
        self._exchange = None
        effects: list[Effect] = [CancelTimer(RESPONSE_TIMER), Trace(self._lifecycle(reply), "reply", self._summary(reply))]
        if ex.kind == "reversal":
            return effects + self._reversal_reply(ex, reply, now_ms)
        if ex.reversible:
            # Any reply that parses and matches settles the outcome: no reversal needed.
            self.reversals.pop(ex.request["11"], None)
            effects.append(Delete("reversal", ex.request["11"]))
        if rc in (RC.SIGN_ON_AGAIN, RC.MAC_ERROR):
            self.keys.update(signed_on=False, sign_on_again=True)
            effects.append(self._put_keys())
        handler = getattr(self, "_on_" + ex.kind.replace("-", "_"))
        return effects + handler(ex, reply, now_ms)

    @staticmethod
    def _matches(request: Message, reply: Message) -> bool:
        if reply.mti != response_mti(request.mti):
            return False
        return all(request.get(f) == reply.get(f) for f in ("3", "4", "11", "41") if request.has(f))

    def _declined(self, reply: Message, ex: _Exchange) -> list[Effect]:
        rc = reply.get(39) or "??"
        return [Display(response_text(rc)), Done(False, rc, {"kind": ex.kind})]

    def _on_sign_on(self, ex, reply, now_ms) -> list[Effect]:
        if reply.get(39) != RC.APPROVED:
            return self._declined(reply, ex)
        try:
            keys = parse_f62(reply.get(62))
            pik = self.hsm.import_key(self.keys["tmk"], keys.pik, keys.pik_kcv)
            mak = self.hsm.import_key(self.keys["tmk"], keys.mak, keys.mak_kcv)
            tdk = self.hsm.import_key(self.keys["tmk"], keys.tdk, keys.tdk_kcv) if keys.tdk else None
        except (WireError, KeyCheckError) as e:
            return [Display(f"签到失败,密钥校验错 KEY CHECK FAILED: {e}"), Done(False, result={"error": "key check"})]
        self.keys.update(pik=pik, mak=mak, tdk=tdk, signed_on=True, sign_on_again=False)
        host_batch = parse_f60(reply.get(60)).batch_no
        effects: list[Effect] = [self._put_keys()]
        if not self.journal and self.settling is None:
            self.counters["batch_no"] = host_batch  # a batch with nothing in it takes the host's number
        elif host_batch != self.counters["batch_no"]:
            # A batch with receipts keeps the number printed on them, and settles under it; the host
            # learns it from F60.2 of what the terminal sends next.
            effects.append(Trace(f"{self.config.terminal_id}:sign-on", "open batch keeps its number",
                                 {"batch": self.counters["batch_no"], "host_batch": host_batch}))
        batch = self.counters["batch_no"]
        effects += [self._put_counters(), Display(f"签到成功 SIGNED ON  批次号 BATCH {batch}")]
        if "then" in ex.extra:
            return effects + self._command(ex.extra["then"], now_ms)
        return effects + [Done(True, RC.APPROVED, {"batch_no": batch})]

    def _on_sign_off(self, ex, reply, now_ms) -> list[Effect]:
        self.keys.update(signed_on=False, pik=None, mak=None, tdk=None)
        return [self._put_keys(), Display("签退成功 SIGNED OFF"), Done(True, reply.get(39))]

    def _on_echo(self, ex, reply, now_ms) -> list[Effect]:
        ok = reply.get(39) == RC.APPROVED
        return [Display("回响测试成功 ECHO OK" if ok else response_text(reply.get(39) or "")), Done(ok, reply.get(39))]

    def _on_inquiry(self, ex, reply, now_ms) -> list[Effect]:
        if reply.get(39) != RC.APPROVED:
            return self._declined(reply, ex)
        try:
            balance, currency = parse_balance(reply.get(54) or "")
        except WireError as e:
            return [Display(f"余额格式错 BAD BALANCE: {e}"), Done(False, result={"error": "bad balance"})]
        return [
            Display(f"{self._auto_reversal_note()}余额 BALANCE: {yuan(balance)}"),
            Done(True, RC.APPROVED, {"balance_fen": balance, "currency": currency}),
        ]

    def _on_sale(self, ex, reply, now_ms) -> list[Effect]:
        return self._approved_entry(ex, reply, now_ms)

    def _on_void(self, ex, reply, now_ms) -> list[Effect]:
        effects = self._approved_entry(ex, reply, now_ms)
        if reply.get(39) == RC.APPROVED:
            original = dict(self.journal[ex.extra["original"]])
            original["voided"] = True
            self.journal[ex.extra["original"]] = original
            effects.insert(0, Put("journal", ex.extra["original"], original))
        return effects

    # -- settlement (结算) ---------------------------------------------------

    def batch_totals(self) -> Totals:
        """DOMAIN.md §3: debits are sales (a voided one too); credits are voids and refunds."""
        debit = [e for e in self.journal.values() if e["kind"] == "sale"]
        credit = [e for e in self.journal.values() if e["kind"] in ("void", "refund")]
        return Totals(
            sum(e["amount_fen"] for e in debit), len(debit), sum(e["amount_fen"] for e in credit), len(credit)
        )

    def _build_settle(self, args, now_ms) -> _Exchange:
        # The settlement's state is kept: one interrupted by a power cut is simply sent again, and the
        # acquirer answers a repeated settlement of a batch with its first answer.
        msg = self._base("0500", now_ms)
        msg.fields.update(
            {
                "48": build_settlement_totals(self.batch_totals()),
                "49": "156",
                "60": self._f60(TxType.NETWORK, NetworkCode.SETTLEMENT),
                "63": f"{self.config.operator:<3}",
            }
        )
        self.settling = {"batch_no": self.counters["batch_no"], "stage": "totals sent"}
        return _Exchange("settle", msg, reversible=False, extra={"records": [Put("state", "settlement", self.settling)]})

    def _on_settle(self, ex, reply, now_ms) -> list[Effect]:
        if reply.get(39) != RC.APPROVED:
            return self._declined(reply, ex)
        f48 = reply.get(48) or ""
        balanced = len(f48) > 30 and f48[30] == SETTLEMENT_BALANCED
        entries = sorted(self.journal.values(), key=lambda e: e["voucher_no"])
        if balanced or not entries:
            return self._settled(balanced=True, uploaded=0, now_ms=now_ms)
        chunks = [entries[i : i + BATCH_ITEMS_PER_MESSAGE] for i in range(0, len(entries), BATCH_ITEMS_PER_MESSAGE)]
        self.settling = {"batch_no": self.counters["batch_no"], "stage": "uploading"}
        return [Display("批上送 BATCH UPLOAD"), Put("state", "settlement", self.settling)] + self._upload(chunks, 0, now_ms)

    def _upload(self, chunks: list[list[dict[str, Any]]], index: int, now_ms: int) -> list[Effect]:
        """批上送: the batch's transactions, a few per 0320, then the end message (60.3 202)."""
        msg = self._base("0320", now_ms)
        if index < len(chunks):
            msg.fields["48"] = build_batch_items(chunks[index])
            msg.fields["60"] = self._f60(TxType.NETWORK, NetworkCode.SETTLEMENT)
        else:
            msg.fields["48"] = f"{sum(len(c) for c in chunks):04d}"
            msg.fields["60"] = self._f60(TxType.NETWORK, NetworkCode.BATCH_UPLOAD_END)
        return self._send(_Exchange("batch-upload", msg, reversible=False, extra={"chunks": chunks, "index": index}), now_ms)

    def _on_batch_upload(self, ex, reply, now_ms) -> list[Effect]:
        if reply.get(39) != RC.APPROVED:
            return self._declined(reply, ex)
        chunks, index = ex.extra["chunks"], ex.extra["index"]
        if index < len(chunks):
            return self._upload(chunks, index + 1, now_ms)
        return self._settled(balanced=False, uploaded=sum(len(c) for c in chunks), now_ms=now_ms)

    def _settled(self, balanced: bool, uploaded: int, now_ms: int) -> list[Effect]:
        """Print the settlement slip, clear the journal, open the next batch."""
        batch = self.counters["batch_no"]
        totals = self.batch_totals()
        entries = list(self.journal.values())
        slip = SettlementSlip(
            self.config.merchant_name, self.config.merchant_id, self.config.terminal_id, self.config.operator,
            batch, totals, balanced, uploaded, timefmt.stamp(now_ms),
        )
        effects: list[Effect] = [Delete("journal", v) for v in self.journal]
        self.journal = {}
        self.last_voucher = None
        self.counters["batch_no"] = f"{int(batch) % 999_999 + 1:06d}"
        self.settling = None
        effects += [
            self._put_counters(),
            Delete("state", "settlement"),
            Display(f"结算完成 SETTLED  批次号 BATCH {batch} {'对账平 BALANCED' if balanced else '对账不平 UNBALANCED'}"),
            *self._print_slip(slip, now_ms),  # paper and battery permitting (terminal/functions.py)
            Done(True, RC.APPROVED, {"batch_no": batch, "balanced": balanced, "uploaded": uploaded, "entries": entries}),
        ]
        return effects

    def _on_refund(self, ex, reply, now_ms) -> list[Effect]:
        return self._approved_entry(ex, reply, now_ms)

    def _approved_entry(self, ex: _Exchange, reply: Message, now_ms: int) -> list[Effect]:
        if reply.get(39) != RC.APPROVED:
            return self._declined(reply, ex)
        req = ex.request
        voucher = req["11"]
        f44 = reply.get(44) or ""
        entry = {
            "voucher_no": voucher,
            "kind": ex.kind,
            "pan": req["2"],
            "expiry": req.get(14) or "",
            "entry_mode": req.get(22) or "021",
            "amount_fen": int(req["4"]),
            "reference_no": reply.get(37) or "",
            "auth_code": reply.get(38) or "",
            "date_mmdd": reply.get(13) or timefmt.mmdd(now_ms),
            "datetime": timefmt.stamp(now_ms),
            "batch_no": self.counters["batch_no"],
            "issuer": f44[:11].strip(),
            "acquirer": f44[11:].strip() or self.config.acquirer_name,
            "voided": False,
            **{k: v for k, v in ex.extra.items()},
        }
        self.journal[voucher] = entry
        self.last_voucher = voucher
        # The journal is committed before the printer starts: a failed print never undoes an approval.
        slips = self._print_receipt(voucher, now_ms)
        return [
            Put("journal", voucher, entry),
            Display(f"{self._auto_reversal_note()}交易成功 APPROVED  凭证号 VOUCHER {voucher}"),
            *slips,
            Done(True, RC.APPROVED, {k: entry[k] for k in ("voucher_no", "reference_no", "auth_code", "amount_fen", "batch_no")}),
        ]

    def _reversal_reply(self, ex: _Exchange, reply: Message, now_ms: int) -> list[Effect]:
        rc = reply.get(39)
        rnd: _Round = ex.extra["round"]
        rnd.last_rc = rc
        if rc in (RC.APPROVED, RC.DUPLICATE, RC.ORIGINAL_NOT_FOUND):
            voucher = ex.extra["voucher"]
            self.reversals.pop(voucher, None)
            rnd.tried.add(voucher)
            rnd.reversed_any = True
            effects: list[Effect] = [Delete("reversal", voucher)]
            if rnd.deferred is None:
                effects.append(Display("冲正成功 REVERSAL DONE"))
            return effects + self._next_reversal(rnd, now_ms)
        return self._reversal_not_done(ex, now_ms, f"host answered {rc}")

    def _auto_reversal_note(self) -> str:
        if self._auto_reversed:
            self._auto_reversed = False
            return "自动冲正成功 AUTO REVERSAL DONE; "
        return ""

    # -- failures -----------------------------------------------------------

    def _timeout(self, now_ms: int) -> list[Effect]:
        ex = self._exchange
        if ex is None:
            return []
        return self._failed(ex, RC.ISSUER_TIMED_OUT, "交易超时 TIMED OUT", now_ms)

    def _failed(self, ex: _Exchange, reason: str, text: str, now_ms: int, sign_on_again: bool = False) -> list[Effect]:
        self._exchange = None
        effects: list[Effect] = [CancelTimer(RESPONSE_TIMER), Trace(self._lifecycle(ex.request), "failed", {"reason": reason})]
        if ex.kind == "reversal":
            return effects + self._reversal_not_done(ex, now_ms, text)
        if sign_on_again:
            self.keys.update(signed_on=False, sign_on_again=True)
            effects.append(self._put_keys())
        record = self.reversals.get(ex.request["11"]) if ex.reversible else None
        if record is not None:
            record["fields"]["39"] = reason
            effects.append(Put("reversal", ex.request["11"], record))
            if self.config.reverse_at_once and not sign_on_again:
                rnd = _Round(outcome=Done(False, reason, {"kind": ex.kind}))
                return effects + [Display(text)] + self._send_reversal(ex.request["11"], rnd, now_ms)
        return effects + [Display(text), Done(False, reason, {"kind": ex.kind})]

    def _reversal_not_done(self, ex: _Exchange, now_ms: int, why: str) -> list[Effect]:
        rnd: _Round = ex.extra["round"]
        voucher = ex.extra["voucher"]
        record = self.reversals[voucher]
        if not record["failed"] and record["attempts"] < self.config.reversal_attempts:
            return self._send_reversal(voucher, rnd, now_ms)
        rnd.tried.add(voucher)
        rnd.failed_any = True
        effects: list[Effect] = []
        if not record["failed"]:
            # Every attempt failed: say so, print a fault slip, keep the record. It is tried once
            # more before each later transaction, and by hand with send-reversal.
            record["failed"] = True
            slip = FaultSlip(self.config.terminal_id, voucher, record["amount_fen"], timefmt.stamp(now_ms), why)
            effects += [
                Put("reversal", voucher, record),
                Display("冲正不成功,请联系服务商 REVERSAL FAILED, CONTACT SERVICE PROVIDER"),
                *self._print_slip(slip, now_ms),
            ]
        return effects + self._next_reversal(rnd, now_ms)

    # -- receipts and traces ------------------------------------------------

    def receipt(self, voucher_no: str, copy: str = CARDHOLDER_COPY, reprint: bool = False) -> Receipt:
        e = self.journal[voucher_no]
        remarks: list[str] = []
        if e["kind"] == "void":
            remarks.append(f"原凭证号(ORIG. VOUCHER): {e.get('original', '')}")
        if e["kind"] == "refund":
            remarks.append(f"原参考号(ORIG. REFER NO.): {e.get('original_reference', '')}")
            remarks.append(f"原交易日期(ORIG. DATE): {e.get('original_date', '')}")
        return Receipt(
            copy=copy,
            merchant_name=self.config.merchant_name,
            merchant_id=self.config.merchant_id,
            terminal_id=self.config.terminal_id,
            operator=self.config.operator,
            issuer=e["issuer"],
            acquirer=e["acquirer"],
            pan=e["pan"],
            entry_mode=e["entry_mode"],
            tx_type=e["kind"],
            expiry=e["expiry"],
            batch_no=e["batch_no"],
            voucher_no=e["voucher_no"],
            auth_code=e["auth_code"],
            datetime=e["datetime"],
            reference_no=e["reference_no"],
            amount_fen=e["amount_fen"],
            remarks=tuple(remarks),
            reprint=reprint,
        )

    def _lifecycle(self, msg: Message) -> str:
        return f"{self.config.terminal_id}:{self.counters['batch_no']}:{msg.get(11)}"

    @staticmethod
    def _summary(msg: Message) -> dict[str, Any]:
        return {
            "mti": msg.mti,
            "pan": mask_pan(msg.get(2)),
            "amount": msg.get(4),
            "trace": msg.get(11),
            "rc": msg.get(39),
        }
