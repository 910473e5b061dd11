"""The scheme switch's core (银联中心): routes by BIN, translates PINs, relays.

Acquirers connect to the switch; the switch connects to each issuer. A
request is routed by the longest BIN prefix of its card number (15 when no
issuer owns it, 91 when the issuer is not connected), its PIN block
translated from the acquirer's zone PIN key to the issuer's, its MAC
checked under the acquirer's zone MAC key and made anew under the issuer's.
Replies go back to the connection the request came from; an issuer that does
not answer in time gets 98 sent downstream and a reversal by store and forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any, Iterator

from ..clearing_files import CLEARING_FILE, CUTOFF_TIMER, ClearingRates, next_cutoff_ms
from ..effects import (
    CancelTimer, Command, Effect, LedgerWrite, LinkDown, LinkUp, Put, Received, Send, SetTimer, TimerFired, Trace, mask_pan,
)
from ..ledger import Ledger
from ..forwarding import TIMER_PREFIX, ForwardingLimits, StoreAndForward
from ..links import LinkLimits, LinkWatch
from .. import timefmt
from ..security import PinBlockFormatError, SecurityModule
from ..wire import RC, Message, WireError, response_mti
from ..wire.codec import decode_host, encode_host
from ..wire.codes import Kind, host_kind, is_request
from ..wire.fields import OriginalData, parse_f90, parse_track2
from . import clearing

ISSUER_LINK_PREFIX = "issuer:"
TIMER_ISSUER = "issuer-timeout:"


@dataclass(frozen=True)
class ZoneKeys:
    zpk: str  # zone PIN key (handle)
    zak: str  # zone MAC key (handle)


@dataclass(frozen=True)
class IssuerRoute:
    name: str
    institution_id: str
    bins: tuple[str, ...]
    keys: ZoneKeys


@dataclass(frozen=True)
class SwitchConfig:
    institution_id: str
    acquirers: dict[str, ZoneKeys]  # acquiring institution id (F32) -> zone keys
    issuers: dict[str, IssuerRoute]
    issuer_timeout_ms: int = 10_000  # shorter than the acquirer's, so 98 flows back in time
    forwarding: ForwardingLimits = ForwardingLimits()
    link: LinkLimits = LinkLimits()
    cutoff: time = time(23, 0)  # the daily cut-off of clearing, China Standard Time
    rates: ClearingRates = field(default_factory=ClearingRates)
    clearing_slice_items: int = clearing.SLICE_ITEMS  # items a cut-off clears in one input (docs/clearing.md)


@dataclass
class _InFlight:
    source: str
    issuer: str
    request: Message


class Switch:
    def __init__(self, config: SwitchConfig, hsm: SecurityModule, ledger: Ledger | None = None):
        self.config = config
        self.hsm = hsm
        self.ledger = ledger or Ledger()
        # Approved financial requests by host key (acquirer:F7:STAN): what clearing matches presentments with.
        self.auth_log: dict[str, dict[str, Any]] = {}
        self.files_in: dict[str, dict[str, Any]] = {}  # presentment files by name
        self.cycle: dict[str, Any] = clearing.new_cycle()  # the clearing cycle open until the next cut-off
        self.cycle_texts: dict[str, str] = {}  # the open cycle's presentment files, read at the cut-off
        self.last_closed_files: list[str] = []  # the files of the last cycle closed (their texts are kept)
        # The cycle being cleared after its cut-off, a slice an input (None between cut-offs): its
        # files' texts, and its items still to clear, read from them as slices take them (clearing.clear_slice).
        self.closing: dict[str, Any] | None = None
        self.closing_texts: dict[str, str] = {}
        self.closing_items: Iterator[list[Any]] | None = None
        self.counters: dict[str, int] = {"clearing_file": 0}
        self.closed_cutoff_ms: int | None = None
        self.cutoff_ms = 0  # the cut-off that closes the open cycle
        self.connected: set[str] = set()
        self._routes = sorted(
            ((b, name) for name, r in config.issuers.items() for b in r.bins), key=lambda x: len(x[0]), reverse=True
        )
        self._in_flight: dict[str, _InFlight] = {}
        self.saf = {name: StoreAndForward(f"saf_{name}", ISSUER_LINK_PREFIX + name, config.forwarding) for name in config.issuers}
        self.links = {
            name: LinkWatch(ISSUER_LINK_PREFIX + name, config.link, lambda now, n=name: self._echo_request(n, now))
            for name in config.issuers
        }
        self._echo_stan = 0

    def restore(self, tables: dict[str, dict[str, dict[str, Any]]], now_ms: int) -> list[Effect]:
        self.auth_log = {k: dict(v) for k, v in tables.get("auth_log", {}).items()}
        self.files_in = {k: dict(v) for k, v in tables.get("clearing_files_in", {}).items()}
        self.cycle = dict(tables.get("clearing_cycle", {}).get("open") or clearing.new_cycle())
        texts = tables.get(clearing.FILE_TEXTS, {})
        self.cycle_texts = {name: texts[name]["text"] for name in self.cycle["files"]}
        clearing.mark_presented(self.auth_log, tables.get(clearing.PRESENTED, {}))
        self.counters.update(tables.get("state", {}).get("counters", {}))
        self.closed_cutoff_ms = tables.get("state", {}).get("cutoff", {}).get("closed_cutoff_ms")
        effects: list[Effect] = []
        for saf in self.saf.values():
            effects += saf.restore(tables.get(saf.table, {}), now_ms)
        clearing.open_books(self, now_ms)
        changes = self.ledger.take_changes()
        if changes:
            effects.insert(0, LedgerWrite(changes))
        days = tables.get("clearing_days", {})
        if days:  # the last cycle's files and report again: they may have been committed and never written
            self.last_closed_files = list(days[max(days)]["files"])
            effects += clearing.forward_again(self, days[max(days)], texts)
            effects += clearing.report(self.config.institution_id, days[max(days)])
        closing = tables.get("clearing_cycle", {}).get(clearing.CLOSING)
        if closing:  # a cut-off was being cleared: it goes on (the next cut-off is armed when it is done)
            return effects + clearing.resume_closing(self, closing, tables.get(clearing.SLICES, {}), texts, now_ms)
        return effects + self._arm_cutoff(now_ms)

    def _arm_cutoff(self, now_ms: int) -> list[Effect]:
        # After the last cut-off closed (a missed one fires at once, so no day is skipped).
        self.cutoff_ms = next_cutoff_ms(self.closed_cutoff_ms if self.closed_cutoff_ms is not None else now_ms, self.config.cutoff)
        return [SetTimer(CUTOFF_TIMER, self.cutoff_ms)]

    def next_file_no(self) -> int:
        self.counters["clearing_file"] = self.counters["clearing_file"] % 999_999 + 1
        return self.counters["clearing_file"]

    def route(self, pan: str) -> str | None:
        for prefix, name in self._routes:
            if pan.startswith(prefix):
                return name
        return None

    def handle(self, event, now_ms: int) -> list[Effect]:
        effects = self._handle(event, now_ms)
        changes = self.ledger.take_changes()
        return [LedgerWrite(changes), *effects] if changes else effects

    def _handle(self, event, now_ms: int) -> list[Effect]:
        if isinstance(event, Command) and event.name == CLEARING_FILE:
            return clearing.take_file(self, str(event.args["name"]), str(event.args["text"]), now_ms)
        if isinstance(event, TimerFired) and event.key in (CUTOFF_TIMER, clearing.SLICE_TIMER):
            if event.key == CUTOFF_TIMER and self.closing is None:
                effects = clearing.start_closing(self, self.cutoff_ms, now_ms)
            elif event.key == clearing.SLICE_TIMER and self.closing is not None:
                effects = clearing.clear_slice(self, now_ms)
            else:
                return []
            return effects if self.closing is not None else effects + self._arm_cutoff(now_ms)
        if isinstance(event, LinkUp) and event.link.startswith(ISSUER_LINK_PREFIX):
            name = event.link[len(ISSUER_LINK_PREFIX) :]
            if name not in self.config.issuers:
                return []
            self.connected.add(name)
            # Reversals owed to this issuer go out now rather than at their next retry.
            return [Trace("", "issuer connected", {"issuer": name})] + self.links[name].link_up(now_ms) + self.saf[name].kick(now_ms)
        if isinstance(event, LinkDown) and event.link.startswith(ISSUER_LINK_PREFIX):
            name = event.link[len(ISSUER_LINK_PREFIX) :]
            if name not in self.config.issuers:
                return []
            self.connected.discard(name)
            return [Trace("", "issuer disconnected", {"issuer": name})] + self.links[name].link_down()
        if isinstance(event, Received):
            if event.source.startswith(ISSUER_LINK_PREFIX):
                return self._from_issuer(event.source[len(ISSUER_LINK_PREFIX) :], event.frame, now_ms)
            return self._from_acquirer(event.source, event.frame, now_ms)
        if isinstance(event, TimerFired):
            for watch in self.links.values():
                if watch.owns(event.key):
                    return watch.on_timer(event.key, now_ms)
            if event.key.startswith(TIMER_ISSUER):
                return self._issuer_timeout(event.key[len(TIMER_ISSUER) :], now_ms)
            if event.key.startswith(TIMER_PREFIX):
                for name, saf in self.saf.items():
                    if event.key[len(TIMER_PREFIX) :] in saf:
                        return saf.on_timer(event.key, self._encoder(name), now_ms)
        return []

    def _encoder(self, issuer: str):
        zak = self.config.issuers[issuer].keys.zak
        return lambda msg: encode_host(msg, mac=lambda d: self.hsm.retail_mac(zak, d))

    def _echo_request(self, issuer: str, now_ms: int) -> bytes:
        self._echo_stan = self._echo_stan % 999_999 + 1
        fields = {
            "7": timefmt.transmission_time(now_ms),
            "11": f"{self._echo_stan:06d}",
            "70": "301",
            "100": self.config.issuers[issuer].institution_id,
        }
        return self._encoder(issuer)(Message("0800", fields))

    def _reply_to_acquirer(self, source: str, msg: Message, rc: str, extra: dict[str, str] | None = None) -> Send:
        keys = self.config.acquirers[msg["32"]]
        fields = {k: v for k, v in msg.fields.items() if k not in ("35", "52", "53", "64", "128", "90")}
        fields["39"] = rc
        fields.update(extra or {})
        reply = Message(response_mti(msg.mti), fields)
        return Send(source, encode_host(reply, mac=lambda d: self.hsm.retail_mac(keys.zak, d)))

    @staticmethod
    def _key(msg: Message) -> str:
        return f"{(msg.get(32) or '').lstrip('0')}:{msg.get(7)}:{msg.get(11)}"

    def _from_acquirer(self, source: str, frame: bytes, now_ms: int) -> list[Effect]:
        try:
            msg = decode_host(frame)
        except WireError as e:
            return [Trace("", "unreadable frame from acquirer", {"error": str(e), "source": source})]
        if not is_request(msg.mti):
            return [Trace("", "not a request from an acquirer: dropped", {"mti": msg.mti})]
        keys = self.config.acquirers.get(msg.get(32) or "")
        if keys is None:
            return [Trace("", "unknown acquiring institution: dropped", {"f32": msg.get(32)})]
        if not self.hsm.verify_retail_mac(keys.zak, msg.mac_input(), msg.mac_value()):
            return [Trace(msg.get(37) or "", "bad MAC from acquirer", {}), self._reply_to_acquirer(source, msg, RC.MAC_ERROR)]
        try:
            return self._acquirer_request(source, msg, keys, now_ms)
        except WireError as e:
            return [Trace("", "format error", {"error": str(e)}), self._reply_to_acquirer(source, msg, RC.FORMAT_ERROR)]

    def _acquirer_request(self, source: str, msg: Message, keys: ZoneKeys, now_ms: int) -> list[Effect]:
        kind = host_kind(msg.mti, msg.get(3))
        lifecycle = (msg.get(37) or "").strip()
        if kind is Kind.ECHO:
            return [self._reply_to_acquirer(source, msg, RC.APPROVED)]
        if kind is None:
            return [self._reply_to_acquirer(source, msg, RC.FUNCTION_NOT_SUPPORTED)]
        pan = msg.get(2)
        if not pan and msg.has(35):
            try:
                pan = parse_track2(msg["35"]).pan
            except WireError:
                return [self._reply_to_acquirer(source, msg, RC.FORMAT_ERROR)]
        issuer = self.route(pan or "")
        if issuer is None:
            return [Trace(lifecycle, "no issuer for BIN", {"pan": mask_pan(pan)}), self._reply_to_acquirer(source, msg, RC.NO_SUCH_ISSUER)]
        route = self.config.issuers[issuer]
        if kind is Kind.REVERSAL:
            # Acknowledged once stored; the issuer hears of it by store and forward.
            fwd = Message("0400", {k: v for k, v in msg.fields.items() if k not in ("64", "128")})
            fwd.fields["100"] = route.institution_id
            effects = self.saf[issuer].enqueue(self._key(msg), fwd, self._encoder(issuer), now_ms)
            effects += self._log_reversal(msg)
            return [
                *effects,
                Trace(lifecycle, "reversal stored for issuer", {"issuer": issuer}),
                self._reply_to_acquirer(source, msg, RC.APPROVED),
            ]
        if issuer not in self.connected:
            return [Trace(lifecycle, "issuer not connected", {"issuer": issuer}), self._reply_to_acquirer(source, msg, RC.ISSUER_UNAVAILABLE)]
        fwd = Message(msg.mti, {k: v for k, v in msg.fields.items() if k not in ("64", "128")})
        fwd.fields["100"] = route.institution_id
        if msg.has(52):
            try:
                block = self.hsm.translate_pin(keys.zpk, route.keys.zpk, bytes.fromhex(msg["52"]), pan or "")
            except PinBlockFormatError:
                return [self._reply_to_acquirer(source, msg, RC.PIN_FORMAT_ERROR)]
            fwd.fields["52"] = block.hex().upper()
        key = self._key(msg)
        self._in_flight[key] = _InFlight(source, issuer, msg)
        return [
            Send(ISSUER_LINK_PREFIX + issuer, self._encoder(issuer)(fwd)),
            SetTimer(TIMER_ISSUER + key, now_ms + self.config.issuer_timeout_ms),
            Trace(lifecycle, "routed", {"issuer": issuer, "pan": mask_pan(pan), "mti": msg.mti}),
        ]

    def _from_issuer(self, issuer: str, frame: bytes, now_ms: int) -> list[Effect]:
        if issuer not in self.config.issuers:
            return []
        heard = self.links[issuer].heard(now_ms)
        try:
            reply = decode_host(frame)
        except WireError as e:
            return heard + [Trace("", "unreadable frame from issuer", {"error": str(e), "issuer": issuer})]
        zak = self.config.issuers[issuer].keys.zak
        if not self.hsm.verify_retail_mac(zak, reply.mac_input(), reply.mac_value()):
            return heard + [Trace(reply.get(37) or "", "bad MAC from issuer: dropped", {"issuer": issuer})]
        if reply.mti in ("0810", "0830"):
            return heard
        key = self._key(reply)
        if reply.mti in ("0410", "0430"):
            return heard + self.saf[issuer].on_answer(key, reply.get(39))
        flight = self._in_flight.pop(key, None)
        lifecycle = (reply.get(37) or "").strip()
        if flight is None:
            # Late: the reversal was queued when the timer fired; nothing more to do but record it.
            return heard + [Trace(lifecycle, "late reply from issuer", {"issuer": issuer, "rc": reply.get(39)})]
        extra = {f: reply[f] for f in ("38", "54", "100") if reply.has(f)}
        return heard + self._log_approval(key, flight, reply) + [
            CancelTimer(TIMER_ISSUER + key),
            Trace(lifecycle, "issuer answered", {"issuer": issuer, "rc": reply.get(39)}),
            self._reply_to_acquirer(flight.source, flight.request, reply.get(39) or RC.SYSTEM_MALFUNCTION, extra),
        ]

    # -- the authorization log: what clearing matches presentments with ----------------------

    def _log_approval(self, key: str, flight: _InFlight, reply: Message) -> list[Effect]:
        kind = host_kind(flight.request.mti, flight.request.get(3))
        if reply.get(39) != RC.APPROVED or kind not in (Kind.SALE, Kind.VOID, Kind.REFUND):
            return []
        req = flight.request
        entry: dict[str, Any] = {
            "kind": kind.value,
            "lifecycle": (req.get(37) or "").strip(),
            "issuer": flight.issuer,
            "amount_fen": int(req.get(4) or 0),
            "auth_code": reply.get(38) or "",
            "status": "approved",
        }
        effects: list[Effect] = []
        if kind is not Kind.SALE:
            try:
                entry["original"] = parse_f90(req.get(90)).key
            except WireError:
                entry["original"] = ""
        if self.auth_log.pop(f"reversal:{key}", None) is not None:
            entry["status"] = "reversed"  # its reversal came first
            effects.append(Put("auth_log", f"reversal:{key}", {"status": "matched"}))
        self.auth_log[key] = entry
        effects.append(Put("auth_log", key, entry))
        sale = self.auth_log.get(entry.get("original", ""))
        if kind is Kind.VOID and entry["status"] == "approved" and sale is not None:
            sale["status"] = "voided"
            sale["void_key"] = key
            effects.append(Put("auth_log", entry["original"], sale))
        return effects

    def _log_reversal(self, msg: Message) -> list[Effect]:
        try:
            key = parse_f90(msg.get(90)).key
        except WireError:
            key = self._key(msg)
        entry = self.auth_log.get(key)
        if entry is None:
            marker = {"status": "reversal-first"}
            self.auth_log[f"reversal:{key}"] = marker
            return [Put("auth_log", f"reversal:{key}", marker)]
        if entry["status"] != "approved":
            return []
        entry["status"] = "reversed"
        effects: list[Effect] = [Put("auth_log", key, entry)]
        sale = self.auth_log.get(entry.get("original", ""))
        if entry["kind"] == "void" and sale is not None and sale["status"] == "voided":
            sale["status"] = "approved"  # a reversed void: the sale stands again
            effects.append(Put("auth_log", entry["original"], sale))
        return effects

    def _reversal_for(self, issuer: str, request: Message) -> Message:
        fields = {k: v for k, v in request.fields.items() if k in ("2", "3", "4", "7", "11", "32", "37", "41", "42", "49")}
        fields["39"] = RC.UNKNOWN_OUTCOME
        fields["90"] = OriginalData(request.mti, request["11"], request["7"], request["32"]).encode()
        fields["100"] = self.config.issuers[issuer].institution_id
        return Message("0400", fields)

    def _issuer_timeout(self, key: str, now_ms: int) -> list[Effect]:
        flight = self._in_flight.pop(key, None)
        if flight is None:
            return []
        kind = host_kind(flight.request.mti, flight.request.get(3))
        effects: list[Effect] = [Trace((flight.request.get(37) or "").strip(), "issuer timed out", {"issuer": flight.issuer})]
        if kind in (Kind.SALE, Kind.VOID, Kind.REFUND):
            rev = self._reversal_for(flight.issuer, flight.request)
            effects += self.saf[flight.issuer].enqueue(key, rev, self._encoder(flight.issuer), now_ms)
        effects.append(self._reply_to_acquirer(flight.source, flight.request, RC.ISSUER_TIMED_OUT))
        return effects
