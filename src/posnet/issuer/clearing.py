"""The issuer's side of clearing: holds posted from the switch's clearing files, and the day's reconciliation.

A presented sale posts its hold (挂账 → 入账): a smaller amount posts that
much and releases the rest; a sale with no standing hold — none was placed,
it expired, it was reversed — is force-posted and listed as an exception,
since the issuer owes the scheme for it all the same. A presented refund was
credited online and is only matched; a manual credit is credited now. At the
daily cut-off the issuer writes its reconciliation report: what matched,
the holds released that day, the exceptions and the differences.
docs/clearing.md.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .. import timefmt
from ..clearing_files import (
    CLEARING_FIELDS,
    REPORTS_BOX,
    clearing_day,
    receive,
    to_csv,
    yuan,
)
from ..effects import Effect, Publish, Put, Trace, mask_pan
from ..ledger import CreateTransferResult, Transfer, TransferFlags, chart
from ..ledger.ids import derive_id
from .accounts import INTERCHANGE_INCOME_ACCOUNT, SCHEME_SETTLEMENT_ACCOUNT, SUSPENSE_ACCOUNT

if TYPE_CHECKING:
    from .core import Issuer

# The issuer reconciles a day an hour after the scheme's cut-off, once that cycle's clearing files are in.
RECONCILE_AFTER_MS = 3600_000
OK = (CreateTransferResult.OK, CreateTransferResult.EXISTS)
FORCE_REASONS = {
    None: "no authorization",
    "expired": "hold expired before presentment",
    "reversed": "presented after reversal",
    "voided": "presented after void",
    "declined": "authorization was declined",
}


# What the issuer reads of a clearing file's line (docs/clearing.md has them all): each row a tuple of these.
POSTING_FIELDS = ("lifecycle", "kind", "merchant_id", "pan", "amount_fen", "host_key", "interchange_fen", "issuer_fee_fen", "source_file")
KIND, PAN, AMOUNT, HOST_KEY, INTERCHANGE, ISSUER_FEE = map(
    POSTING_FIELDS.index, ("kind", "pan", "amount_fen", "host_key", "interchange_fen", "issuer_fee_fen"))


def posting_id(auth_key: str) -> int:
    """The ledger transfer that posts an authorization's hold."""
    return derive_id("post", auth_key)


def new_day(day: str) -> dict[str, Any]:
    return {
        "day": day, "files": [], "presented": 0,
        "matched_count": 0, "matched_fen": 0, "posted_fen": 0,
        "refunds_matched_count": 0, "refunds_matched_fen": 0,
        "credits_count": 0, "credits_fen": 0,
        "interchange_fen": 0, "scheme_fee_fen": 0,
        "exceptions": [], "differences": [],
    }


