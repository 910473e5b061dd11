"""The scheme's clearing (清算): presentments matched, forwarded, and the day's net positions.

A presentment file from an acquirer is taken as it arrives (its text kept,
its items waiting in the open cycle) and cleared at the daily cut-off: each
item is matched with the authorization log, routed to its issuer by BIN,
priced (interchange from the acquirer to the issuer, the scheme's fee from
each), and the issuers get one clearing file each. The money is booked in
the switch's ledger on the members' position accounts, one linked chain per
acquirer and issuer. Then the cycle closes: every member's position is
brought to zero against the settlement account, and the settlement report
(CSV and text) says who pays and who is paid; its positions and the scheme's
fee income sum to zero. docs/clearing.md.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterator

from .. import timefmt
from ..clearing_files import (
    AMOUNT_DIFFERS,
    CLEARING_FIELDS,
    MANUAL_CREDIT,
    MATCHED,
    NO_AUTHORIZATION,
    PRESENTMENT_FIELDS,
    REPORTS_BOX,
    REVERSED,
    clearing_day,
    csv_text,
    receive,
    values_of,
    issuer_box,
    to_csv,
    yuan,
)
from ..effects import Delete, Effect, Publish, Put, SetTimer, Trace, mask_pan
from ..ledger import Account, CreateTransferResult, Transfer, TransferFlags, chart
from ..ledger.ids import derive_id

if TYPE_CHECKING:
    from .core import Switch

SETTLEMENT_ACCOUNT = 1  # the settlement bank account members pay into and are paid from
FEE_INCOME_ACCOUNT = 2

# One letter per presentment of a file, kept with the file: how it was cleared. With the file
# itself this is enough to write the issuers' files again after a crash.
DECISION = {MATCHED: "M", NO_AUTHORIZATION: "N", REVERSED: "R", AMOUNT_DIFFERS: "A", MANUAL_CREDIT: "C"}
MATCH_OF = {v: k for k, v in DECISION.items()}
REJECTED = {"D": "duplicate presentment", "X": "no issuer for the card's BIN", "U": "unknown acquirer", "K": "unknown kind"}
REJECT_LETTER = {v: k for k, v in REJECTED.items()}


# A forwarded item's line: the presentment's fields, then what clearing added, in this order (_forward).
FORWARDED_ADDED = ("issuer", "match", "interchange_fen", "acquirer_fee_fen", "issuer_fee_fen", "clearing_day", "source_file")

# An item of a cycle: a presentment line's values as read (a list, not a dict: a cut-off reads a million),
# then the file it came in and its key in the cycle, "<file>#<line>".
ITEM_FIELDS = PRESENTMENT_FIELDS + ("source_file", "item_key")
LIFECYCLE, KIND, ACQUIRER, PAN, AMOUNT, HOST_KEY, SOURCE, ITEM_KEY = map(
    ITEM_FIELDS.index, ("lifecycle", "kind", "acquirer_id", "pan", "amount_fen", "host_key", "source_file", "item_key"))
N_PRESENTED = len(PRESENTMENT_FIELDS)
assert CLEARING_FIELDS == PRESENTMENT_FIELDS + FORWARDED_ADDED


def position_account(institution_id: str) -> int:
    return derive_id("position", institution_id)


def open_books(switch: "Switch", now_ms: int) -> None:
    members = sorted(set(switch.config.acquirers) | {r.institution_id for r in switch.config.issuers.values()})
    accounts = [
        Account(SETTLEMENT_ACCOUNT, chart.CNY, chart.SWITCH_SETTLEMENT),
        Account(FEE_INCOME_ACCOUNT, chart.CNY, chart.SWITCH_FEE_INCOME),
        *(Account(position_account(m), chart.CNY, chart.SWITCH_MEMBER_POSITION) for m in members),
    ]
    new = [a for a in accounts if switch.ledger.account(a.id) is None]
    if new:
        switch.ledger.create_accounts(new, now_ms)


# A presentment file is kept as it came (one record of its text, not one per item) while its
# cycle is open and until the next cut-off after: a restart parses it again for the open
# cycle's items, or to write the last closed cycle's issuer files again.
FILE_TEXTS = "clearing_file_texts"
CLOSING = "closing"  # clearing_cycle/closing: the cycle being cleared, slice by slice, and how far it is
SLICE_TIMER = "clearing-slice"  # the next slice of a cut-off, at once: inputs that came meanwhile go first
SLICE_ITEMS = 20_000  # items a slice clears: about a third of a second of the switch's time
SLICES = "clearing_slices"  # "<day>/<slice>": what each slice of a cut-off decided, until the cycle is closed
SLICE_FIELDS = ("outputs", "decisions", "deferred_items")  # a slice's, kept in its record, gathered in the day's
PRESENTED = "clearing_presented"  # per slice of a day ("<day>/<slice>"): {presentment file: [host keys of the sales it presented]}


def slice_key(day: str, slice_no: int) -> str:
    """A slice of a day's cut-off, as its records (SLICES, PRESENTED) and its bookings are keyed."""
    return f"{day}/{slice_no:06d}"


