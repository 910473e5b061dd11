#!/usr/bin/env python3
"""Clearing and hold expiry at scale, on SQLite: prints figures; not a test.

    python bench/clearing_bench.py                 # 1,000,000 presentments and 1,000,000 holds
    python bench/clearing_bench.py --quick         # 100,000 of each
    python bench/clearing_bench.py --count 300000 --files 10 --profile expiry

One day of N approved sales, the same in every process (deterministic): the
switch's authorization log, the acquirer's presentments of them, and the
issuer's holds. The network is a real config (posnet.sim.scenario.network_for:
one acquirer, one issuer, ``--cards`` cards, every card with a phone so every
money event has an SMS), each core built as posnet.runtime.parties does it
(posnet.config, a SecurityModule with its LMK in the party's folder, a
PartyStore on SQLite, WAL, synchronous=FULL).

A setup process (not timed) writes the stores the phases start from: the
switch's, its auth_log holding the N approved sales as Switch._log_approval
writes them, with the acquirer's presentment files (CSV, ``to_csv`` of
``acquirer.settlement.presentment`` rows; ``--files`` of them, N rows in
all) in the switch's box; and the issuer's, N holds standing, placed
directly (the ledger's create_transfers, each auth as ``Issuer._sale``
leaves it; no SMS of the holds, long delivered), copied for the second
issuer phase. Each phase then runs in a process of its own, as a party
started on that store (``load_ledger`` + ``restore``, then ``gc.collect();
gc.freeze()`` as ``runtime.parties.serve`` does), each timed on its own:

1. switch, presentment files: each file ``Switch.handle(Command(CLEARING_FILE))``
   + ``PartyStore.commit`` of its records.
2. switch, cut-off: ``Switch.handle(TimerFired(CUTOFF_TIMER))`` at the
   cut-off, then ``TimerFired(SLICE_TIMER)`` until the cycle is closed, each
   slice committed and its clearing file written (as ``PartyNode._execute``
   does) before the next: matching, fees, booking, the issuer's files, net
   settlement, the report.
3. issuer, posting: the switch's clearing files as they appear in the
   issuer's box, taken as the runtime's box watch takes them (one at a time,
   at once while files wait, every ``POLL_INTERVAL_S`` when none does), each ``Issuer.handle(Command(CLEARING_FILE))``
   + commit, until all N are posted.
4. issuer, expiry sweep: 49 h after the last hold,
   ``Issuer.handle(TimerFired("hold-expiry"))`` + commit, a slice an input
   (one SMS outbox record per slice).

Phases 2 and 3 run at once, in two processes, as the switch and the issuer
do: the issuer posts a slice's file while the switch clears the next. The
issuer's process signals when it has started on its store; the switch's
cut-off starts then. "Clearing" is the wall time from the cut-off to the
issuer's commit of its last posting (both processes read one monotonic
clock); each phase's own handle and commit times are printed as well.

``--no-restart`` sets the day up in the phase's own process and times the
core that did it (no restart, no freeze). After the commit, the runtime's
output of the effects (trace lines to trace.jsonl, clearing files written
and fsynced, by ``PartyNode._execute``) is timed apart: it is not in the
phase's figure.

Each phase prints wall time, CPU time (the process's), resident memory
before and its peak during the phase (VmHWM, reset before the phase), and
checks what it did (every hold posted or released, positions summing to
zero with the scheme's fees, the records in the store), so a fast wrong
result cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import auth_bench  # noqa: E402  (--at REV, and how a run names its machine and the posnet it measures)

if __name__ == "__main__":
    auth_bench.run_at_commit(Path(__file__))
if not os.environ.get(auth_bench.SNAPSHOT_ENV):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from posnet import clearing_files as cf  # noqa: E402
from posnet import config as cfg  # noqa: E402
from posnet import timefmt  # noqa: E402
from posnet.acquirer.settlement import presentment  # noqa: E402
from posnet.effects import RECORD_TYPES, Command, LedgerWrite, Publish, Put, SetTimer, TimerFired  # noqa: E402
from posnet.issuer.accounts import INTERCHANGE_INCOME_ACCOUNT, SCHEME_SETTLEMENT_ACCOUNT  # noqa: E402
from posnet.issuer import sms as issuer_sms  # noqa: E402
from posnet.issuer.core import HOLD_EXPIRY_TIMER, Issuer  # noqa: E402
from posnet.ledger import CreateTransferResult, Transfer, TransferFlags, chart  # noqa: E402
from posnet.ledger.ids import derive_id  # noqa: E402
from posnet.runtime.clearing_io import POLL_INTERVAL_S, ClearingBoxes  # noqa: E402
from posnet.runtime.node import PartyNode  # noqa: E402
from posnet.runtime.parties import security_module  # noqa: E402
from posnet.runtime.store import PartyStore  # noqa: E402
try:
    from posnet.gcpause import gc_paused  # noqa: E402
except ImportError:  # --at a revision before the runtime paused the collector around each input
    from contextlib import nullcontext as gc_paused  # noqa: E402
from posnet.sim.scenario import _luhn_pad as luhn_pad, network_for  # noqa: E402
from posnet.switch import clearing as switch_clearing  # noqa: E402
from posnet.switch.core import Switch  # noqa: E402

HOUR_MS = 3600_000
# The day: sales from 09:00 to 21:00 CST, presentment files at 22:00, the cut-off at 23:00 (the default).
SALES_FROM_MS = int(datetime(2026, 11, 24, 9, 0, tzinfo=timefmt.CHINA_STANDARD_TIME).timestamp() * 1000)
SALES_SPAN_MS = 12 * HOUR_MS
FILES_AT_MS = SALES_FROM_MS + 13 * HOUR_MS
POSTING_AFTER_CUTOFF_MS = 10 * 60_000
EXPIRY_SWEEP_MS = SALES_FROM_MS + SALES_SPAN_MS + 49 * HOUR_MS  # holds expire after 48 h (the default)
CARD_BALANCE = "1000000.00"  # yuan per card: more than its holds
SETUP_BATCH = 10_000  # holds placed, and setup records committed, this many at a time
ISSUER_FOLDER = {"posting": "issuer-posting", "expiry": "issuer-expiry"}  # a store each: the phases start alike
PHASES = ("switch", "posting", "expiry")


# -- measuring ------------------------------------------------------------------------------------


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: clear_refs 5), so a phase's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Phase:
    """Wall and CPU time of the parts of one phase (handle, commit), and its memory."""

    def __init__(self, name: str, profile: bool, gc_off: bool = False):
        self.name = name
        self.parts: dict[str, list[float]] = {}
        self.profiler = cProfile.Profile() if profile else None
        gc.collect()
        reset_peak()
        self.rss_before_mib = _status_mib("VmRSS")
        if gc_off:
            gc.disable()  # to price the collector (--no-gc); never enabled again in this process

    def run(self, part: str, fn: Callable[[], Any]) -> Any:
        w, c = time.perf_counter(), time.process_time()
        if self.profiler:
            self.profiler.enable()
        with gc_paused():  # as PartyNode does around a core's handle and around its commit
            out = fn()
        if self.profiler:
            self.profiler.disable()
        acc = self.parts.setdefault(part, [0.0, 0.0])
        acc[0] += time.perf_counter() - w
        acc[1] += time.process_time() - c
        return out

    def result(self, **extra: Any) -> dict[str, Any]:
        if self.profiler:
            print(f"\n## cProfile of {self.name} (handle + commit), top 30 by own time", file=sys.stderr)
            pstats.Stats(self.profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            print(f"## cProfile of {self.name}, top 30 by cumulative time", file=sys.stderr)
            pstats.Stats(self.profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        return {
            "phase": self.name,
            "wall_s": sum(p[0] for p in self.parts.values()),
            "cpu_s": sum(p[1] for p in self.parts.values()),
            "parts": {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in self.parts.items()},
            "rss_before_mib": self.rss_before_mib,
            "peak_mib": _status_mib("VmHWM"),
            **extra,
        }


def check(ok: bool, what: str, checks: list[str]) -> None:
    if not ok:
        raise SystemExit(f"CHECK FAILED: {what}")
    checks.append(what)


def records_of(effects: list[Any]) -> list[Any]:
    return [e for e in effects if isinstance(e, RECORD_TYPES)]


def count_rows(store: PartyStore, sql: str, *args: Any) -> int:
    return store.conn.execute(sql, args).fetchone()[0]


# -- the network and its day ----------------------------------------------------------------------


def network(cards: int) -> cfg.Network:
    """One acquirer, one issuer with ``cards`` cards, each with a phone and a balance above its holds."""
    net = network_for(1, issuers=1, cards_per_issuer=cards, terminals=8)
    net.raw.pop("clearing", None)  # the runtime's settings (the simulator's tiny days clear in tiny slices)
    issuer = net.issuers[0]
    for n, card in enumerate(issuer["cards"]):
        card["pan"] = luhn_pad(f"{issuer['bins'][0]}{n:09d}", 16, None)  # numbered: random PANs collide at 100,000
        card["phone"] = f"139{n:08d}"
        card["balance"] = CARD_BALANCE
    return net


class Day:
    """The day's N approved sales, the same in every process: what the switch logged, what the
    acquirer presents, what the issuer holds."""

    def __init__(self, net: cfg.Network, n: int):
        a = net.acquirer
        self.n = n
        self.acquirer_id = a["institution_id"]
        self.terminals = [(t["terminal_id"], t["merchant_id"]) for t in a["terminals"]]
        self.merchant_name = {m["merchant_id"]: m["name"] for m in a["merchants"]}
        self.issuer = net.issuers[0]["name"]
        self.pans = [c["pan"] for c in net.issuers[0]["cards"]]
        self._f7: dict[int, str] = {}

    def sale(self, i: int) -> dict[str, Any]:
        at_ms = SALES_FROM_MS + i * SALES_SPAN_MS // self.n
        f7 = self._f7.get(at_ms // 1000)
        if f7 is None:
            f7 = self._f7[at_ms // 1000] = timefmt.transmission_time(at_ms)
        stan = f"{i % 999_999 + 1:06d}"  # with F7 unique: the STAN repeats after 999,999 sales, hours apart
        terminal_id, merchant_id = self.terminals[i % len(self.terminals)]
        return {
            "key": f"{self.acquirer_id.lstrip('0')}:{f7}:{stan}",
            "rrn": f"{i:012d}",
            "kind": "sale",
            "pan": self.pans[i % len(self.pans)],
            "amount_fen": 100 + (i * 7919) % 199_901,  # 1.00 to 2,000.00 yuan
            "auth_code": f"{i % 999_999 + 1:06d}",
            "terminal_id": terminal_id,
            "merchant_id": merchant_id,
            "batch_no": "000001",
            "trace_no": stan,
            "f7": f7,
            "stan": stan,
            "date_mmdd": timefmt.mmdd(at_ms),
            "at_ms": at_ms,
        }

    def sales(self):
        return (self.sale(i) for i in range(self.n))


def open_core(kind: str, net: cfg.Network, folder: Path, now_ms: int):
    """A party's core from its store, as runtime.parties.open_party builds it; the restore's records committed."""
    folder.mkdir(parents=True, exist_ok=True)
    hsm = security_module(folder)
    store = PartyStore(folder / f"{kind}.sqlite", with_ledger=True)
    if kind == "switch":
        core: Any = Switch(cfg.switch_config(net, hsm), hsm, store.load_ledger())
    else:
        core = Issuer(cfg.issuer_config(net, net.issuers[0]["name"], hsm), hsm, store.load_ledger())
    store.commit(records_of(core.restore(store.load(), now_ms)))
    return core, store


def started(kind: str, args, folder: Path, now_ms: int, set_up: Callable):
    """The core a timed phase runs on. By default a party started on the store the setup process left,
    its state then frozen as runtime.parties.serve does; with --no-restart, the core that set it up."""
    if args.no_restart:
        return set_up(args, folder)
    core, store = open_core(kind, network(args.cards), folder, now_ms)
    gc.collect()
    gc.freeze()
    return core, store


def party_node(core, store, folder: Path, clearing_dir: Path) -> PartyNode:
    """The runtime's node of a party, for what it does with the effects after a commit (traces, files)."""
    node = PartyNode(folder.name, core, store, None, trace_path=folder / "trace.jsonl")
    node.publish = ClearingBoxes(clearing_dir).publish
    node.loop = asyncio.new_event_loop()  # for the SetTimer effects; never run
    return node


