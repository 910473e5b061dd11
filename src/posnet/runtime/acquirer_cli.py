"""`posnet acquirer manual-credit …`, `posnet acquirer audit`, `posnet acquirer books`.

Manual credits (手工划款, docs/manual-credit.md) are decided by the running acquirer: a request,
an approval or a rejection reaches it over its control socket (runtime/control.py) as a
``Command`` of its core, and is answered once its records — and any money it moved — are
committed. ``list``, ``audit`` and ``books`` only read the acquirer's store, running or not.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import config as cfg
from .. import timefmt
from ..acquirer import manual_credit as mc

OPERATIONS = ("manual-credit", "audit", "books")


def add_parsers(ops) -> None:
    """Under `posnet acquirer` (register_acquirer_cli in pos_devices.py)."""
    m = ops.add_parser("manual-credit", help="手工划款: pay a merchant or return money to a card by hand; a second operator approves")
    steps = m.add_subparsers(dest="step", required=True)
    f = steps.add_parser("request", help="ask for a manual credit (no money moves until a second operator approves)")
    f.add_argument("--operator", required=True, help="who asks (one of [acquirer] operators)")
    g = f.add_mutually_exclusive_group(required=True)
    g.add_argument("--merchant", metavar="MID", help="pay this merchant, out of the acquirer's funds")
    g.add_argument("--card", metavar="PAN", help="return money to this card through the scheme")
    f.add_argument("--ref", metavar="RRN", help="with --card: the reference number (参考号) of the sale it returns")
    f.add_argument("--debit-merchant", metavar="MID", help="with --card: the merchant who bears it (default: the acquirer's funds)")
    f.add_argument("--amount", required=True, help="yuan, e.g. 100.00")
    f.add_argument("--reason", help="why: required, kept in the audit trail")
    f.add_argument("--json", action="store_true")
    f = steps.add_parser("approve", help="approve a request: the money moves (never the requester's own)")
    f.add_argument("id", help="the request, e.g. MC000001")
    f.add_argument("--operator", required=True)
    f.add_argument("--json", action="store_true")
    f = steps.add_parser("reject", help="reject a request: no money moves")
    f.add_argument("id")
    f.add_argument("--operator", required=True)
    f.add_argument("--reason", help="why: required")
    f.add_argument("--json", action="store_true")
    f = steps.add_parser("list", help="the manual credits and their status")
    f.add_argument("--status", choices=("pending", "approved", "rejected"))
    f.add_argument("--json", action="store_true")
    f = ops.add_parser("audit", help="the operators' audit trail: every manual-credit step, refused ones too")
    f.add_argument("--json", action="store_true")
    f = ops.add_parser("books", help="the acquirer's accounts: its funds, the scheme, fee income, each merchant")
    f.add_argument("--json", action="store_true")


def run(net: cfg.Network, args: argparse.Namespace) -> int:
    if args.operation == "audit":
        return _audit(net, args)
    if args.operation == "books":
        return _books(net, args)
    if args.step == "list":
        return _list(net, args)
    if args.step == "request":
        command = _request_args(args)
    else:
        command = {"id": args.id, "operator": args.operator}
        if args.step == "reject":
            command["reason"] = args.reason or ""
    return _decide(net, f"manual-credit-{args.step}", command, args.json)


def _request_args(args: argparse.Namespace) -> dict[str, Any]:
    command: dict[str, Any] = {"operator": args.operator, "amount_fen": cfg.yuan_to_fen(args.amount), "reason": args.reason or ""}
    if args.merchant:
        if args.ref or args.debit_merchant:
            raise cfg.ConfigError("--ref and --debit-merchant go with --card (a return to a cardholder)")
        return {**command, "target": "merchant", "merchant_id": args.merchant}
    return {**command, "target": "cardholder", "pan": args.card, "original_rrn": args.ref or "",
            "debit_merchant_id": args.debit_merchant or ""}


def _decide(net: cfg.Network, name: str, command: dict[str, Any], as_json: bool) -> int:
    from . import control
    from .parties import party_dir

    reply = control.send(party_dir(net, "acquirer"), name, command)
    if reply is None:
        raise cfg.ConfigError("the acquirer is not running: manual credits are decided by the running acquirer (start it: posnet up)")
    answers = [t for t in reply.get("traces", []) if t.get("event") == mc.TRACE_EVENT]
    if not reply.get("ok") or not answers:
        print(f"posnet: the acquirer did not answer the manual credit: {reply.get('error') or reply}", file=sys.stderr)
        return 1
    answer = {k: v for k, v in answers[-1].items() if k != "event"}
    if as_json:
        print(json.dumps(answer, ensure_ascii=False))
    if answer["outcome"] == "refused":
        print(f"posnet: refused: {answer['error']}", file=sys.stderr)
        return 1
    if not as_json:
        print(_said(answer))
    return 0


def _said(r: dict[str, Any]) -> str:
    what = _what(r)
    if r["outcome"] == "requested":
        return (f"{r['id']} requested by {r['maker']}: {what}; pending until a second operator approves it:\n"
                f"  posnet acquirer manual-credit approve {r['id']} --operator NAME")
    if r["outcome"] == "approved":
        presented = f"; presented to the scheme as {r['lifecycle']}" if r.get("lifecycle") else ""
        return f"{r['id']} approved by {r['checker']} (requested by {r['maker']}): {what}{presented}"
    return f"{r['id']} rejected by {r['checker']}: {r['decision_reason']}"


def _what(r: dict[str, Any]) -> str:
    amount = _yuan(r["amount_fen"])
    if r["target"] == "merchant":
        return f"pay merchant {r['merchant_id']} {amount}"
    sale = f" (sale {r['original_rrn']})" if r.get("original_rrn") else ""
    bearer = f"merchant {r['debit_merchant_id']}" if r.get("debit_merchant_id") else "the acquirer's funds"
    return f"return {amount} to card {r['pan']}{sale}, borne by {bearer}"


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"RMB {sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


# -- reading the acquirer's store ---------------------------------------------------------


def _read(net: cfg.Network, with_ledger: bool = False):
    """The acquirer's records (and books), read from its store; the acquirer may be running."""
    from .parties import party_dir, party_schema, store_location
    from .store import PartyStore

    location = store_location(net, "acquirer")
    postgres = location.startswith("postgres")
    if not postgres and not (party_dir(net, "acquirer") / "acquirer.sqlite").exists():
        raise cfg.ConfigError("the acquirer has kept no records yet: start the network first (posnet up)")
    store = PartyStore(location, with_ledger=with_ledger, schema=party_schema(net, "acquirer") if postgres else None)
    try:
        return store.load(), store.load_ledger() if with_ledger else None
    finally:
        store.close()