def new_cycle(carried: list[list[Any]] | None = None) -> dict[str, Any]:
    """``carried``: the items (ITEM_FIELDS) an earlier cut-off deferred to this cycle."""
    return {"files": [], "carried_items": carried or [], "items": 0, "matches": {}, "rejected": 0, "members": {}}


def cycle_items(cycle: dict[str, Any], texts: dict[str, str]) -> Iterator[list[Any]]:
    """A cycle's items (ITEM_FIELDS) in the order it took them (the carried ones first), read from its
    files' texts as they are wanted: a slice of a cut-off reads only the files it clears."""
    for r in cycle.get("carried_items", []):
        yield list(r)
    for r in cycle.get("carried_rows", []):  # as a cycle kept them before
        yield [r.get(f, "") for f in ITEM_FIELDS]
    for name in cycle["files"]:
        for n, values in enumerate(values_of(texts[name], PRESENTMENT_FIELDS)):
            del values[N_PRESENTED:]  # columns after the known ones are not forwarded
            values += (name, f"{name}#{n:07d}")
            yield values


def item_count(switch: "Switch", cycle: dict[str, Any]) -> int:
    """How many items a cycle holds, from the counts its files were received with."""
    return (len(cycle.get("carried_items", [])) + len(cycle.get("carried_rows", []))
            + sum(switch.files_in[name]["count"] for name in cycle["files"]))


def mark_presented(auth_log: dict[str, dict[str, Any]], presented: dict[str, dict[str, list[str]]]) -> None:
    """After a restart: each sale a cleared presentment took is marked so again (a duplicate is refused)."""
    for files in presented.values():
        for name, keys in files.items():
            for key in keys:
                auth = auth_log.get(key)
                if auth is not None:
                    auth["presented"] = name


def _member(cycle: dict[str, Any], institution_id: str, role: str) -> dict[str, Any]:
    return cycle["members"].setdefault(
        institution_id,
        {"role": role, "sales_fen": 0, "sales_count": 0, "credits_fen": 0, "credits_count": 0,
         "interchange_fen": 0, "scheme_fee_fen": 0, "net_fen": 0},
    )


def take_file(switch: "Switch", name: str, text: str, now_ms: int) -> list[Effect]:
    """A presentment file in the switch's box: its items wait for the cut-off (a name seen before is ignored)."""
    count, refused = receive(switch.files_in, name, text, PRESENTMENT_FIELDS, "presentment file", now_ms, keep=())
    if count is None:
        return refused
    rec = {"received_ms": now_ms, "status": "received", "count": count}
    switch.files_in[name] = rec
    effects: list[Effect] = [Put("clearing_files_in", name, rec), Put(FILE_TEXTS, name, {"text": text})]
    # Checked now, read at the cut-off: a cycle's items are not held in memory all day.
    switch.cycle_texts[name] = text
    switch.cycle["files"].append(name)
    effects += [
        Put("clearing_cycle", "open", switch.cycle),
        Trace("", "presentment file received", {"file": name, "items": count}),
    ]
    return effects