def close_node(node: PartyNode) -> None:
    node._trace_file.close()
    for _, handle in node._timers.values():
        handle.cancel()
    node.loop.close()


def runtime_output(core, store, folder: Path, clearing_dir: Path, effects: list[Any]) -> float:
    """What the party's node does with the effects after the commit (trace lines, files written); seconds."""
    node = party_node(core, store, folder, clearing_dir)
    t = time.perf_counter()
    node._execute([e for e in effects if not isinstance(e, RECORD_TYPES)])
    node._trace_file.flush()
    elapsed = time.perf_counter() - t
    close_node(node)
    return elapsed


def ready(path: Path) -> None:
    path.write_text(str(os.getpid()))


def wait_for(path: Path, limit_s: float = 900.0) -> None:
    """Until the other party's process has started on its store (--phases switch,posting run at once)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path.name}: the other phase never started")
        time.sleep(0.01)


# -- setup: the day's authorizations, presentments and holds ---------------------------------------


def set_up_switch(args, folder: Path):
    """The switch's store with the day's N approved sales in its auth_log (as Switch._log_approval writes
    them), and the acquirer's presentment files of them in the switch's box (as the acquirer publishes them)."""
    net = network(args.cards)
    day = Day(net, args.count)
    switch, store = open_core("switch", net, folder / "switch", SALES_FROM_MS)
    batch: list[Put] = []
    for s in day.sales():
        entry = {"kind": "sale", "lifecycle": s["rrn"], "issuer": day.issuer, "amount_fen": s["amount_fen"],
                 "auth_code": s["auth_code"], "status": "approved"}
        switch.auth_log[s["key"]] = entry
        batch.append(Put("auth_log", s["key"], entry))
        if len(batch) == SETUP_BATCH:
            store.commit(batch)
            batch = []
    store.commit(batch)
    settled = timefmt.mmdd(FILES_AT_MS)
    rows = [presentment(s, day.acquirer_id, settled) for s in day.sales()]
    per_file = -(-args.count // args.files)
    boxes = ClearingBoxes(folder / "clearing")
    for k in range(-(-args.count // per_file)):
        name = f"P{day.acquirer_id}_{timefmt.local(FILES_AT_MS):%Y%m%d}_{k + 1:06d}.csv"
        boxes.publish(Publish(cf.SWITCH_BOX, name, cf.to_csv(rows[k * per_file:(k + 1) * per_file], cf.PRESENTMENT_FIELDS)))
    return switch, store


def set_up_issuer(args, folder: Path):
    """An issuer's store with the day's N holds standing, placed as Issuer._sale places them, directly: the
    ledger's create_transfers, and each auth as _sale leaves it (no SMS of the holds: delivered long since)."""
    net = network(args.cards)
    day = Day(net, args.count)
    issuer, store = open_core("issuer", net, folder, SALES_FROM_MS - HOUR_MS)
    cards = issuer.config.cards
    expiry_s = issuer.config.hold_expiry_s
    holds: list[Transfer] = []
    puts: list[Put] = []

    def place(at_ms: int) -> None:
        results = issuer.ledger.create_transfers(holds, at_ms)
        assert set(results) == {CreateTransferResult.OK}, set(results)
        store.commit([LedgerWrite(issuer.ledger.take_changes()), *puts])
        holds.clear()
        puts.clear()

    for s in day.sales():
        key, hold_id = s["key"], derive_id("hold", s["key"])
        holds.append(Transfer(hold_id, cards[s["pan"]].account_id, SCHEME_SETTLEMENT_ACCOUNT, s["amount_fen"], chart.CNY,
                              chart.PURCHASE_HOLD, TransferFlags.PENDING, user_data=derive_id("lifecycle", key), timeout_s=expiry_s))
        auth = {"kind": "sale", "rrn": s["rrn"], "pan": s["pan"], "amount_fen": s["amount_fen"], "status": "held",
                "hold_id": hold_id, "auth_code": s["auth_code"], "refunded_fen": 0,
                "merchant": day.merchant_name[s["merchant_id"]], "merchant_id": s["merchant_id"], "at_ms": s["at_ms"], "rc": "00"}
        issuer.auths[key] = auth
        puts.append(Put("auths", key, auth))
        if len(holds) == SETUP_BATCH:
            place(s["at_ms"])
    if holds:
        place(s["at_ms"])
    issuer.counters["auth"] = args.count % 999_999
    store.commit([Put("state", "counters", issuer.counters)])
    return issuer, store