def post_file(issuer: "Issuer", name: str, text: str, now_ms: int) -> list[Effect]:
    """A clearing file in the issuer's box, posted once: the same name again is ignored."""
    rows, refused = receive(issuer.files_in, name, text, CLEARING_FIELDS, "clearing file", now_ms, POSTING_FIELDS, as_tuples=True)
    if rows is None:
        return refused
    # Holds whose time is up are released first, so a late presentment meets them as they stand.
    effects: list[Effect] = issuer.expire_due(now_ms)
    # Reconciled in the issuer's own open day: normally the switch's clearing day of the file, the
    # next one when the file comes after the issuer has reconciled that day.
    day = clearing_day(issuer.cutoff_ms)
    recon = issuer.recon.setdefault(day, new_day(day))
    recon["files"].append(name)
    interchange, scheme_fee = sum(map(itemgetter(INTERCHANGE), rows)), sum(map(itemgetter(ISSUER_FEE), rows))
    recon["presented"] += len(rows)
    recon["interchange_fen"] += interchange
    recon["scheme_fee_fen"] += scheme_fee
    fees = interchange - scheme_fee
    touched: dict[str, dict[str, Any]] = {}
    auths = issuer.auths
    # Plain postings in a row, posted with one ledger call: each sale with its auth, and its posting.
    run: list[tuple[tuple, dict[str, Any]]] = []
    posts: list[tuple[int, int, int]] = []
    for row in rows:
        kind = row[KIND]
        if kind == "sale":
            key = row[HOST_KEY]
            auth = auths.get(key)
            if (auth is not None and auth.get("status") == "held" and auth["amount_fen"] == row[AMOUNT]
                    and auth.get("kind") == "sale" and auth.get("pan") == row[PAN]):
                # Posting a whole hold changes no available balance, so the run goes as one ledger call. A sale
                # presented twice in the run: its second posting finds it posted (``_sale``), as one at a time.
                run.append((row, auth))
                posts.append((posting_id(key), auth["hold_id"], row[AMOUNT]))
                continue
            _post_run(issuer, run, posts, recon, touched, effects, now_ms)
            _sale(issuer, _as_dict(row), recon, touched, effects, now_ms)
        else:
            _post_run(issuer, run, posts, recon, touched, effects, now_ms)
            if kind == "refund":
                _refund(issuer, _as_dict(row), recon, effects, now_ms)
            else:
                _credit(issuer, _as_dict(row), recon, effects, now_ms)
    _post_run(issuer, run, posts, recon, touched, effects, now_ms)
    if fees:
        dr, cr = (SCHEME_SETTLEMENT_ACCOUNT, INTERCHANGE_INCOME_ACCOUNT)
        if fees < 0:
            dr, cr = cr, dr
        issuer.ledger.create_transfers([Transfer(derive_id("interchange", name), dr, cr, abs(fees), chart.CNY, chart.FEE)], now_ms)
    issuer.files_in[name] = {"received_ms": now_ms, "status": "posted", "clearing_day": day, "count": len(rows)}
    effects += [Put("auths", k, a) for k, a in touched.items()]
    effects += [
        Put("clearing_files_in", name, issuer.files_in[name]),
        Put("reconciliation", day, recon),
        Trace("", "clearing file posted", {"file": name, "items": len(rows), "exceptions": len(recon["exceptions"])}),
    ]
    return effects


def _as_dict(row: tuple) -> dict[str, Any]:
    """A row as the rarer cases read it (any but a plain posting)."""
    return dict(zip(POSTING_FIELDS, row))


def _exception(recon: dict[str, Any], row: dict[str, Any], reason: str) -> None:
    recon["exceptions"].append(
        {"lifecycle": row["lifecycle"], "kind": row["kind"], "pan": mask_pan(row["pan"]), "amount_fen": row["amount_fen"], "reason": reason}
    )


def _post_run(issuer: "Issuer", run: list[tuple[tuple, dict[str, Any]]], posts: list[tuple[int, int, int]], recon, touched,
              effects: list[Effect], now_ms: int) -> None:
    """Sales presented for their held amount, one after another, each with its posting ``(id, hold id,
    amount)``: one ledger call posts their holds (the same results as one call each). A hold posted whole
    is ``_sale``'s plain case, done here; any other result goes on as ``_sale``. Empties the run."""
    if not run:
        return
    forget_hold, notify_posted = issuer.forget_hold, issuer.notify_posted
    matched = matched_fen = 0
    for (row, auth), (post_id, hold_id, amount), result in zip(run, posts, issuer.ledger.post_pending(posts, now_ms)):
        if result in OK and auth.get("status") == "held":  # still held: not a sale presented twice in the run
            forget_hold(hold_id)
            auth["status"], auth["posted_fen"] = "posted", amount  # no record: the ledger's posting is it (Issuer._follow_holds)
            matched += 1
            matched_fen += amount
            notify_posted(auth, amount, post_id, now_ms)
        else:
            _sale(issuer, _as_dict(row), recon, touched, effects, now_ms, (post_id, result))
    recon["matched_count"] += matched
    recon["matched_fen"] += matched_fen
    recon["posted_fen"] += matched_fen
    run.clear()
    posts.clear()