def clear_slice(switch: "Switch", now_ms: int) -> list[Effect]:
    """The next slice of the cycle being closed (at most ``slice_items`` of its items): matched,
    priced, booked and forwarded, one clearing file per issuer. An item whose authorization the
    switch still owes its issuer a reversal for waits for the next cycle, so the issuer hears of
    the reversal first. After the last slice the cycle closes (``_close``)."""
    closing = switch.closing
    assert closing is not None
    if switch.closing_items is None:  # after a restart: read on from the first item not cleared
        switch.closing_items = islice(cycle_items(closing, switch.closing_texts), closing["done"], None)
    day, start, size = closing["day"], closing["done"], closing["slice_items"]
    part = list(islice(switch.closing_items, size))
    slice_no = len(closing["outputs"]) + 1
    effects: list[Effect] = []
    owed = {name: set(saf.items) for name, saf in switch.saf.items()}
    items, deferred, routes = [], [], []  # routes: each item's issuer, looked up once
    for row in part:
        issuer = switch.route(row[PAN])
        auth = switch.auth_log.get(row[HOST_KEY])
        if issuer is not None and auth is not None:
            waiting = owed[issuer]
            if waiting and (row[HOST_KEY] in waiting or auth.get("void_key", "") in waiting):
                deferred.append(row)
                continue
        items.append(row)
        routes.append(issuer)
    decisions = []
    presented: dict[str, list[str]] = {}  # the sales taken, by file: one record a slice, not one per sale
    for row, issuer in zip(items, routes):
        letter = _decide(switch, row, issuer)
        decisions.append(letter)
        if letter in MATCH_OF and row[KIND] == "sale":
            auth = switch.auth_log.get(row[HOST_KEY])
            if auth is not None:
                auth["presented"] = row[SOURCE]
                presented.setdefault(row[SOURCE], []).append(row[HOST_KEY])
    if presented:
        effects.append(Put(PRESENTED, slice_key(day, slice_no), presented))
    decisions_text = "".join(decisions)
    outputs = {
        issuer: f"C{switch.config.institution_id}_{issuer}_{day}_{switch.next_file_no():06d}.csv"
        for issuer in sorted({i for i, d in zip(routes, decisions_text) if d in MATCH_OF})
    }
    if outputs:  # the files' numbers, kept: after a restart the next slice's files must not take them again
        effects.append(Put("state", "counters", switch.counters))
    forwarded, totals = _forward(switch, items, decisions_text, day, outputs, routes)
    effects += _book(switch, slice_key(day, slice_no), totals, now_ms)
    closing["done"] = start + len(part)
    closing["items"] += len(items)
    closing["deferred"] += len(deferred)
    closing["outputs"].append(outputs)
    deferred_keys = [r[ITEM_KEY] for r in deferred]
    closing["deferred_items"] += deferred_keys  # the rest, with the decisions: the issuers' files again
    closing["decisions"] += decisions_text
    for letter, n in Counter(decisions_text).items():
        label = MATCH_OF.get(letter) or REJECTED[letter]
        closing["matches"][label] = closing["matches"].get(label, 0) + n
        if letter in REJECTED:
            closing["rejected"] += n
    for (acquirer, issuer_inst), t in totals.items():
        a, i = _member(closing, acquirer, "acquirer"), _member(closing, issuer_inst, "issuer")
        for m in (a, i):
            m["sales_fen"] += t["sales"]
            m["sales_count"] += t["sales_count"]
            m["credits_fen"] += t["credits"]
            m["credits_count"] += t["credits_count"]
        a["interchange_fen"] -= t["interchange"]
        a["scheme_fee_fen"] -= t["acquirer_fee"]
        a["net_fen"] += t["sales"] - t["credits"] - t["interchange"] - t["acquirer_fee"]
        i["interchange_fen"] += t["interchange"]
        i["scheme_fee_fen"] -= t["issuer_fee"]
        i["net_fen"] += -t["sales"] + t["credits"] + t["interchange"] - t["issuer_fee"]
        closing["fee_income_fen"] += t["acquirer_fee"] + t["issuer_fee"]
    for row, letter in zip(items, decisions_text):
        if letter in REJECTED:
            effects.append(Trace(row[LIFECYCLE], "presentment rejected", {"reason": REJECTED[letter], "pan": mask_pan(row[PAN])}))
    if deferred:  # carried to the cycle open now, in the same commit
        switch.cycle["carried_items"] += deferred
        effects.append(Put("clearing_cycle", "open", switch.cycle))
    effects += forwarded
    effects.append(Trace("", "presentments cleared", {"day": day, "slice": slice_no, "items": len(items), "deferred": len(deferred),
                                                      "issuers": sorted(outputs)}))
    if len(part) == size and closing["done"] < closing["total"]:  # (an item short: the texts are read to their end)
        # What this slice decided is a record of its own, the progress one of a constant size: a day of
        # many slices writes each decision once, not the day's so far at every slice.
        slice_record = {"outputs": outputs, "decisions": decisions_text, "deferred_items": deferred_keys}
        progress = {k: v for k, v in closing.items() if k not in SLICE_FIELDS}
        return effects + [Put(SLICES, slice_key(day, slice_no), slice_record), Put("clearing_cycle", CLOSING, progress),
                          SetTimer(SLICE_TIMER, now_ms)]
    return effects + _close(switch, now_ms)