def child_setup(args, folder: Path) -> list[dict[str, Any]]:
    """The stores the timed phases start from, made in a process of their own."""
    t = time.perf_counter()
    if "switch" in args.phases:
        _, store = set_up_switch(args, folder)
        store.close()
    issuers = [ISSUER_FOLDER[p] for p in ("posting", "expiry") if p in args.phases]
    if issuers:
        _, store = set_up_issuer(args, folder / issuers[0])
        store.close()  # and checkpointed: the store is its one file
        for other in issuers[1:]:
            shutil.copytree(folder / issuers[0], folder / other)
    return [{"setup_s": time.perf_counter() - t}]


# -- the switch: presentment files and the cut-off -----------------------------------------------


def child_switch(args, folder: Path) -> list[dict[str, Any]]:
    n = args.count
    day = Day(network(args.cards), n)
    switch, store = started("switch", args, folder / "switch", FILES_AT_MS, set_up_switch)
    box = ClearingBoxes(folder / "clearing")
    files = [(p.name, p.read_text(encoding="utf-8")) for p in box.waiting(cf.SWITCH_BOX)]
    rates = switch.config.rates
    amounts = [s["amount_fen"] for s in day.sales()]
    expected_sales = sum(amounts)
    expected_interchange = sum(rates.interchange.of(a) for a in amounts)
    expected_fees = 2 * sum(rates.scheme_fee.of(a) for a in amounts)
    del amounts
    out = []

    # 1. the presentment files arrive
    checks: list[str] = []
    ph = Phase("switch: presentment files in", args.profile == "switch", args.no_gc)
    effects_all: list[Any] = []
    for name, text in files:
        effects = ph.run("handle", lambda: switch.handle(Command(cf.CLEARING_FILE, {"box": cf.SWITCH_BOX, "name": name, "text": text}), FILES_AT_MS))
        ph.run("commit", lambda: store.commit(records_of(effects)))
        effects_all += [e for e in effects if not isinstance(e, RECORD_TYPES)]
    del files
    check(sum(switch.files_in[f]["count"] for f in switch.cycle["files"]) == n, f"{n:,} presentments wait for the cut-off", checks)
    check(all(f["status"] == "received" for f in switch.files_in.values()), "every file received", checks)
    check(count_rows(store, "SELECT count(*) FROM records WHERE tbl = 'clearing_file_texts'") == len(switch.files_in),
          "each file's text in the store", checks)
    out.append(ph.result(files=len(switch.files_in), rows=n, checks=checks,
                         output_s=runtime_output(switch, store, folder / "switch", folder / "clearing", effects_all)))

    # 2. the cut-off, a slice an input (SwitchConfig.clearing_slice_items), each committed and its files
    # written before the next, as the runtime does: the issuer posts them meanwhile (--phases with posting).
    checks = []
    if args.together:
        wait_for(folder / "issuer.ready")
    ph = Phase("switch: cut-off (match, price, book, files, report)", args.profile == "switch", args.no_gc)
    node = party_node(switch, store, folder / "switch", folder / "clearing")
    cutoff_at = time.monotonic()
    effects = []
    event: Any = TimerFired(cf.CUTOFF_TIMER)
    slices = 0
    while True:
        part = ph.run("handle", lambda: switch.handle(event, switch.cutoff_ms))
        ph.run("commit", lambda: store.commit(records_of(part)))
        ph.run("write", lambda: node._execute([e for e in part if not isinstance(e, RECORD_TYPES + (SetTimer,))]))
        effects += part
        slices += 1
        if switch.closing is None:
            break
        event = TimerFired(switch_clearing.SLICE_TIMER)
    close_node(node)
    record = next(e.value for e in effects if isinstance(e, Put) and e.table == "clearing_days")
    check(record["items"] == n and record["matches"] == {"matched": n} and record["rejected"] == 0 and record["deferred"] == 0,
          f"{n:,} items cleared, every one matched", checks)
    members = record["members"]
    check(sum(m["sales_fen"] for m in members.values()) == 2 * expected_sales, "sales total as presented", checks)
    check(sum(m["interchange_fen"] for m in members.values()) == 0
          and max(m["interchange_fen"] for m in members.values()) == expected_interchange, "interchange as the rates give it", checks)
    check(record["fee_income_fen"] == expected_fees, "scheme fee income as the rates give it", checks)
    check(sum(record["positions"].values()) + record["fee_income_fen"] == 0, "net positions and fee income sum to zero", checks)
    balances = [switch.ledger.account(switch_clearing.position_account(m)) for m in members]
    check(all(b.credits_posted == b.debits_posted for b in balances), "every member's position settled to zero", checks)
    fee_acct = switch.ledger.account(switch_clearing.FEE_INCOME_ACCOUNT)
    check(fee_acct.credits_posted - fee_acct.debits_posted == expected_fees, "fee income booked in the ledger", checks)
    check(sum(1 for a in switch.auth_log.values() if a.get("presented")) == n, "every authorization marked presented", checks)
    presented = [json.loads(v) for (v,) in store.conn.execute("SELECT value FROM records WHERE tbl = 'clearing_presented'")]
    check(sum(len(keys) for files in presented for keys in files.values()) == n, "and so in the store", checks)
    to_issuer = [e for e in effects if isinstance(e, Publish) and e.box == cf.issuer_box(day.issuer)]
    check(len(to_issuer) == slices and sum(e.text.count("\n") - 1 for e in to_issuer) == n,
          f"{slices} clearing files, one a slice, of {n:,} rows in all for {day.issuer}", checks)
    out.append(ph.result(rows=n, slices=slices, checks=checks, cutoff_at=cutoff_at, output_s=0.0))
    store.close()
    return out


