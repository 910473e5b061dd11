"""The acquirer's core (收单机构): merchants, terminals, keys, batches, forwarding.

Terminal leg in, host leg out. The acquirer checks who is asking (97 unknown
terminal, 03 merchant mismatch, 77 not signed on, A0 bad MAC), assigns the
retrieval reference number (F37), translates the PIN block from the
terminal's PIN key to the zone PIN key it shares with the switch, forwards,
and answers the terminal when the switch answers — or 98 when it does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .. import clearing_files, timefmt
from ..effects import (
    CancelTimer,
    Close,
    Command,
    Effect,
    LedgerWrite,
    LinkDown,
    LinkUp,
    Publish,
    Put,
    Received,
    Send,
    SetTimer,
    TimerFired,
    Trace,
    mask_pan,
)
from ..ledger import Account, CreateTransferResult, Ledger, chart
from ..ledger.ids import derive_id
from . import manual_credit, settlement
from ..forwarding import TIMER_PREFIX, ForwardingLimits, StoreAndForward
from ..links import LinkLimits, LinkWatch
from ..security import PinBlockFormatError, SecurityModule
from ..wire import RC, Kind, Message, NetworkCode, WireError, response_mti
from ..wire.codec import decode_host, decode_terminal, encode_host, encode_terminal, reply_tpdu
from ..wire.codes import is_request, terminal_kind
from ..wire.fields import (
    F60,
    OriginalData,
    WorkingKeys,
    BALANCED,
    BATCH_TYPE_CODES,
    UNBALANCED,
    parse_batch_items,
    parse_f60,
    parse_f61,
    parse_settlement_totals,
    track2_for_host,
)

SWITCH = "switch"
HOST_TIMER_PREFIX = "host:"
STAN_MAX = 999_999
BATCH_MAX = 999_999  # F60.2, six digits
REPUBLISH_PRESENTMENTS_MS = 3 * 24 * 3600_000  # presentment files published again after a restart

# Fields a request of each kind must carry (besides F2 or F35 for the card).
REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.SIGN_ON: ("11", "41", "42", "60"),
    Kind.SIGN_OFF: ("11", "41", "42", "60"),
    Kind.ECHO: ("11", "41", "42", "60"),
    Kind.INQUIRY: ("3", "11", "22", "25", "41", "42", "49", "60", "64"),
    Kind.SALE: ("3", "4", "11", "22", "25", "41", "42", "49", "60", "64"),
    Kind.VOID: ("3", "4", "11", "22", "25", "37", "41", "42", "49", "60", "61", "64"),
    Kind.REFUND: ("3", "4", "11", "22", "25", "37", "41", "42", "49", "60", "61", "64"),
    Kind.REVERSAL: ("3", "11", "39", "41", "42", "60", "64"),
    Kind.SETTLEMENT: ("11", "41", "42", "48", "49", "60", "64"),
    Kind.BATCH_UPLOAD: ("11", "41", "42", "48", "60", "64"),
}
CARD_KINDS = (Kind.INQUIRY, Kind.SALE, Kind.VOID, Kind.REFUND)


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str = "5411"
    fee_rate_bp: int = 60  # the merchant's fee (手续费), basis points of its sales: 0.60 %
    account_id: int = settlement.MERCHANT_ACCOUNT_BASE


@dataclass(frozen=True)
class TerminalEntry:
    terminal_id: str
    merchant_id: str
    tmk: str  # key handle under the acquirer's LMK


@dataclass(frozen=True)
class AcquirerConfig:
    institution_id: str
    name: str
    zpk: str  # zone PIN key shared with the switch (handle)
    zak: str  # zone MAC key shared with the switch (handle)
    merchants: dict[str, Merchant] = field(default_factory=dict)
    terminals: dict[str, TerminalEntry] = field(default_factory=dict)
    host_timeout_ms: int = 20_000  # shorter than the terminal's 30 s, so the terminal hears 98 from us
    operators: tuple[str, ...] = ()  # who may request and approve manual credits (manual_credit.py)
    forwarding: ForwardingLimits = ForwardingLimits()
    link: LinkLimits = LinkLimits()


@dataclass
class _Pending:
    source: str
    request: Message
    kind: Kind
    rrn: str
    host_key: str


class Acquirer:
    def __init__(self, config: AcquirerConfig, hsm: SecurityModule, ledger: Ledger | None = None):
        self.config = config
        self.hsm = hsm
        self.ledger = ledger or Ledger()
        self.settlements: dict[str, dict[str, Any]] = {}  # "TID:batch" -> the batch's settlement
        self.terminals: dict[str, dict[str, Any]] = {}  # TID -> signed_on, keys, batch
        self.counters: dict[str, int] = {"stan": 0, "rrn": 0, "presentment_file": 0}
        self.txns: dict[str, dict[str, Any]] = {}  # RRN -> transaction
        self._by_trace: dict[tuple[str, str, str], str] = {}  # (TID, batch, trace) -> RRN
        # Reversals that arrived before (or instead of) their original: (TID, batch, trace) -> MMDD.
        self.reversed_unknown: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}  # host key -> request awaiting the switch
        self.saf = StoreAndForward("saf", SWITCH, config.forwarding)
        self.switch_link = LinkWatch(SWITCH, config.link, self._echo_request)
        self.manual_credits = manual_credit.ManualCredits()

    # -- state --------------------------------------------------------------

    def restore(self, tables: dict[str, dict[str, dict[str, Any]]], now_ms: int) -> list[Effect]:
        self.terminals = {k: dict(v) for k, v in tables.get("terminals", {}).items()}
        self.counters.update(tables.get("state", {}).get("counters", {}))
        self.txns = {k: dict(v) for k, v in tables.get("txns", {}).items()}
        self._by_trace = {(t["terminal_id"], t["batch_no"], t["trace_no"]): rrn for rrn, t in self.txns.items()}
        self.reversed_unknown = {k: v["date_mmdd"] for k, v in tables.get("reversed_unknown", {}).items()}
        self.settlements = {k: dict(v) for k, v in tables.get("settlements", {}).items()}
        self.manual_credits.restore(tables)
        effects = self.saf.restore(tables.get("saf", {}), now_ms) + self._open_books(now_ms)
        effects += self._present_again(tables, now_ms)
        # A request whose answer was never heard is owed a reversal upstream (store and forward).
        for rrn, t in self.txns.items():
            if t["status"] == "pending":
                if t["reversible"]:
                    effects += self._reverse_upstream(t, now_ms)
                else:
                    t["status"] = "timed-out"
                    effects.append(Put("txns", rrn, t))
        return effects

    def _open_books(self, now_ms: int) -> list[Effect]:
        """The acquirer's accounts: its own, and one per merchant (docs/ledger.md)."""
        accounts = settlement.system_accounts() + [
            Account(m.account_id, chart.CNY, chart.ACQUIRER_MERCHANT) for m in self.config.merchants.values()
        ]
        new = [a for a in accounts if self.ledger.account(a.id) is None]
        if new:
            self.ledger.create_accounts(new, now_ms)
        changes = self.ledger.take_changes()
        return [LedgerWrite(changes)] if changes else []

    def _terminal_state(self, tid: str) -> dict[str, Any]:
        return self.terminals.setdefault(tid, {"signed_on": False, "pik": None, "mak": None, "batch_no": "000001"})

    def _next(self, counter: str, maximum: int) -> int:
        self.counters[counter] = self.counters[counter] % maximum + 1
        return self.counters[counter]

    def _put_counters(self) -> Put:
        return Put("state", "counters", dict(self.counters))

    # -- inputs -------------------------------------------------------------

    def handle(self, event, now_ms: int) -> list[Effect]:
        effects = self._present(self._handle(event, now_ms), now_ms)
        changes = self.ledger.take_changes()
        return [LedgerWrite(changes), *effects] if changes else effects

    def _handle(self, event, now_ms: int) -> list[Effect]:
        if isinstance(event, Received):
            if event.source == SWITCH:
                return self._from_switch(event.frame, now_ms)
            return self._from_terminal(event.source, event.frame, now_ms)
        if isinstance(event, LinkUp) and event.link == SWITCH:
            # A link back: owed reversals go out now rather than at their next retry.
            return self.switch_link.link_up(now_ms) + self.saf.kick(now_ms)
        if isinstance(event, LinkDown) and event.link == SWITCH:
            return self.switch_link.link_down()
        if isinstance(event, TimerFired):
            if self.switch_link.owns(event.key):
                return self.switch_link.on_timer(event.key, now_ms)
            if event.key.startswith(HOST_TIMER_PREFIX):
                return self._host_timeout(event.key[len(HOST_TIMER_PREFIX) :], now_ms)
            if event.key.startswith(TIMER_PREFIX):
                return self.saf.on_timer(event.key, self._encode_host, now_ms)
        if isinstance(event, Command) and event.name == "inject-tmk":
            return self._inject_tmk(event.args, now_ms)
        if isinstance(event, Command) and event.name in manual_credit.COMMANDS:
            return self.manual_credits.handle(event, self.config, self.txns, self.ledger, now_ms)
        if isinstance(event, Command):
            return []
        return []

    # -- terminal leg -------------------------------------------------------

    def _from_terminal(self, source: str, frame: bytes, now_ms: int) -> list[Effect]:
        try:
            req = decode_terminal(frame)
        except WireError as e:
            return self._format_error(source, frame, e)
        if not is_request(req.mti):  # nothing to answer: a terminal that sends this is closed on
            return [Trace("", "not a request from a terminal", {"mti": req.mti, "source": source}), Close(source)]
        try:
            return self._terminal_request(source, req, now_ms)
        except WireError as e:  # a field that decoded but does not parse (F60, F61, …)
            return [Trace("", "format error", {"error": str(e)}), self._answer(source, req, RC.FORMAT_ERROR, mac=False)]

    def _terminal_request(self, source: str, req: Message, now_ms: int) -> list[Effect]:
        f60 = parse_f60(req.get(60)) if req.has(60) and len(req.get(60) or "") >= 11 else F60("", "", "")
        kind = terminal_kind(req.mti, req.get(3), f60.tx_type, f60.network_code)
        if kind is None or kind not in REQUIRED:
            return [self._answer(source, req, RC.FUNCTION_NOT_SUPPORTED, mac=False)]
        missing = [f for f in REQUIRED[kind] if not req.has(f)]
        if kind in CARD_KINDS and not (req.has(2) or req.has(35)):
            missing.append("2/35")
        if missing:
            return [
                Trace("", "format error", {"missing": missing, "mti": req.mti}),
                self._answer(source, req, RC.FORMAT_ERROR, mac=False),
            ]
        tid, mid = req["41"], req["42"]
        entry = self.config.terminals.get(tid)
        if entry is None:
            return [self._answer(source, req, RC.TERMINAL_NOT_REGISTERED, mac=False)]
        if entry.merchant_id != mid:
            return [self._answer(source, req, RC.INVALID_MERCHANT, mac=False)]
        if kind is Kind.SIGN_ON:
            return self._sign_on(source, req, f60, now_ms)
        if kind is Kind.ECHO:
            return [self._answer(source, req, RC.APPROVED, mac=False)]
        state = self._terminal_state(tid)
        if not state["signed_on"]:
            return [self._answer(source, req, RC.SIGN_ON_AGAIN, mac=False)]
        if req.has(64) and not self.hsm.verify_cup_mac(state["mak"], req.mac_input(), req.mac_value()):
            return [Trace("", "bad MAC from terminal", {"tid": tid}), self._answer(source, req, RC.MAC_ERROR, mac=False)]
        if kind is Kind.SIGN_OFF:
            state.update(signed_on=False, pik=None, mak=None)
            return [Put("terminals", tid, state), self._answer(source, req, RC.APPROVED, mac=False)]
        if kind is Kind.REVERSAL:
            return self._terminal_reversal(source, req, f60, now_ms)
        if kind is Kind.SETTLEMENT:
            return self._settlement(source, req, f60, now_ms)
        if kind is Kind.BATCH_UPLOAD:
            return self._batch_upload(source, req, f60, now_ms)
        if kind in CARD_KINDS:
            return self._financial(source, req, kind, f60, now_ms)
        return [self._answer(source, req, RC.FUNCTION_NOT_SUPPORTED)]

    def _format_error(self, source: str, frame: bytes, e: WireError) -> list[Effect]:
        mti = e.partial.get("t")
        trace = Trace("", "unreadable frame", {"error": str(e), "bytes": len(frame)})
        if not mti or not is_request(mti):
            return [trace, Close(source)]  # nothing to frame a reply with
        fields = {k: v for k, v in e.partial.items() if k in ("3", "4", "11", "41", "42")}
        tpdu = frame[:5].hex().upper()
        header = frame[5:11].hex().upper()
        reply = Message(response_mti(mti), {**fields, "39": RC.FORMAT_ERROR}, tpdu=reply_tpdu(tpdu), header=header)
        try:
            return [trace, Send(source, encode_terminal(reply))]
        except WireError:
            return [trace, Close(source)]

    def _answer(self, source: str, req: Message, rc: str, mac: bool = True, extra: dict[str, str] | None = None) -> Send:
        fields = {k: v for k, v in req.fields.items() if k in ("2", "3", "4", "11", "14", "22", "25", "41", "42", "49", "60", "61")}
        fields["39"] = rc
        fields["32"] = self.config.institution_id
        if extra:
            fields.update(extra)
        reply = Message(response_mti(req.mti), fields, tpdu=reply_tpdu(req.tpdu), header=req.header)
        mak = self.terminals.get(req.get(41) or "", {}).get("mak")
        use_mac = mac and mak is not None and req.mti not in ("0800", "0820")
        return Send(source, encode_terminal(reply, mac=(lambda d: self.hsm.cup_mac(mak, d)) if use_mac else None))

    def _inject_tmk(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """The operator gave a terminal a new TMK (a handle under our LMK): it must sign on again."""
        tid = str(args.get("terminal_id", ""))
        if tid not in self.config.terminals or not args.get("tmk"):
            return [Trace(f"{tid}:keys", "inject-tmk refused: unknown terminal or no key", {"tid": tid})]
        state = self._terminal_state(tid)
        state.update(tmk=args["tmk"], tmk_kcv=self.hsm.kcv(args["tmk"]).hex().upper(), signed_on=False, pik=None, mak=None)
        state.pop("last_sign_on", None)
        return [Put("terminals", tid, state), Trace(f"{tid}:keys", "TMK injected", {"tid": tid, "kcv": state["tmk_kcv"]})]

    def _sign_on(self, source: str, req: Message, f60: F60, now_ms: int) -> list[Effect]:
        tid = req["41"]
        entry = self.config.terminals[tid]
        state = self._terminal_state(tid)
        last = state.get("last_sign_on") or {}
        if last.get("trace") == req["11"] and last.get("date") == timefmt.mmdd(now_ms) and state["signed_on"]:
            # The same sign-on again (a retransmission): the same keys, or the terminal and the
            # acquirer would end up holding different ones.
            return [Trace(f"{tid}:sign-on", "repeated sign-on: same keys", {"tid": tid}),
                    self._answer(source, req, RC.APPROVED, mac=False, extra=last["reply"])]
        pik, mak = self.hsm.generate_key(), self.hsm.generate_key()
        tdk = self.hsm.generate_key() if f60.network_code == NetworkCode.SIGN_ON_WITH_DATA_KEY else None
        tmk = state.get("tmk") or entry.tmk  # a TMK injected since (acquirer/keys.py) overrides the configured one
        keys = WorkingKeys(
            self.hsm.export_key(tmk, pik),
            self.hsm.kcv(pik),
            self.hsm.export_key(tmk, mak),
            self.hsm.kcv(mak),
            self.hsm.export_key(tmk, tdk) if tdk else None,
            self.hsm.kcv(tdk) if tdk else None,
        )
        rrn = f"{self._next('rrn', 999_999_999_999):012d}"
        extra = {
            "12": timefmt.hhmmss(now_ms),
            "13": timefmt.mmdd(now_ms),
            "37": rrn,
            "60": F60("00", state["batch_no"], f60.network_code).encode(),
            "62": keys.encode(),
        }
        state.update(
            signed_on=True, pik=pik, mak=mak, tdk=tdk,
            last_sign_on={"trace": req["11"], "date": timefmt.mmdd(now_ms), "reply": extra},
        )
        return [
            Put("terminals", tid, state),
            self._put_counters(),
            Trace(f"{tid}:sign-on", "signed on", {"tid": tid, "batch": state["batch_no"]}),
            self._answer(source, req, RC.APPROVED, mac=False, extra=extra),
        ]

    def _duplicate(self, source: str, req: Message, kind: Kind, f60: F60, now_ms: int) -> list[Effect] | None:
        """The natural key (terminal, merchant, batch, trace, date, class): the same request gets the first answer."""
        rrn = self._by_trace.get((req["41"], f60.batch_no, req["11"]))
        txn = self.txns.get(rrn) if rrn else None
        if txn is None or txn["kind"] != kind.value or txn["date_mmdd"] != timefmt.mmdd(now_ms) or txn["merchant_id"] != req["42"]:
            return None
        trace = Trace(rrn, "duplicate request from terminal", {"status": txn["status"]})
        if txn["status"] == "pending":
            pending = self._pending.get(self._host_key(self.config.institution_id, txn["f7"], txn["stan"]))
            if pending is not None:
                pending.source = source  # answer on the connection the terminal uses now
            return [trace]
        if txn["status"] in ("approved", "declined", "voided"):
            return [trace, self._answer(source, req, txn.get("rc", RC.SYSTEM_MALFUNCTION), extra=self._reply_extra(txn, now_ms))]
        return [trace, self._answer(source, req, RC.DUPLICATE)]

    def _reply_extra(self, txn: dict[str, Any], now_ms: int) -> dict[str, str]:
        extra = {
            "12": timefmt.hhmmss(now_ms),
            "13": timefmt.mmdd(now_ms),
            "37": txn["rrn"],
            "44": f"{txn.get('issuer_id', ''):<11}{self.config.institution_id:<11}",
            "63": "CUP",
        }
        if txn.get("auth_code"):
            extra["38"] = txn["auth_code"]
        return extra

    def _financial(self, source: str, req: Message, kind: Kind, f60: F60, now_ms: int) -> list[Effect]:
        tid = req["41"]
        state = self._terminal_state(tid)
        if self.reversed_unknown.get(f"{tid}:{f60.batch_no}:{req['11']}") == timefmt.mmdd(now_ms):
            # Its reversal overtook it: the terminal has given it up, so it must not move money now.
            return [Trace("", "request after its own reversal: declined", {"tid": tid, "trace": req["11"]}),
                    self._answer(source, req, RC.INVALID_TRANSACTION)]
        duplicate = self._duplicate(source, req, kind, f60, now_ms)
        if duplicate is not None:
            return duplicate
        if kind is not Kind.INQUIRY and f"{tid}:{f60.batch_no}" in self.settlements:
            # A batch with a settlement on record takes nothing more (the sign-on reply that gave the
            # terminal this batch number was spoilt, or this is an old frame): sign on for the open one.
            return [Trace("", "request in a batch already settled: sign on again", {"tid": tid, "batch": f60.batch_no}),
                    self._answer(source, req, RC.SIGN_ON_AGAIN)]
        original = None
        if kind is Kind.VOID:
            f61 = parse_f61(req.get(61))
            rrn0 = self._by_trace.get((tid, f61.batch_no, f61.trace_no))
            original = self.txns.get(rrn0) if rrn0 else None
            if original is None or original["kind"] != "sale" or original["status"] not in ("approved",):
                rc = RC.INVALID_TRANSACTION if original and original["status"] == "voided" else RC.ORIGINAL_NOT_FOUND
                return [self._answer(source, req, rc)]
            if f61.batch_no != f60.batch_no or original.get("settled_in"):
                return [self._answer(source, req, RC.ORIGINAL_NOT_FOUND)]  # void works in the open batch only
            if int(req["4"]) != original["amount_fen"]:
                return [self._answer(source, req, RC.AMOUNT_DIFFERS)]
        if kind is Kind.REFUND:
            f61 = parse_f61(req.get(61))
            original = self.txns.get(req["37"].strip())
            if original is None or original["kind"] != "sale" or (f61.date_mmdd and f61.date_mmdd != original["date_mmdd"]):
                return [self._answer(source, req, RC.ORIGINAL_NOT_FOUND)]
            if original["status"] == "voided":
                return [self._answer(source, req, RC.INVALID_TRANSACTION)]
        rrn = f"{self._next('rrn', 999_999_999_999):012d}"
        stan = f"{self._next('stan', STAN_MAX):06d}"
        f7 = timefmt.transmission_time(now_ms)
        pan = req.get(2) or (req.get(35) or "").replace("D", "=").split("=")[0]
        host = self._host_request(req, kind, rrn, stan, f7, now_ms)
        if original is not None:
            host.fields["90"] = OriginalData(
                original["host_mti"], original["stan"], original["f7"], self.config.institution_id
            ).encode()
        if req.has(52):
            try:
                block = self.hsm.translate_pin(state["pik"], self.config.zpk, bytes.fromhex(req["52"]), pan)
            except PinBlockFormatError:
                return [self._answer(source, req, RC.PIN_FORMAT_ERROR)]
            host.fields["52"] = block.hex().upper()
            host.fields["53"] = req.get(53) or "2600000000000000"
        host_key = self._host_key(self.config.institution_id, f7, stan)
        txn = {
            "rrn": rrn,
            "kind": kind.value,
            "terminal_id": tid,
            "merchant_id": req["42"],
            "batch_no": f60.batch_no,
            "trace_no": req["11"],
            "pan": pan,
            "amount_fen": int(req.get(4) or 0),
            "date_mmdd": timefmt.mmdd(now_ms),
            "stan": stan,
            "f7": f7,
            "host_mti": host.mti,
            "status": "pending",
            "auth_code": "",
            "original_rrn": original["rrn"] if original else "",
            "refunded_fen": 0,
            # Upstream, whatever moved money is reversed when its answer is lost — refunds too,
            # though a terminal never reverses a refund (DOMAIN.md §3).
            "reversible": kind in (Kind.SALE, Kind.VOID, Kind.REFUND),
        }
        if kind is not Kind.INQUIRY:
            self.txns[rrn] = txn
            self._by_trace[(tid, f60.batch_no, req["11"])] = rrn
        self._pending[host_key] = _Pending(source, req, kind, rrn, host_key)
        records: list[Effect] = [self._put_counters()]
        if kind is not Kind.INQUIRY:
            records.append(Put("txns", rrn, txn))
            records += self._follow_batch(tid, f60.batch_no)
        return [
            *records,
            Send(SWITCH, self._encode_host(host)),
            SetTimer(HOST_TIMER_PREFIX + host_key, now_ms + self.config.host_timeout_ms),
            Trace(rrn, "forwarded to switch", {"kind": kind.value, "tid": tid, "pan": mask_pan(pan), "amount": req.get(4)}),
        ]

    def _host_request(self, req: Message, kind: Kind, rrn: str, stan: str, f7: str, now_ms: int) -> Message:
        merchant = self.config.merchants[req["42"]]
        f60 = parse_f60(req.get(60))
        fields = {
            "3": req["3"],
            "7": f7,
            "11": stan,
            "12": timefmt.hhmmss(now_ms),
            "13": timefmt.mmdd(now_ms),
            "18": merchant.mcc,
            "22": req["22"],
            "25": req["25"],
            "32": self.config.institution_id,
            "33": self.config.institution_id,
            "37": rrn,
            "41": req["41"],
            "42": req["42"],
            "43": merchant.name,
            "49": req.get(49) or "156",
            "60": f"{f60.batch_no}{req['11']}",
        }
        for f in ("2", "4", "14"):
            if req.has(f):
                fields[f] = req[f]
        if req.has(35):
            fields["35"] = track2_for_host(req["35"])
        mti = "0220" if kind is Kind.REFUND else "0200"
        return Message(mti, fields)

    def _echo_request(self, now_ms: int) -> bytes:
        stan = f"{self._next('stan', STAN_MAX):06d}"
        fields = {"7": timefmt.transmission_time(now_ms), "11": stan, "32": self.config.institution_id, "70": "301"}
        return self._encode_host(Message("0800", fields))

    def _encode_host(self, msg: Message) -> bytes:
        return encode_host(msg, mac=lambda d: self.hsm.retail_mac(self.config.zak, d))

    @staticmethod
    def _host_key(institution: str, f7: str, stan: str) -> str:
        return f"{institution.lstrip('0')}:{f7}:{stan}"

    def _terminal_reversal(self, source: str, req: Message, f60: F60, now_ms: int) -> list[Effect]:
        """Acknowledged once stored; the switch hears of it by store and forward."""
        rrn = self._by_trace.get((req["41"], f60.batch_no, req["11"]))
        txn = self.txns.get(rrn) if rrn else None
        effects: list[Effect] = [Trace(rrn or "", "reversal from terminal", {"tid": req["41"], "trace": req["11"], "reason": req.get(39)})]
        if txn is not None and txn["status"] in ("approved", "pending", "declined-late"):
            if txn["status"] == "approved" and txn["kind"] == "void":
                original = self.txns.get(txn["original_rrn"])
                if original is not None and original["status"] == "voided":
                    original["status"] = "approved"
                    effects.append(Put("txns", original["rrn"], original))
            was_pending = txn["status"] == "pending"
            txn["status"] = "reversed"
            effects.append(Put("txns", rrn, txn))
            if was_pending:
                pending = self._pending.pop(self._host_key(self.config.institution_id, txn["f7"], txn["stan"]), None)
                if pending is not None:
                    effects.append(CancelTimer(HOST_TIMER_PREFIX + pending.host_key))
            effects += self._reverse_upstream(txn, now_ms)
        elif txn is None:
            marker = f"{req['41']}:{f60.batch_no}:{req['11']}"
            self.reversed_unknown[marker] = timefmt.mmdd(now_ms)
            effects.append(Put("reversed_unknown", marker, {"date_mmdd": timefmt.mmdd(now_ms)}))
        # Reversing an unknown or already reversed transaction is acknowledged and does nothing.
        effects.append(self._answer(source, req, RC.APPROVED))
        return effects

    def _reverse_upstream(self, txn: dict[str, Any], now_ms: int) -> list[Effect]:
        key = self._host_key(self.config.institution_id, txn["f7"], txn["stan"])
        if key in self.saf:
            return []
        msg = Message(
            "0400",
            {
                "2": txn["pan"],
                "3": "000000" if txn["kind"] == "sale" else "200000",
                "4": f"{txn['amount_fen']:012d}",
                "7": txn["f7"],
                "11": txn["stan"],
                "32": self.config.institution_id,
                "37": txn["rrn"],
                "39": RC.UNKNOWN_OUTCOME,
                "41": txn["terminal_id"],
                "42": txn["merchant_id"],
                "49": "156",
                "90": OriginalData(txn["host_mti"], txn["stan"], txn["f7"], self.config.institution_id).encode(),
            },
        )
        if txn["status"] == "pending":
            txn["status"] = "reversed"
        return [Put("txns", txn["rrn"], txn)] + self.saf.enqueue(key, msg, self._encode_host, now_ms)

    # -- settlement (结算) ---------------------------------------------------

    def _settlement(self, source: str, req: Message, f60: F60, now_ms: int) -> list[Effect]:
        tid, batch = req["41"], f60.batch_no
        key = f"{tid}:{batch}"
        rec = self.settlements.get(key)
        if rec is not None:  # the same settlement again (its answer was lost): the same answer
            return [self._answer(source, req, RC.APPROVED, extra={"48": rec["reply_f48"]})]
        follow = self._follow_batch(tid, batch)  # the batch the terminal settles is the one it sold in
        theirs, _foreign = parse_settlement_totals(req.get(48))
        ours = settlement.batch_totals(self._settlement_txns(tid, batch))
        result = BALANCED if ours == theirs else UNBALANCED
        f48 = req["48"]
        reply_f48 = f48[:30] + result + f48[31:61] + BALANCED + f48[62:]
        rec = {
            "terminal_id": tid,
            "merchant_id": req["42"],
            "batch_no": batch,
            "result": result,
            "ours": asdict(ours),
            "theirs": asdict(theirs),
            "uploaded": {},
            "status": "uploading",
            "reply_f48": reply_f48,
        }
        self.settlements[key] = rec
        effects: list[Effect] = [*follow, Trace(f"{tid}:{batch}", "settlement", {"result": "balanced" if result == "1" else "unbalanced"})]
        if result == BALANCED:
            effects += self._close_batch(rec, now_ms)
        effects.append(Put("settlements", key, rec))
        return effects + [self._answer(source, req, RC.APPROVED, extra={"48": reply_f48})]

    def _batch_upload(self, source: str, req: Message, f60: F60, now_ms: int) -> list[Effect]:
        """批上送: the terminal's transactions, so the difference can be reported; the end message closes the batch."""
        key = f"{req['41']}:{f60.batch_no}"
        rec = self.settlements.get(key)
        if rec is None:
            return [self._answer(source, req, RC.ORIGINAL_NOT_FOUND)]
        effects: list[Effect] = []
        if f60.network_code == NetworkCode.BATCH_UPLOAD_END:
            if rec["status"] != "settled":
                theirs = {f"{i['type']}:{i['trace_no']}": i for i in rec["uploaded"].values()}
                ours = {
                    f"{BATCH_TYPE_CODES[t['kind']]}:{t['trace_no']}": t
                    for t in self._settlement_txns(rec["terminal_id"], rec["batch_no"])
                    if t["status"] in ("approved", "voided")
                }
                rec["differences"] = {
                    "terminal_only": sorted(set(theirs) - set(ours)),
                    "acquirer_only": sorted(set(ours) - set(theirs)),
                }
                effects += self._close_batch(rec, now_ms)
                effects.append(Trace(key, "batch upload ended: settled on the acquirer's record", rec["differences"]))
        else:
            try:
                items = parse_batch_items(req["48"])
            except WireError as e:
                return [self._answer(source, req, RC.FORMAT_ERROR), Trace(key, "bad batch upload", {"error": str(e)})]
            for item in items:
                rec["uploaded"][f"{item['type']}:{item['trace_no']}"] = item
        return effects + [Put("settlements", key, rec), self._answer(source, req, RC.APPROVED)]

    def _follow_batch(self, tid: str, batch: str) -> list[Effect]:
        """The batch number is the terminal's own (on its receipts, in F60.2 of all it sends): when a
        transaction or a settlement comes in another batch than the one on our record — a sign-on
        reply spoilt on its way, a terminal renumbered — our record follows the terminal."""
        state = self._terminal_state(tid)
        if state["batch_no"] == batch:
            return []
        was, state["batch_no"] = state["batch_no"], batch
        return [Put("terminals", tid, state), Trace(f"{tid}:{batch}", "open batch follows the terminal's", {"tid": tid, "was": was})]

    def _settlement_txns(self, tid: str, batch: str) -> list[dict[str, Any]]:
        """What settling ``batch`` settles: the terminal's transactions in it, and those it left in
        batches that no settlement covers (it moved past them: a terminal has one open batch, and
        settles it whole), so an approved sale is never left unpaid. None already settled: each
        transaction records the settlement that paid it (``settled_in``), and is paid once."""
        return [
            t for t in self.txns.values()
            if t["terminal_id"] == tid and not t.get("settled_in")
            and (t["batch_no"] == batch or f"{tid}:{t['batch_no']}" not in self.settlements)
        ]

    def _next_batch(self, tid: str, batch: str) -> str:
        """The batch after ``batch`` that has never been settled: a terminal renumbered back to an
        earlier batch must not be sent at its next sign-on to one that takes nothing more."""
        n = int(batch)
        for _ in range(BATCH_MAX):
            n = n % BATCH_MAX + 1
            if f"{tid}:{n:06d}" not in self.settlements:
                return f"{n:06d}"
        raise AssertionError(f"terminal {tid}: every batch number has been settled")

    def _close_batch(self, rec: dict[str, Any], now_ms: int) -> list[Effect]:
        """Settle on the acquirer's own record: credit the merchant net of its fee, present to the
        scheme, open the terminal's next batch."""
        tid, batch = rec["terminal_id"], rec["batch_no"]
        key = f"{tid}:{batch}"
        txns = self._settlement_txns(tid, batch)
        merchant = self.config.merchants[rec["merchant_id"]]
        credit = settlement.merchant_credit(txns, merchant.fee_rate_bp)
        batch_key = f"{self.config.institution_id}:{tid}:{batch}"
        transfers = settlement.credit_transfers(batch_key, merchant.account_id, credit, derive_id)
        results = self.ledger.create_transfers(transfers, now_ms) if transfers else []
        assert all(r in (CreateTransferResult.OK, CreateTransferResult.EXISTS) for r in results), results
        rec.update(status="settled", credit=asdict(credit), settled_mmdd=timefmt.mmdd(now_ms))
        effects: list[Effect] = []
        for t in txns:
            # Voided sales and their voids cancel out (the hold was released online): not presented.
            if t["status"] == "approved" and t["kind"] in ("sale", "refund"):
                p = settlement.presentment(t, self.config.institution_id, rec["settled_mmdd"])
                effects.append(Put("presentments", t["rrn"], p))
            if t["status"] in ("approved", "voided"):
                assert not t.get("settled_in"), (t["rrn"], t["settled_in"])  # paid once
                t["settled_in"] = key
                effects.append(Put("txns", t["rrn"], t))
        left = sorted(t["rrn"] for t in txns if t["batch_no"] != batch and t.get("settled_in") == key)
        if left:
            rec["from_other_batches"] = left
            effects.append(Trace(key, "settled with transactions the terminal left in other batches", {"rrns": left}))
        state = self._terminal_state(tid)
        state["batch_no"] = self._next_batch(tid, batch)
        effects.append(Put("terminals", tid, state))
        effects.append(Trace(f"{tid}:{batch}", "batch settled", {"merchant": merchant.merchant_id, **asdict(credit)}))
        return effects

    # -- presentment to the scheme -------------------------------------------

    def _present(self, effects: list[Effect], now_ms: int) -> list[Effect]:
        """Presentment records written by this input (a settled batch, an approved manual credit)
        leave in one presentment file for the switch, published once they are committed."""
        new = [e for e in effects if isinstance(e, Put) and e.table == "presentments" and "file" not in e.value]
        if not new:
            return effects
        day = timefmt.local(now_ms).strftime("%Y%m%d")
        name = f"P{self.config.institution_id}_{day}_{self._next('presentment_file', 999_999):06d}.csv"
        rows = [dict(e.value, file=name) for e in new]
        out = [e for e in effects if not (isinstance(e, Put) and e.table == "presentments" and "file" not in e.value)]
        out += [Put("presentments", e.key, row) for e, row in zip(new, rows)]
        out += [
            Put("presentment_files", name, {"created_ms": now_ms, "count": len(rows)}),
            self._put_counters(),
            Publish(clearing_files.SWITCH_BOX, name, clearing_files.to_csv(rows, clearing_files.PRESENTMENT_FIELDS)),
            Trace("", "presentment file published", {"file": name, "count": len(rows)}),
        ]
        return out

    def _present_again(self, tables: dict[str, dict[str, dict[str, Any]]], now_ms: int) -> list[Effect]:
        """After a restart, the recent presentment files again: one may have been committed and
        never written. The switch ignores a file it has already cleared."""
        recent = {
            name for name, f in tables.get("presentment_files", {}).items()
            if now_ms - f["created_ms"] <= REPUBLISH_PRESENTMENTS_MS
        }
        by_file: dict[str, list[dict[str, Any]]] = {}
        for p in tables.get("presentments", {}).values():
            if p.get("file") in recent:
                by_file.setdefault(p["file"], []).append(p)
        return [
            Publish(clearing_files.SWITCH_BOX, name, clearing_files.to_csv(rows, clearing_files.PRESENTMENT_FIELDS))
            for name, rows in sorted(by_file.items())
        ]

    # -- host leg -----------------------------------------------------------

    def _from_switch(self, frame: bytes, now_ms: int) -> list[Effect]:
        heard = self.switch_link.heard(now_ms)
        try:
            reply = decode_host(frame)
        except WireError as e:
            return [Trace("", "unreadable frame from switch", {"error": str(e)})]
        if not self.hsm.verify_retail_mac(self.config.zak, reply.mac_input(), reply.mac_value()):
            return [Trace(reply.get(37) or "", "bad MAC from switch: dropped", {"mti": reply.mti})]
        if reply.mti in ("0810", "0830"):
            return heard
        key = self._host_key(reply.get(32) or "", reply.get(7) or "", reply.get(11) or "")
        if reply.mti in ("0410", "0430"):
            return heard + self.saf.on_answer(key, reply.get(39))
        pending = self._pending.pop(key, None)
        if pending is None:
            return heard + self._late_reply(key, reply, now_ms)
        return heard + [CancelTimer(HOST_TIMER_PREFIX + key)] + self._complete(pending, reply, now_ms)

    def _complete(self, p: _Pending, reply: Message, now_ms: int) -> list[Effect]:
        rc = reply.get(39) or RC.SYSTEM_MALFUNCTION
        effects: list[Effect] = []
        txn = self.txns.get(p.rrn)
        if rc == RC.MAC_ERROR:
            # A MAC error between hosts answers one copy of the request; another copy may have got
            # through and been approved. The outcome is unknown: the terminal hears 96 (its own keys
            # are fine) and what might have moved money is reversed upstream.
            effects.append(Trace(p.rrn, "MAC error on the host leg: outcome unknown, reversed", {}))
            if txn is not None and txn["reversible"]:
                effects += self._reverse_upstream(txn, now_ms)
            return effects + [self._answer(p.source, p.request, RC.SYSTEM_MALFUNCTION, extra={"37": p.rrn})]
        if txn is not None:
            txn["status"] = "approved" if rc == RC.APPROVED else "declined"
            txn["auth_code"] = reply.get(38) or ""
            txn["rc"] = rc
            txn["issuer_id"] = reply.get(100) or ""
            effects.append(Put("txns", p.rrn, txn))
            if rc == RC.APPROVED and txn["original_rrn"]:
                original = self.txns[txn["original_rrn"]]
                if p.kind is Kind.VOID:
                    original["status"] = "voided"
                elif p.kind is Kind.REFUND:
                    original["refunded_fen"] += txn["amount_fen"]
                effects.append(Put("txns", original["rrn"], original))
        extra = self._reply_extra(
            txn or {"rrn": p.rrn, "issuer_id": reply.get(100) or "", "auth_code": reply.get(38) or ""}, now_ms
        )
        if reply.has(54) and p.kind is Kind.INQUIRY:
            extra["54"] = reply["54"]
        effects.append(Trace(p.rrn, "answered terminal", {"rc": rc, "kind": p.kind.value}))
        effects.append(self._answer(p.source, p.request, rc, extra=extra))
        return effects

    def _late_reply(self, key: str, reply: Message, now_ms: int) -> list[Effect]:
        """A reply to nothing in flight: a duplicate of one already answered is ignored; a late
        approval of one we gave up on is undone upstream (its reversal was queued at the timeout;
        queueing again is harmless, reversals being idempotent)."""
        rrn = (reply.get(37) or "").strip()
        txn = self.txns.get(rrn)
        effects: list[Effect] = [Trace(rrn, "late or repeated reply from switch", {"rc": reply.get(39)})]
        if txn is not None and reply.get(39) == RC.APPROVED and txn["status"] in ("reversed", "timed-out") and txn["reversible"]:
            effects += self._reverse_upstream(txn, now_ms)
        return effects

    def _host_timeout(self, key: str, now_ms: int) -> list[Effect]:
        p = self._pending.pop(key, None)
        if p is None:
            return []
        effects: list[Effect] = [Trace(p.rrn, "switch timed out", {})]
        txn = self.txns.get(p.rrn)
        if txn is not None:
            if txn["reversible"]:
                effects += self._reverse_upstream(txn, now_ms)
            else:
                txn["status"] = "timed-out"
                effects.append(Put("txns", p.rrn, txn))
        extra = {"37": p.rrn}
        effects.append(self._answer(p.source, p.request, RC.ISSUER_TIMED_OUT, extra=extra))
        return effects