def _sale(issuer: "Issuer", row, recon, touched, effects: list[Effect], now_ms: int,
          posting: tuple[int, CreateTransferResult] | None = None) -> None:
    """``posting``: the posting's id and result, when ``_post_run`` has posted the hold already."""
    key, amount = row["host_key"], row["amount_fen"]
    auth = issuer.auths.get(key)
    if auth is not None and (auth.get("kind") != "sale" or auth.get("pan") != row["pan"]):
        auth = None
    status = auth.get("status") if auth else None
    if status == "held":
        held = auth["amount_fen"]
        posted = min(amount, held)
        if posting is None:
            post = Transfer(posting_id(key), 0, 0, posted, 0, 0, TransferFlags.POST_PENDING, pending_id=auth["hold_id"])
            posting = (post.id, *issuer.ledger.create_transfers([post], now_ms))
        post_id, result = posting
        if result in OK:
            issuer.forget_hold(auth["hold_id"])
            auth["status"], auth["posted_fen"] = "posted", posted  # no record: the ledger's posting is it (Issuer._follow_holds)
            recon["matched_count"] += 1
            recon["matched_fen"] += amount
            recon["posted_fen"] += posted
            issuer.notify_posted(auth, posted, post_id, now_ms)
            if amount < held:
                recon["differences"].append({"lifecycle": row["lifecycle"], "pan": mask_pan(row["pan"]), "held_fen": held,
                                             "presented_fen": amount, "released_fen": held - amount})
            elif amount > held:
                recon["differences"].append({"lifecycle": row["lifecycle"], "pan": mask_pan(row["pan"]), "held_fen": held,
                                             "presented_fen": amount, "force_posted_fen": amount - held})
                _force_debit(issuer, row, amount - held, "presented more than was authorized", recon, effects, now_ms)
            return
        status = "expired" if result == CreateTransferResult.PENDING_TRANSFER_EXPIRED else status
    if status == "posted":
        _exception(recon, row, "duplicate presentment: already posted, nothing moved")
        return
    _force_debit(issuer, row, amount, FORCE_REASONS.get(status, f"authorization {status}"), recon, effects, now_ms)
    if auth is not None:  # taken now: a later reversal of its void must not hold it again
        auth.update(status="posted", posted_fen=amount, force_posted=True, presented_in=row["source_file"])
        touched[key] = auth  # recorded: no hold of its own was posted, so the ledger cannot tell


def _force_debit(issuer: "Issuer", row, amount: int, reason: str, recon, effects: list[Effect], now_ms: int) -> None:
    """Post without a hold: the issuer owes the scheme for it. What the card cannot cover is advanced
    from suspense; a card that is not the issuer's goes to suspense whole. An exception either way."""
    tid = derive_id("force-post", row["source_file"], row["lifecycle"], row["host_key"])
    card = issuer.config.cards.get(row["pan"])
    lifecycle = derive_id("lifecycle", row["host_key"] or row["lifecycle"])
    if card is None:
        t = Transfer(tid, SUSPENSE_ACCOUNT, SCHEME_SETTLEMENT_ACCOUNT, amount, chart.CNY, chart.PURCHASE_POST, user_data=lifecycle)
        issuer.ledger.create_transfers([t], now_ms)
        _exception(recon, row, f"{reason}; not a card of this issuer: booked to suspense")
        return
    debit = Transfer(tid, card.account_id, SCHEME_SETTLEMENT_ACCOUNT, amount, chart.CNY, chart.PURCHASE_POST, user_data=lifecycle)
    result, advanced = issuer.debit_with_advance(debit, derive_id("advance", str(tid)), now_ms)
    note = reason + "; force-posted"
    if advanced:
        note += f" with an overdraft advance of {advanced} fen"
    elif result == CreateTransferResult.EXISTS:
        note = reason + "; presented again, nothing moved"
    _exception(recon, row, note)
    effects.append(Trace(row["lifecycle"], "presentment force-posted", {"reason": reason, "pan": mask_pan(row["pan"]), "amount": amount}))