def forward_again(switch: "Switch", record: dict[str, Any], texts: dict[str, dict[str, Any]]) -> list[Effect]:
    """The issuers' files of a cycle cleared (or, while it closes, of its slices cleared so far),
    written again after a restart: they may have been committed and never written; an issuer
    ignores a file it has posted, and the runtime does not write a file its reader has taken."""
    if any(name not in texts for name in record["files"]):
        return []
    items = list(cycle_items(record, {name: texts[name]["text"] for name in record["files"]}))
    deferred = set(record.get("deferred_items", []))
    outputs = record["outputs"]
    if isinstance(outputs, dict):  # a cycle closed in one piece, before slices
        outputs, size = [outputs], len(items)
    else:
        size = record["slice_items"]
    decisions = record.get("decisions", "")
    effects: list[Effect] = []
    at = 0
    for k, files in enumerate(outputs):
        rows = [r for r in items[k * size:(k + 1) * size] if r[ITEM_KEY] not in deferred]
        letters = decisions[at:at + len(rows)]
        if len(letters) != len(rows):
            return effects
        at += len(rows)
        effects += _forward(switch, rows, letters, record["day"], files)[0]
    return effects


def _decide(switch: "Switch", row: list[Any], issuer: str | None) -> str:
    """``row``: an item (ITEM_FIELDS); ``issuer``: the item's by its BIN (``switch.route``)."""
    if row[ACQUIRER] not in switch.config.acquirers:
        return REJECT_LETTER["unknown acquirer"]
    if issuer is None:
        return REJECT_LETTER["no issuer for the card's BIN"]
    kind = row[KIND]
    if kind == "credit":
        return DECISION[MANUAL_CREDIT]
    if kind not in ("sale", "refund"):
        return REJECT_LETTER["unknown kind"]
    auth = switch.auth_log.get(row[HOST_KEY])
    if auth is None or auth["kind"] != kind:
        return DECISION[NO_AUTHORIZATION]
    if kind == "sale" and auth.get("presented"):
        return REJECT_LETTER["duplicate presentment"]
    if auth["status"] != "approved":
        return DECISION[REVERSED]
    if row[AMOUNT] > auth["amount_fen"]:
        return DECISION[AMOUNT_DIFFERS]
    return DECISION[MATCHED]


def _forward(switch: "Switch", rows, decisions: str, day: str, outputs: dict[str, str], routes: list[str | None] | None = None):
    """The issuers' clearing files of one presentment file, and its totals per (acquirer, issuer).
    ``routes``: each row's issuer, when the caller has looked them up."""
    rates = switch.config.rates
    per_issuer: dict[str, list[list[Any]]] = {}  # each a line of CLEARING_FIELDS
    totals: dict[tuple[str, str], dict[str, int]] = {}
    if routes is None:
        routes = [switch.route(row[PAN]) for row in rows]
    for row, letter, issuer in zip(rows, decisions, routes):
        if letter not in MATCH_OF:
            continue
        route = switch.config.issuers[issuer]
        sale = row[KIND] == "sale"
        amount = row[AMOUNT]
        interchange = rates.interchange.of(amount) if sale else 0
        scheme_fee = rates.scheme_fee.of(amount) if sale else 0  # taken from each side alike
        per_issuer.setdefault(issuer, []).append(
            row[:N_PRESENTED] + [route.institution_id, MATCH_OF[letter], interchange, scheme_fee, scheme_fee, day, row[SOURCE]]
        )
        pair = (row[ACQUIRER], route.institution_id)
        t = totals.get(pair)
        if t is None:
            t = totals[pair] = Counter()
        if sale:
            t["sales"] += amount
            t["sales_count"] += 1
        else:
            t["credits"] += amount
            t["credits_count"] += 1
        t["interchange"] += interchange
        t["acquirer_fee"] += scheme_fee
        t["issuer_fee"] += scheme_fee
    effects: list[Effect] = [
        Publish(issuer_box(issuer), outputs[issuer], csv_text(CLEARING_FIELDS, lines)) for issuer, lines in sorted(per_issuer.items())
    ]
    return effects, totals