def _list(net: cfg.Network, args: argparse.Namespace) -> int:
    tables, _ = _read(net)
    records = [mc.public(r) for _, r in sorted(tables.get(mc.REQUESTS_TABLE, {}).items())]
    records = [r for r in records if args.status in (None, r["status"])]
    return _show(args, "manual_credits", records, f"{'ID':<9} {'STATUS':<9} {'MAKER':<10} {'CHECKER':<10} WHAT / REASON",
                 lambda r: f"{r['id']:<9} {r['status']:<9} {r['maker']:<10} {r['checker'] or '-':<10} {_what(r)} / {r['reason']}")


def _audit(net: cfg.Network, args: argparse.Namespace) -> int:
    tables, _ = _read(net)
    rows = [r for _, r in sorted(tables.get(mc.AUDIT_TABLE, {}).items())]
    return _show(args, "audit", rows, f"{'SEQ':>4}  {'TIME':<19}  {'OPERATOR':<10} {'ACTION':<16} {'ID':<9} DETAIL",
                 lambda r: f"{r['seq']:>4}  {timefmt.stamp(r['at_ms'])}  {r['operator']:<10} {r['action']:<16} "
                           f"{r['request_id'] or '-':<9} {_audit_detail(r['detail'])}")


def _show(args: argparse.Namespace, name: str, rows: list[dict[str, Any]], header: str, line) -> int:
    """Rows as JSON ({name: rows}) for scripts, or a header and a line a row for people."""
    if args.json:
        print(json.dumps({name: rows}, ensure_ascii=False))
        return 0
    print(header)
    for r in rows:
        print(line(r))
    return 0


def _audit_detail(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"refused: {d['error']}"
    parts = [_yuan(d["amount_fen"])] if "amount_fen" in d else []
    parts += [f"card {d['pan']}"] if "pan" in d else []
    parts += [f"merchant {d['merchant_id']}"] if "merchant_id" in d else []
    return "; ".join(parts + [d.get("reason", "")])


def _books(net: cfg.Network, args: argparse.Namespace) -> int:
    from ..ledger import chart
    from .parties import party_dir, security_module

    _, ledger = _read(net, with_ledger=True)
    merchants = {m.account_id: m.merchant_id for m in cfg.acquirer_config(net, security_module(party_dir(net, "acquirer"))).merchants.values()}
    accounts = []
    for a in ledger.accounts():
        accounts.append({
            "id": a.id,
            "name": chart.ACCOUNT_CODE_NAMES.get(a.code, str(a.code)),
            "merchant_id": merchants.get(a.id, ""),
            "debits_posted_fen": a.debits_posted,
            "credits_posted_fen": a.credits_posted,
            "balance_fen": a.credits_posted - a.debits_posted,
        })
    return _show(args, "accounts", accounts, f"{'ACCOUNT':>7}  {'':<34} {'DEBITS':>16} {'CREDITS':>16} {'BALANCE':>16}",
                 lambda a: f"{a['id']:>7}  {(a['name'] + ' ' + a['merchant_id']).strip():<34} {_yuan(a['debits_posted_fen']):>16} "
                           f"{_yuan(a['credits_posted_fen']):>16} {_yuan(a['balance_fen']):>16}")