def _refund(issuer: "Issuer", row, recon, effects: list[Effect], now_ms: int) -> None:
    auth = issuer.auths.get(row["host_key"])
    if auth is not None and auth.get("kind") == "refund" and auth.get("status") == "approved":
        recon["refunds_matched_count"] += 1
        recon["refunds_matched_fen"] += row["amount_fen"]
        return
    _credit_card(issuer, row, chart.REFUND_CREDIT, "refund with no approved authorization; credited", recon, effects, now_ms)


def _credit(issuer: "Issuer", row, recon, effects: list[Effect], now_ms: int) -> None:
    recon["credits_count"] += 1
    recon["credits_fen"] += row["amount_fen"]
    _credit_card(issuer, row, chart.MANUAL_CREDIT, None, recon, effects, now_ms)


def _credit_card(issuer: "Issuer", row, code: int, reason: str | None, recon, effects: list[Effect], now_ms: int) -> None:
    card = issuer.config.cards.get(row["pan"])
    target = card.account_id if card else SUSPENSE_ACCOUNT
    tid = derive_id("presented-credit", row["source_file"], row["lifecycle"])
    t = Transfer(tid, SCHEME_SETTLEMENT_ACCOUNT, target, row["amount_fen"], chart.CNY, code,
                 user_data=derive_id("lifecycle", row["host_key"] or row["lifecycle"]))
    (result,) = issuer.ledger.create_transfers([t], now_ms)
    if card is None:
        _exception(recon, row, (reason or "credit") + "; not a card of this issuer: booked to suspense")
    elif reason:
        _exception(recon, row, reason)
    if card is not None and result == CreateTransferResult.OK:
        issuer.notify_credited(row, card, t.id, now_ms)
    effects.append(Trace(row["lifecycle"], "presented credit booked", {"pan": mask_pan(row["pan"]), "amount": row["amount_fen"]}))


# -- the day's reconciliation ---------------------------------------------------------------------


