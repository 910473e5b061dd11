"""One simulated run: traffic and faults from a seed, then quiescence, then the money rules.

The rules checked after every run (docs/simulation.md):

1. every issuer's books balance (the ledger's own invariants);
2. for every card, the amount the issuer holds or has posted equals the sales
   that stand in the terminals' journals — a sale without a receipt costs
   nothing, a sale with one is taken exactly once;
3. the acquirer's approved sales are exactly the terminals' standing sales
   (what will reach the merchant);
4. every card's net credits equal the refunds the acquirer approved;
5. nothing is left owed: no reversal in a terminal, no store-and-forward item
   in the acquirer or the switch;
6. once the holds' expiry has passed, nothing is held any more;
7. clearing: every sale of a settled batch is posted at its issuer, no
   presentment is an exception, and after the cut-off every member's position
   at the switch is settled to zero, with the switch's books balanced;
8. every money event of a card with a phone has exactly one SMS, and every SMS
   is of a money event (sim/sms_rule.py).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..ledger import chart
from ..links import LinkLimits
from ..effects import Command, Done, TerminalOutput, mask_pan
from ..terminal.core import Card
from . import scenario
from .faults import FaultProfile, link_faults, profile
from ..issuer import sms
from . import sms_rule
from .world import World

START_MS = 1_795_485_600_000  # 2026-11-24 10:00 China Standard Time
THINK_MS = (1, 40)  # pause between two steps of traffic
QUIESCE_MS = 15 * 60_000  # long enough for every timeout and every store-and-forward retry
HOLD_EXPIRY_PASSED_MS = 49 * 3600_000
SETTLE_SHARE = 0.02  # of the functions a terminal starts, this share are settlements
CHECK_EVERY = 50  # transactions between two checks of the books during the traffic


@dataclass
class SimResult:
    seed: int
    transactions: int
    profile: str
    outcomes: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    trace_hash: str = ""
    elapsed_s: float = 0.0
    events: int = 0
    story: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


def simulate(
    seed: int,
    transactions: int = 200,
    profile_name: str = "none",
    keep_story: bool = False,
    prepare: Callable[[World], None] | None = None,
) -> SimResult:
    started = time.perf_counter()
    p = profile(profile_name)
    net = scenario.network_for(seed)
    # Idle links are echo-tested every ten minutes here, not every minute: a run that jumps two
    # days ahead to pass the holds' expiry would otherwise spend most of its time on echoes.
    world = scenario.build(net, START_MS, seed, LinkLimits(echo_interval_ms=600_000))
    world.keep_traces = keep_story
    if prepare is not None:
        prepare(world)
    result = SimResult(seed, transactions, profile_name)
    fault_log: list[tuple[int, str, str, str]] | None = [] if keep_story else None
    world.link_fault = link_faults(p, random.Random(f"faults:{seed}"), result.faults, fault_log, lambda: world.now_ms)
    kinds: dict[str, str] = {}
    settled: list[dict[str, Any]] = []  # journal entries of the batches the terminals settled

    def on_done(party: str, done: Done, out: TerminalOutput) -> None:
        result.outcomes[f"{kinds.get(party, '?')} {done.response_code or ('ok' if done.ok else 'failed')}"] += 1
        if kinds.get(party) == "settle" and done.ok:
            settled.extend(done.result["entries"])

    world.on_done = on_done
    _traffic(world, net, p, transactions, random.Random(f"traffic:{seed}"), kinds, result.faults)
    _quiesce(world, net, kinds)
    result.violations = check(world, net, settled)
    result.trace_hash = world.trace_hash.hexdigest()[:16]
    result.events = world.events_handled
    result.elapsed_s = time.perf_counter() - started
    if keep_story and result.violations:
        result.story = story(world, net, result.violations, fault_log or [])
    return result


def _traffic(world: World, net, p: FaultProfile, n: int, rng: random.Random, kinds: dict[str, str], faults: Counter) -> None:
    terminals = [f"pos-{t['terminal_id']}" for t in net.acquirer["terminals"]]
    hosts = ["acquirer", "switch", *(f"issuer-{i['name']}" for i in net.issuers)]
    cards = scenario.cards_of(net)
    down: dict[str, int] = {}
    issued = 0
    while issued < n:
        world.advance_to(world.now_ms + rng.randint(*THINK_MS))
        for party, at in sorted(down.items()):
            if at <= world.now_ms:
                world.restart(party)
                del down[party]
                if party in terminals:  # the operator switches it on again: owed reversals go first
                    kinds[party] = "power-on"
                    world.submit(party, Command("power-on"))
                    world.run()
        idle = [t for t in terminals if t not in down and not world.parties[t].core.busy]
        if not idle:
            continue
        term = rng.choice(idle)
        name, args = _choose(world.parties[term].core, cards, rng, world.now_ms)
        kinds[term] = name
        world.submit(term, Command(name, args))
        world.run()
        issued += 1
        if issued % CHECK_EVERY == 0:
            for i in net.issuers:  # rule 1 holds at every step, not only at the end
                world.parties[f"issuer-{i['name']}"].core.ledger.check_invariants()
        # Party faults, drawn once per transaction started.
        r_host, r_power, victim_host, victim_term = rng.random(), rng.random(), rng.choice(hosts), rng.choice(terminals)
        r_shock, shocked = rng.random(), rng.choice(terminals)
        if r_shock < p.shock and shocked not in down and not world.parties[shocked].core.busy:
            kinds[shocked] = "shock"
            world.submit(shocked, Command("shock"))
            world.run()
            faults["shock"] += 1
        if r_host < p.host_crash and victim_host not in down:
            world.crash(victim_host)
            down[victim_host] = world.now_ms + p.restart_ms
            faults["host crash"] += 1
        if r_power < p.power_cut and victim_term not in down:
            world.crash(victim_term)
            down[victim_term] = world.now_ms + p.restart_ms
            faults["power cut"] += 1
    for party in sorted(down):
        world.restart(party)


def _choose(core, cards: list[tuple[Card, str]], rng: random.Random, now_ms: int) -> tuple[str, dict[str, Any]]:
    r = rng.random()
    card, pin = rng.choice(cards)
    amount = rng.randint(100, 20_000)
    # The operator looks after the device first, as a cashier would.
    status = core.device_status(now_ms)
    if status["locked"]:
        return "unlock", {"password": scenario.PROTECTION_PASSWORD}
    if status["paper_out"]:
        return "load-paper", {}
    if status["unprinted"] and r < 0.5:
        return "reprint", {"voucher_no": int(status["unprinted"][0])}
    if not core.signed_on:
        return "sign-on", {}
    if core.settling is not None or rng.random() < SETTLE_SHARE:
        return "settle", {}
    if r < 0.55:
        return "sale", {"card": card, "pin": pin, "amount_fen": amount}
    if r < 0.65:
        return "inquiry", {"card": card, "pin": pin}
    sales = [e for e in core.journal.values() if e["kind"] == "sale" and not e["voided"]]
    if r < 0.78 and sales:
        open_batch = [e for e in sales if e["batch_no"] == core.counters["batch_no"]]
        if open_batch:
            return "void", {"voucher_no": int(rng.choice(open_batch)["voucher_no"])}
    if r < 0.90 and sales:
        e = rng.choice(sales)
        return "refund", {
            "card": Card(e["pan"], e["expiry"]),
            "pin": None,
            "reference_no": e["reference_no"],
            "date_mmdd": e["date_mmdd"],
            "amount_fen": rng.randint(1, e["amount_fen"]),
        }
    if r < 0.95:
        return "sale", {"card": card, "pin": "000000" if pin != "000000" else "111111", "amount_fen": amount}
    return "sale", {"card": card, "pin": pin, "amount_fen": amount}


def _quiesce(world: World, net, kinds: dict[str, str]) -> None:
    """Heal the links, let every timeout fire and every queue drain, and have each terminal
    send what it still owes."""
    world.link_fault = None
    world.advance(QUIESCE_MS)
    for t in net.acquirer["terminals"]:
        name = f"pos-{t['terminal_id']}"
        core = world.parties[name].core
        if core.device_status(world.now_ms)["locked"]:
            kinds[name] = "unlock"
            world.submit(name, Command("unlock", {"password": scenario.PROTECTION_PASSWORD}))
            world.run()
        if not core.signed_on:
            kinds[name] = "sign-on"
            world.submit(name, Command("sign-on"))
            world.advance(60_000)
        if core.reversal is not None:
            kinds[name] = "send-reversal"
            world.submit(name, Command("send-reversal"))
            world.advance(60_000)
        if core.settling is not None:
            kinds[name] = "settle"
            world.submit(name, Command("settle"))
            world.advance(60_000)
    world.advance(QUIESCE_MS)


def check(world: World, net, settled: list[dict[str, Any]] = ()) -> list[str]:
    """The rules; ``settled``: the journal entries of batches the terminals settled (and cleared)."""
    violations: list[str] = []
    terminals = [world.parties[f"pos-{t['terminal_id']}"].core for t in net.acquirer["terminals"]]
    acquirer = world.parties["acquirer"].core
    switch = world.parties["switch"].core
    standing: dict[str, int] = defaultdict(int)
    standing_rrns: set[str] = set()
    for e in [*settled, *(e for term in terminals for e in term.journal.values())]:
        if e["kind"] == "sale" and not e["voided"]:
            standing[e["pan"]] += e["amount_fen"]
            standing_rrns.add(e["reference_no"])
    for term in terminals:
        if term.reversal is not None:
            violations.append(f"rule 5: terminal {term.config.terminal_id} still owes reversal of voucher {term.reversal['voucher_no']}")
    refunds: dict[str, int] = defaultdict(int)
    approved_sales: set[str] = set()
    for rrn, t in acquirer.txns.items():
        if t["kind"] == "refund" and t["status"] == "approved":
            refunds[t["pan"]] += t["amount_fen"]
        if t["kind"] == "sale" and t["status"] == "approved":
            approved_sales.add(rrn)
    for rrn in sorted(approved_sales - standing_rrns):
        t = acquirer.txns[rrn]
        violations.append(f"rule 3: acquirer approved sale {rrn} ({mask_pan(t['pan'])}, {t['amount_fen']} fen) that no terminal journal shows")
    for rrn in sorted(standing_rrns - approved_sales):
        violations.append(f"rule 3: a terminal journal shows sale {rrn} that the acquirer does not hold approved")
    if acquirer.saf.items:
        violations.append(f"rule 5: the acquirer still owes the switch {len(acquirer.saf.items)} reversal(s)")
    for name, saf in switch.saf.items():
        if saf.items:
            violations.append(f"rule 5: the switch still owes {name} {len(saf.items)} reversal(s)")
    issuers = [world.parties[f"issuer-{i['name']}"].core for i in net.issuers]
    for issuer in issuers:
        try:
            issuer.ledger.check_invariants()
        except AssertionError as e:
            violations.append(f"rule 1: {issuer.config.name}'s books: {e}")
        posted: dict[str, int] = defaultdict(int)
        for auth in issuer.auths.values():
            if auth.get("kind") == "sale" and auth.get("status") == "posted":
                posted[auth["pan"]] += auth["posted_fen"]
        for pan, card in issuer.config.cards.items():
            a = issuer.ledger.account(card.account_id)
            if a.debits_pending + posted[pan] != standing[pan]:
                violations.append(
                    f"rule 2: {mask_pan(pan)}: the issuer holds {a.debits_pending} fen and has posted {posted[pan]},"
                    f" the terminals' journals stand at {standing[pan]}"
                )
            # Refunds credited, less any refund taken back (transfers of the refund code).
            credited = sum(
                t.amount if t.credit_account_id == card.account_id else -t.amount
                for t in issuer.ledger.account_history(card.account_id)
                if t.code == chart.REFUND_CREDIT
            )
            if credited != refunds[pan]:
                violations.append(f"rule 4: {mask_pan(pan)}: credited {credited} fen, refunds approved {refunds[pan]}")
    world.advance(HOLD_EXPIRY_PASSED_MS)
    for issuer in issuers:
        for pan, card in issuer.config.cards.items():
            held = issuer.ledger.account(card.account_id).debits_pending
            if held:
                violations.append(f"rule 6: {mask_pan(pan)}: {held} fen still held after the holds' expiry")
    violations += _check_clearing(world, issuers, switch, settled)
    for issuer in issuers:
        outbox = dict(sms.numbered(world.tables(f"issuer-{issuer.config.name}").get(sms.OUTBOX, {})))
        violations += [f"rule 8: {v}" for v in sms_rule.check(issuer, outbox)]
    return violations


def _check_clearing(world: World, issuers, switch, settled) -> list[str]:
    """Rule 7, once the cut-off has passed (``check`` has moved the clock two days on)."""
    violations = []
    posted_rrns = {a["rrn"] for i in issuers for a in i.auths.values() if a.get("kind") == "sale" and a.get("status") == "posted"}
    for e in settled:
        if e["kind"] == "sale" and not e["voided"] and e["reference_no"] not in posted_rrns:
            violations.append(f"rule 7: settled sale {e['reference_no']} ({mask_pan(e['pan'])}) is not posted at its issuer")
    for issuer in issuers:
        for day, recon in world.tables(f"issuer-{issuer.config.name}").get("reconciliation", {}).items():
            for x in recon["exceptions"]:
                violations.append(f"rule 7: {issuer.config.name} {day}: clearing exception {x['lifecycle']}: {x['reason']}")
    try:
        switch.ledger.check_invariants()
    except AssertionError as e:
        violations.append(f"rule 7: the switch's books: {e}")
    for a in switch.ledger.accounts():
        if a.code == chart.SWITCH_MEMBER_POSITION and a.credits_posted != a.debits_posted:
            violations.append(f"rule 7: a member's position is {a.credits_posted - a.debits_posted} fen after the cut-off")
    return violations


def story(world: World, net, violations: list[str], fault_log: list[tuple[int, str, str, str]]) -> str:
    """A readable account of what happened to the cards and transactions a violation names."""
    masks = {m for v in violations for m in _masks_in(v)}
    rrns = {w for v in violations for w in v.replace(",", " ").split() if w.isdigit() and len(w) == 12}
    acquirer = world.parties["acquirer"].core
    lifecycles = set(rrns)
    for rrn, t in acquirer.txns.items():
        if mask_pan(t["pan"]) in masks or rrn in rrns:
            lifecycles.add(rrn)
            lifecycles.add(f"{t['terminal_id']}:{t['batch_no']}:{t['trace_no']}")
    lines = ["violations:", *(f"  - {v}" for v in violations), "", "what happened (time ms from start, party: event):"]
    for at, party, t in world.traces:
        if t.lifecycle in lifecycles or t.detail.get("pan") in masks:
            detail = ", ".join(f"{k}={v}" for k, v in t.detail.items())
            lines.append(f"  {at - START_MS:>10} {party}: {t.event} [{t.lifecycle}] {detail}")
    if fault_log:
        lines += ["", f"faults injected ({len(fault_log)}; the first 40):"]
        lines += [f"  {at - START_MS:>10} {party} -> {link}: {what}" for at, party, link, what in fault_log[:40]]
    return "\n".join(lines)


def _masks_in(text: str) -> list[str]:
    return [w.rstrip(":,") for w in text.split() if "*" in w and len(w.rstrip(":,")) >= 13]