# -- the issuer: posting and expiry ----------------------------------------------------------------


def opening_fen(issuer: Issuer) -> int:
    return sum(issuer.config.opening_balances_fen[c.account_id] for c in issuer.config.cards.values())


def available_fen(issuer: Issuer) -> int:
    return sum(issuer.available_fen(c.account_id) for c in issuer.config.cards.values())


def restarted_statuses(args, where: Path, now_ms: int) -> dict[str, int]:
    """The auths' statuses as an issuer started again on the phase's store reads them (after the figures)."""
    issuer, store = open_core("issuer", network(args.cards), where, now_ms)
    store.close()
    return dict(Counter(a["status"] for a in issuer.auths.values()))


def child_posting(args, folder: Path) -> list[dict[str, Any]]:
    """Each clearing file the switch writes, posted as the runtime's box watch takes them (one at a
    time, the box looked at again at once while files wait, every POLL_INTERVAL_S when it is empty),
    until all n presentments are posted."""
    n = args.count
    where = folder / ISSUER_FOLDER["posting"]
    issuer, store = started("issuer", args, where, FILES_AT_MS, set_up_issuer)
    box = cf.issuer_box(issuer.config.name)
    boxes = ClearingBoxes(folder / "clearing")
    held_before = available_fen(issuer)
    check(opening_fen(issuer) - held_before == sum(a["amount_fen"] for a in issuer.auths.values()), "setup: the holds stand", [])

    checks: list[str] = []
    ph = Phase("issuer: clearing files posted", args.profile == "posting", args.no_gc)
    now = issuer.cutoff_ms + POSTING_AFTER_CUTOFF_MS
    ready(folder / "issuer.ready")
    effects: list[Any] = []
    posted, files = 0, 0
    deadline = time.monotonic() + 900
    while posted < n and time.monotonic() < deadline:
        path = next((p for p in boxes.waiting(box) if p.name not in issuer.files_in), None)
        if path is None:
            time.sleep(POLL_INTERVAL_S)
            continue
        text = path.read_text(encoding="utf-8")
        part = ph.run("handle", lambda: issuer.handle(Command(cf.CLEARING_FILE, {"box": box, "name": path.name, "text": text}), now))
        ph.run("commit", lambda: store.commit(records_of(part)))
        effects += part
        posted += text.count("\n") - 1
        files += 1
    ended_at = time.monotonic()
    recon = [e.value for e in effects if isinstance(e, Put) and e.table == "reconciliation"][-1]
    total = sum(a["amount_fen"] for a in issuer.auths.values())
    check(recon["presented"] == n and recon["matched_count"] == n and recon["posted_fen"] == total, f"{n:,} presentments matched and posted", checks)
    check(not recon["exceptions"] and not recon["differences"], "no exception, no difference", checks)
    check(all(a["status"] == "posted" for a in issuer.auths.values()), "every auth posted", checks)
    check(all(issuer.ledger.pending_status(a["hold_id"]) == "posted" for a in issuer.auths.values()), "every hold posted in the ledger", checks)
    check(issuer.ledger.totals(chart.CNY)[0] == 0, "nothing pending in the ledger", checks)
    check(available_fen(issuer) == held_before, "cardholders' available balances unchanged by posting", checks)
    settlement = issuer.ledger.account(SCHEME_SETTLEMENT_ACCOUNT)
    income = issuer.ledger.account(INTERCHANGE_INCOME_ACCOUNT)
    check(settlement.credits_posted == total and income.credits_posted == recon["interchange_fen"] - recon["scheme_fee_fen"],
          "owed to the scheme: the sales less interchange net of the scheme's fee", checks)
    check(count_rows(store, "SELECT count(*) FROM ledger_transfers WHERE pending_id != '0'") == n,
          f"{n:,} posting transfers in the store", checks)
    sms = sum(len(e.value["sms"]) for e in effects if isinstance(e, Put) and e.table == issuer_sms.OUTBOX)
    result = ph.result(rows=n, files=files, checks=checks, sms=sms, ended_at=ended_at,
                       output_s=runtime_output(issuer, store, where, folder / "clearing", effects))
    store.close()
    check(restarted_statuses(args, where, now) == {"posted": n}, "a restarted issuer reads every auth as posted", checks)
    return [result]