def released_between(issuer: "Issuer", start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Holds released in (start, end]: by reversal, by void, or at expiry."""
    out = []
    for key, auth in issuer.auths.items():
        status = auth.get("status")
        if auth.get("kind") != "sale" or status not in ("reversed", "voided", "expired"):
            continue
        if status == "expired":
            hold = issuer.ledger.transfer(auth["hold_id"])
            at = hold.timestamp_ms + hold.timeout_s * 1000 if hold else 0
        else:
            t = issuer.ledger.transfer(derive_id(f"{'reversal' if status == 'reversed' else 'void'}:{key}"))
            at = t.timestamp_ms if t else 0
        if start_ms < at <= end_ms:
            out.append({"lifecycle": auth["rrn"], "pan": mask_pan(auth["pan"]), "amount_fen": auth["amount_fen"], "how": status})
    return out


def close_day(issuer: "Issuer", cutoff_ms: int, now_ms: int) -> list[Effect]:
    day = clearing_day(cutoff_ms)
    recon = issuer.recon.get(day) or new_day(day)
    start = issuer.closed_cutoff_ms if issuer.closed_cutoff_ms is not None else cutoff_ms - 24 * 3600_000
    recon["released"] = sorted(
        released_between(issuer, start + RECONCILE_AFTER_MS, cutoff_ms + RECONCILE_AFTER_MS), key=lambda r: r["lifecycle"]
    )
    held = [a for a in issuer.auths.values() if a.get("kind") == "sale" and a.get("status") == "held"]
    recon["still_held_count"], recon["still_held_fen"] = len(held), sum(a["amount_fen"] for a in held)
    recon["closed_ms"] = now_ms
    issuer.recon.pop(day, None)
    issuer.closed_cutoff_ms = cutoff_ms
    return [
        Put("reconciliation", day, recon),
        Put("state", "cutoff", {"closed_cutoff_ms": cutoff_ms}),
        *report(issuer.config.name, recon),
        Trace("", "reconciliation closed", {"day": day, "matched": recon["matched_count"], "exceptions": len(recon["exceptions"]),
                                            "released": len(recon["released"])}),
    ]


REPORT_FIELDS = ("day", "section", "lifecycle", "pan", "amount_fen", "detail")


def report(issuer_name: str, recon: dict[str, Any]) -> list[Publish]:
    """The issuer's reconciliation report of one day: a CSV of the items and a text for people."""
    day = recon["day"]
    rows = [
        {"day": day, "section": "summary", "lifecycle": "", "pan": "", "amount_fen": recon[f"{what}_fen"], "detail": f"{what}: {recon[f'{what}_count']}"}
        for what in ("matched", "refunds_matched", "credits", "still_held")
    ]
    rows += [{"day": day, "section": "released", "lifecycle": r["lifecycle"], "pan": r["pan"], "amount_fen": r["amount_fen"], "detail": r["how"]}
             for r in recon.get("released", [])]
    rows += [{"day": day, "section": "exception", "lifecycle": e["lifecycle"], "pan": e["pan"], "amount_fen": e["amount_fen"], "detail": e["reason"]}
             for e in recon["exceptions"]]
    rows += [{"day": day, "section": "difference", "lifecycle": d["lifecycle"], "pan": d["pan"], "amount_fen": d["presented_fen"] - d["held_fen"],
              "detail": f"held {d['held_fen']}, presented {d['presented_fen']}"} for d in recon["differences"]]
    released = recon.get("released", [])
    lines = [
        f"posnet issuer reconciliation  {issuer_name}  清算日 {day[:4]}-{day[4:6]}-{day[6:]}",
        f"closed {timefmt.stamp(recon['closed_ms'])} CST; {recon['presented']} items in {len(recon['files'])} clearing files",
        "",
        f"matched and posted   {recon['matched_count']:>8}  {yuan(recon['posted_fen']):>14}",
        f"refunds matched      {recon['refunds_matched_count']:>8}  {yuan(recon['refunds_matched_fen']):>14}",
        f"manual credits       {recon['credits_count']:>8}  {yuan(recon['credits_fen']):>14}",
        f"holds released       {len(released):>8}  {yuan(sum(r['amount_fen'] for r in released)):>14}",
        f"holds still standing {recon['still_held_count']:>8}  {yuan(recon['still_held_fen']):>14}",
        f"exceptions           {len(recon['exceptions']):>8}",
        f"differences          {len(recon['differences']):>8}",
        f"interchange earned   {yuan(recon['interchange_fen']):>24}    scheme fee paid {yuan(recon['scheme_fee_fen'])}",
    ]
    for title, items, fmt in (
        ("released holds", released, lambda r: f"  {r['lifecycle']}  {r['pan']}  {yuan(r['amount_fen'])}  {r['how']}"),
        ("exceptions", recon["exceptions"], lambda e: f"  {e['lifecycle']}  {e['pan']}  {yuan(e['amount_fen'])}  {e['reason']}"),
        ("differences", recon["differences"], lambda d: f"  {d['lifecycle']}  {d['pan']}  held {yuan(d['held_fen'])}, presented {yuan(d['presented_fen'])}"),
    ):
        if items:
            lines += ["", title + ":"] + [fmt(i) for i in items]
    name = f"reconciliation_{issuer_name}_{day}"
    return [Publish(REPORTS_BOX, name + ".csv", to_csv(rows, REPORT_FIELDS)), Publish(REPORTS_BOX, name + ".txt", "\n".join(lines) + "\n")]