def _book(switch: "Switch", name: str, totals: dict[tuple[str, str], dict[str, int]], now_ms: int) -> list[Effect]:
    """One linked chain per (acquirer, issuer) of the file, on the members' positions."""
    transfers: list[Transfer] = []
    for (acquirer, issuer), t in sorted(totals.items()):
        a, i = position_account(acquirer), position_account(issuer)
        net = t["sales"] - t["credits"]
        legs = [
            (i, a, net, chart.SETTLEMENT, "amount") if net >= 0 else (a, i, -net, chart.SETTLEMENT, "amount"),
            (a, i, t["interchange"], chart.FEE, "interchange"),
            (a, FEE_INCOME_ACCOUNT, t["acquirer_fee"], chart.FEE, "acquirer-fee"),
            (i, FEE_INCOME_ACCOUNT, t["issuer_fee"], chart.FEE, "issuer-fee"),
        ]
        chain = [
            Transfer(derive_id("clearing", name, acquirer, issuer, what), dr, cr, amount, chart.CNY, code, TransferFlags.LINKED)
            for dr, cr, amount, code, what in legs
            if amount > 0
        ]
        if chain:
            last = chain[-1]
            chain[-1] = Transfer(last.id, last.debit_account_id, last.credit_account_id, last.amount, last.ledger, last.code)
            transfers += chain
    if not transfers:
        return []
    results = switch.ledger.create_transfers(transfers, now_ms)
    bad = [r for r in results if r not in (CreateTransferResult.OK, CreateTransferResult.EXISTS)]
    return [Trace("", "clearing could not be booked", {"file": name, "results": sorted({str(r) for r in bad})})] if bad else []


# -- the cut-off ---------------------------------------------------------------------------------


def start_closing(switch: "Switch", cutoff_ms: int, now_ms: int) -> list[Effect]:
    """At the cut-off: the open cycle is closed to new files (they go to the next one) and cleared
    in slices, each its own input and commit, so authorizations go on between them and each
    issuer's files are on their way while the rest is cleared. The first slice is cleared now."""
    cycle = switch.cycle
    switch.closing = dict(cycle, day=clearing_day(cutoff_ms), cutoff_ms=cutoff_ms, slice_items=switch.config.clearing_slice_items,
                          total=item_count(switch, cycle), done=0, items=0, deferred=0, outputs=[], deferred_items=[],
                          decisions="", fee_income_fen=0)
    switch.closing_texts, switch.closing_items = switch.cycle_texts, None
    switch.cycle, switch.cycle_texts = new_cycle(), {}
    return [Put("clearing_cycle", "open", switch.cycle), *clear_slice(switch, now_ms)]


def _close(switch: "Switch", now_ms: int) -> list[Effect]:
    """Net settlement, once every slice is cleared: every member's position to zero against the
    settlement account, and the report."""
    closing = switch.closing
    day, cutoff_ms = closing["day"], closing["cutoff_ms"]
    effects: list[Effect] = []
    transfers = []
    positions: dict[str, int] = {}
    for inst in sorted(closing["members"]):
        acct = switch.ledger.account(position_account(inst))
        balance = acct.credits_posted - acct.debits_posted
        positions[inst] = balance
        if balance > 0:
            transfers.append(Transfer(derive_id("net", day, inst), position_account(inst), SETTLEMENT_ACCOUNT, balance, chart.CNY, chart.SETTLEMENT))
        elif balance < 0:
            transfers.append(Transfer(derive_id("net", day, inst), SETTLEMENT_ACCOUNT, position_account(inst), -balance, chart.CNY, chart.SETTLEMENT))
    if transfers:
        results = switch.ledger.create_transfers(transfers, now_ms)
        if any(r not in (CreateTransferResult.OK, CreateTransferResult.EXISTS) for r in results):
            effects.append(Trace("", "net settlement could not be booked", {"day": day, "results": sorted({str(r) for r in results})}))
    record = dict(closing, closed_ms=now_ms, positions=positions)
    del record["done"], record["total"]
    effects += [Delete(SLICES, slice_key(day, k)) for k in range(1, len(closing["outputs"]))]  # in the day's record now
    switch.closing = switch.closing_items = None
    switch.closing_texts = {}
    switch.closed_cutoff_ms = cutoff_ms
    # The texts of the cycle closed before this one are needed no more (this one's stay, to write its files again).
    effects += [Delete(FILE_TEXTS, name) for name in switch.last_closed_files]
    switch.last_closed_files = list(closing["files"])
    effects += [
        Put("clearing_days", day, record),
        Delete("clearing_cycle", CLOSING),
        Put("state", "cutoff", {"closed_cutoff_ms": cutoff_ms}),
        *report(switch.config.institution_id, record),
        Trace("", "clearing cycle closed", {"day": day, "items": record["items"], "slices": len(record["outputs"]), "positions": positions}),
    ]
    return effects