def child_expiry(args, folder: Path) -> list[dict[str, Any]]:
    n = args.count
    where = folder / ISSUER_FOLDER["expiry"]
    issuer, store = started("issuer", args, where, EXPIRY_SWEEP_MS - HOUR_MS, set_up_issuer)

    checks: list[str] = []
    ph = Phase("issuer: expiry sweep", args.profile == "expiry", args.no_gc)
    effects: list[Any] = []
    slices = 0
    while True:  # one input per slice (IssuerConfig.expiry_slice): the timer re-armed at once fires again
        part = ph.run("handle", lambda: issuer.handle(TimerFired(HOLD_EXPIRY_TIMER), EXPIRY_SWEEP_MS))
        ph.run("commit", lambda: store.commit(records_of(part)))
        effects += part
        slices += 1
        if not any(isinstance(e, SetTimer) and e.key == HOLD_EXPIRY_TIMER and e.at_ms <= EXPIRY_SWEEP_MS for e in part):
            break
    check(all(a["status"] == "expired" for a in issuer.auths.values()), f"{n:,} auths expired", checks)
    check(all(issuer.ledger.pending_status(a["hold_id"]) == "expired" for a in issuer.auths.values()), "every hold expired in the ledger", checks)
    check(issuer.ledger.totals(chart.CNY)[0] == 0, "nothing pending in the ledger", checks)
    check(available_fen(issuer) == opening_fen(issuer), "every cardholder whole again", checks)
    sms = [row for e in effects if isinstance(e, Put) and e.table == issuer_sms.OUTBOX for _, row in issuer_sms.page_rows(e.key, e.value)]
    check(len(sms) == n == len({s["id"] for s in sms}), f"{n:,} SMS, one per released hold", checks)
    words = issuer_sms.text(issuer_sms.bank_of(issuer.config), sms[0])
    check("尾号" in words and "解冻" in words and sms[0]["card"].count("*") >= 6, "an SMS reads as an expiry, card masked", checks)
    check(len(issuer_sms.numbered(store.rows(issuer_sms.OUTBOX))) == n, "the SMS in the store's outbox", checks)
    check(count_rows(store, "SELECT count(*) FROM ledger_expiries") == n, f"{n:,} expiries in the store's ledger", checks)
    result = ph.result(rows=n, checks=checks, sms=len(sms), slices=slices, output_s=runtime_output(issuer, store, where, folder / "clearing", effects))
    store.close()
    check(restarted_statuses(args, where, EXPIRY_SWEEP_MS) == {"expired": n}, "a restarted issuer reads every auth as expired", checks)
    return [result]