def resume_closing(switch: "Switch", progress: dict[str, Any], slices: dict[str, dict[str, Any]], texts: dict[str, dict[str, Any]],
                   now_ms: int) -> list[Effect]:
    """After a restart in the middle of a cut-off: the files of the slices cleared so far again, and the rest goes on."""
    record = dict(progress, outputs=[], decisions="", deferred_items=[])
    for key in sorted(k for k in slices if k.startswith(progress["day"] + "/")):
        for field in SLICE_FIELDS:
            record[field] += slices[key][field] if field != "outputs" else [slices[key][field]]
    switch.closing = record
    switch.closing_texts = {name: texts[name]["text"] for name in record["files"]}
    switch.closing_items = None
    return forward_again(switch, record, texts) + [SetTimer(SLICE_TIMER, now_ms)]


REPORT_FIELDS = ("day", "member", "role", "sales_count", "sales_fen", "credits_count", "credits_fen",
                 "interchange_fen", "scheme_fee_fen", "net_position_fen")


def report(switch_id: str, record: dict[str, Any]) -> list[Publish]:
    """The day's settlement report: a CSV for machines and a text for people. A positive
    position is paid to the member, a negative one paid by it; with the scheme's fees they sum to zero."""
    day = record["day"]
    rows = []
    for inst, m in sorted(record["members"].items()):
        rows.append({"day": day, "member": inst, "role": m["role"], "sales_count": m["sales_count"], "sales_fen": m["sales_fen"],
                     "credits_count": m["credits_count"], "credits_fen": m["credits_fen"], "interchange_fen": m["interchange_fen"],
                     "scheme_fee_fen": m["scheme_fee_fen"], "net_position_fen": record["positions"].get(inst, m["net_fen"])})
    fees = record.get("fee_income_fen", 0)
    rows.append({"day": day, "member": switch_id, "role": "scheme", "sales_count": "", "sales_fen": "", "credits_count": "",
                 "credits_fen": "", "interchange_fen": "", "scheme_fee_fen": fees, "net_position_fen": fees})
    total = sum(int(r["net_position_fen"]) for r in rows)
    report_csv = to_csv(rows, REPORT_FIELDS)
    lines = [
        f"posnet scheme settlement report  清算日 {day[:4]}-{day[4:6]}-{day[6:]}",
        f"cycle closed {timefmt.stamp(record['closed_ms'])} CST; {record['items']} presentments in {len(record['files'])} files,"
        f" {record['rejected']} rejected",
        "",
        f"{'member':<10} {'role':<9} {'sales':>16} {'credits':>16} {'interchange':>13} {'scheme fee':>12} {'net position':>16}",
    ]
    for r in rows:
        sales = f"{r['sales_count']} / {yuan(r['sales_fen'])}" if r["role"] != "scheme" else ""
        credits = f"{r['credits_count']} / {yuan(r['credits_fen'])}" if r["role"] != "scheme" else ""
        inter = yuan(r["interchange_fen"]) if r["role"] != "scheme" else ""
        lines.append(f"{r['member']:<10} {r['role']:<9} {sales:>16} {credits:>16} {inter:>13} {yuan(r['scheme_fee_fen']):>12} {yuan(r['net_position_fen']):>16}")
    lines += ["", f"sum of net positions: {yuan(total)} (positive: paid to the member; negative: paid by it)"]
    if record["matches"]:
        lines.append("matching: " + ", ".join(f"{k} {v}" for k, v in sorted(record["matches"].items())))
    name = f"settlement_{switch_id}_{day}"
    return [Publish(REPORTS_BOX, name + ".csv", report_csv), Publish(REPORTS_BOX, name + ".txt", "\n".join(lines) + "\n")]