CHILDREN = {"setup": child_setup, "switch": child_switch, "posting": child_posting, "expiry": child_expiry}


# -- main -----------------------------------------------------------------------------------------


def child_command(phase: str, args, folder: Path) -> list[str]:
    cmd = [sys.executable, __file__, "--child", phase, str(folder), "--count", str(args.count), "--cards", str(args.cards),
           "--files", str(args.files), "--phases", ",".join(args.phases)]
    cmd += ["--profile", args.profile] if args.profile else []
    cmd += ["--no-restart"] if args.no_restart else []
    cmd += ["--no-gc"] if args.no_gc else []
    cmd += ["--together"] if args.together else []
    return cmd


def results_of(phase: str, proc: subprocess.Popen) -> list[dict[str, Any]]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def run_children(phases: list[str], args, folder: Path) -> list[dict[str, Any]]:
    """Phases in processes of their own, all at once (the switch and the issuer, as parties run)."""
    procs = [(p, subprocess.Popen(child_command(p, args, folder), stdout=subprocess.PIPE, text=True)) for p in phases]
    return [r for p, proc in procs for r in results_of(p, proc)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=None, help="presentments, and holds (default 1,000,000)")
    ap.add_argument("--quick", action="store_true", help="--count 100000")
    ap.add_argument("--cards", type=int, default=None, help="the issuer's cards, each with a phone (default count / 10)")
    ap.add_argument("--files", type=int, default=100, help="presentment files the rows come in (default 100)")
    ap.add_argument("--phases", default=",".join(PHASES), help="switch,posting,expiry (posting needs switch's file)")
    ap.add_argument("--profile", choices=PHASES, help="cProfile that phase's handle + commit (to stderr)")
    ap.add_argument("--no-restart", action="store_true",
                    help="time the core that set the day up, in the same process, not a party started on its store")
    ap.add_argument("--no-gc", action="store_true", help="the cyclic garbage collector off in the timed phases (to price it)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (stores, trace files, clearing files)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--at", metavar="REV", help="measure src/posnet as committed at REV (a git archive snapshot)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--together", action="store_true", help=argparse.SUPPRESS)  # the switch waits for the issuer to start
    args = ap.parse_args()
    args.count = args.count or (100_000 if args.quick else 1_000_000)
    args.cards = args.cards or max(10, args.count // 10)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.count < 1 or args.files < 1 or args.files > args.count:
        ap.error("--count and --files must be at least 1, and --files at most --count")
    if any(p not in PHASES for p in args.phases) or ("posting" in args.phases and "switch" not in args.phases):
        ap.error("--phases: a list of switch, posting, expiry; posting needs switch")
    if args.child:
        phase, folder = args.child
        print(json.dumps(CHILDREN[phase](args, Path(folder))))
        return

    auth_bench.remove_snapshot_at_exit()
    folder = Path(tempfile.mkdtemp(prefix="clearing-bench-"))
    print(f"# posnet clearing benchmark: {args.count:,} presentments in {args.files} files, {args.count:,} holds, "
          f"{args.cards:,} cards (each with a phone)")
    print(f"machine: {auth_bench.machine_line()}, SQLite {sqlite3.sqlite_version}")
    print(f"posnet: {auth_bench.source_version()}")
    print(f"SQLite WAL synchronous=FULL in {folder}; each phase in its own process, "
          + ("set up there (--no-restart)" if args.no_restart else "a party started on the store a setup process left, then gc.freeze()")
          + ("; the garbage collector off (--no-gc)" if args.no_gc else ""))
    results: list[dict[str, Any]] = []
    try:
        if not args.no_restart:
            (setup,) = run_children(["setup"], args, folder)
            print(f"setup (not timed): {setup['setup_s']:.0f} s")
        # The switch's cut-off and the issuer's posting run at once, in two processes, as the parties do: the
        # issuer posts each slice's file while the switch clears the next. The expiry sweep runs after.
        together = [q for q in ("switch", "posting") if q in args.phases]
        args.together = len(together) == 2
        rounds = [together] if together else []
        rounds += [["expiry"]] if "expiry" in args.phases else []
        for phases in rounds:
            for r in run_children(phases, args, folder):
                results.append(r)
                parts = ", ".join(f"{k} {v['wall_s']:.1f} s" for k, v in r["parts"].items())
                print(f"\n{r['phase']}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU ({parts}); "
                      f"RSS {r['rss_before_mib']:,.0f} MiB before, peak {r['peak_mib']:,.0f} MiB; "
                      f"then the runtime's output {r['output_s']:.1f} s")
                for c in r["checks"]:
                    print(f"  ok: {c}")
    finally:
        if args.keep:
            print(f"\nkept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n| phase | wall s | CPU s | handle s | commit s | RSS before MiB | peak MiB | output s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['phase']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['parts']['handle']['wall_s']:.1f} | "
              f"{r['parts']['commit']['wall_s']:.1f} | {r['rss_before_mib']:,.0f} | {r['peak_mib']:,.0f} | {r['output_s']:.1f} |")
    cut = next((r for r in results if r["phase"].startswith("switch: cut-off")), None)
    posting = next((r for r in results if r["phase"].startswith("issuer: clearing")), None)
    if cut and posting and args.together:
        print(f"\nclearing of {args.count:,} presentments, from the cut-off to the last posting committed at the issuer "
              f"(switch and issuer at once): {posting['ended_at'] - cut['cutoff_at']:.1f} s wall "
              f"({cut['slices']} slices; the switch's own {cut['wall_s']:.1f} s, the issuer's own {posting['wall_s']:.1f} s)")
    for r in results:
        if r["phase"].startswith("issuer: expiry"):
            print(f"expiry sweep of {args.count:,} holds ({r['sms']:,} SMS): {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU")
    if args.json:
        Path(args.json).write_text(json.dumps({"count": args.count, "files": args.files, "cards": args.cards,
                                               "no_restart": args.no_restart, "no_gc": args.no_gc, "results": results}, indent=1))


if __name__ == "__main__":
    main()
