"""A day of trade, its settlement and its clearing, over real TCP: one sale's reply lost, the batch still
balances, the cut-off posts every hold and the members' positions sum to zero."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from cli_helpers import wait_until

from posnet import config, timefmt
from posnet.ledger import chart
from posnet.cli import issuer_balances, start_network, stop_network
from posnet.demo.story import free_port_block, write_config
from posnet.runtime.parties import open_party, store_location
from posnet.runtime.store import PartyStore

pytestmark = pytest.mark.e2e


def test_a_day_of_sales_voids_refunds_and_a_lost_reply_settles_balanced(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        'tmk = "0123456789ABCDEFFEDCBA9876543210"', 'tmk = "0123456789ABCDEFFEDCBA9876543210"\nresponse_timeout_ms = 2000', 1
    )
    base = free_port_block(5)
    text += f"\n[chaos]\nenabled = true\nbase_port = {base}\ncontrol_port = {base + 4}\n"
    text += "\n[clearing]\nslice_items = 1\n"  # the cut-off cleared a presentment an input, each with its own file
    text = text.replace("[network]\n", "[network]\ndev_clock = true\n", 1)
    path.write_text(text, encoding="utf-8")
    net = config.load(path)

    def posnet(*args):
        env = {**os.environ, "POSNET_CONFIG": str(path)}
        p = subprocess.run([sys.executable, "-m", "posnet", *args], capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def pos(*args):
        p = subprocess.run([sys.executable, "-m", "posnet", "pos", "--config", str(path), "--json", *args],
                           capture_output=True, text=True, timeout=60)
        return json.loads(p.stdout.strip().splitlines()[-1])

    procs = start_network(net, str(path), quiet=True)
    try:
        assert pos("sign-on")["ok"]
        a = pos("sale", "--amount", "100.00")
        pos("sale", "--amount", "50.00")
        pos("void", "--voucher", a["result"]["voucher_no"])
        c = pos("sale", "--amount", "200.00")
        mmdd = c["receipts"][0].split("日期/时间(DATE/TIME): ")[1][5:10].replace("/", "")
        pos("refund", "--ref", c["result"]["reference_no"], "--date", mmdd, "--amount", "20.00")
        # One sale whose reply is lost: approved and held by the issuer, no receipt at the terminal.
        control = f"127.0.0.1:{base + 4}"
        subprocess.run([sys.executable, "-m", "posnet", "chaos", "set", "--control", control, "terminal-acquirer",
                        "--direction", "down", "drop_next=1"], check=True, capture_output=True)
        lost = pos("sale", "--amount", "33.00")
        assert not lost["ok"] and lost["receipts"] == []
        settled = pos("settle")
        assert settled["ok"], settled
        assert settled["result"]["balanced"] is True
        assert "冲正中 REVERSING" in settled["screen"], "the lost sale is reversed before the settlement"
        assert any("结算总计单 SETTLEMENT" in r and "对账平 BALANCED" in r for r in settled["receipts"])

        # The switch takes the acquirer's presentment file from its box (it looks every second) …
        assert wait_until(lambda: list((net.clearing_dir / "to-switch" / "done").glob("P*.csv"))), "the switch took the file"
        # … and the day ends: past the switch's cut-off (23:00), then past the issuers' reconciliation an hour later.
        now = timefmt.local(json.loads(posnet("clock", "show", "--json"))["now_ms"])
        to_cutoff = (now.replace(hour=23, minute=5, second=0) - now).total_seconds()
        if to_cutoff <= 0:
            to_cutoff += 24 * 3600
        posnet("clock", "advance", f"{int(to_cutoff) + 1}s")
        # Two sales and a refund, cleared a slice each: three clearing files, each taken by the issuer.
        assert wait_until(lambda: len(list((net.clearing_dir / "to-issuer-bank-a" / "done").glob("*.csv"))) == 3), "the issuer took its files"
        posnet("clock", "advance", "1h")
        report = posnet("clearing", "report", "--csv")
    finally:
        stop_network(procs)
    store = PartyStore(store_location(net, "acquirer"), with_ledger=True)
    try:
        ledger = store.load_ledger()
        ledger.check_invariants()
        merchant = ledger.account(1000)
        assert merchant.credits_posted - merchant.debits_posted == 5_000 + 20_000 - 2_000 - 150, "credited once, net of fees"
        presented = store.load()["presentments"]
        assert sorted(p["kind"] for p in presented.values()) == ["refund", "sale", "sale"]
    finally:
        store.close()
    held = issuer_balances(net, ["6222020000000001"])["6222020000000001"]
    assert held == 1_000_000 - 5_000 - 20_000 + 2_000, "the lost sale's hold was released; the others stand"

    # Clearing: the switch's settlement report sums to zero; the issuer posted both standing sales.
    settlement = [r for r in csv.DictReader(io.StringIO(report.split("# settlement_")[1].split("\n", 1)[1]))]
    assert {r["member"] for r in settlement} == {"48020000", "01020000", "00010000"}
    assert sum(int(r["net_position_fen"]) for r in settlement) == 0
    acquirer_row = next(r for r in settlement if r["member"] == "48020000")
    assert (acquirer_row["sales_count"], acquirer_row["sales_fen"], acquirer_row["credits_fen"]) == ("2", "25000", "2000")
    for party in ("switch", "issuer-bank-a"):
        store = PartyStore(store_location(net, party), with_ledger=True)
        try:
            ledger = store.load_ledger()
            ledger.check_invariants()  # every party's books balance
            tables = store.load()
        finally:
            store.close()
        if party == "switch":
            positions = [a for a in ledger.accounts() if a.code == chart.SWITCH_MEMBER_POSITION]
            assert positions and all(a.credits_posted == a.debits_posted for a in positions), "settled to zero at the cut-off"
        else:
            node, _ = open_party(net, party)  # the auths as the issuer reads them at a start (its holds' fate from the ledger)
            node.store.close()
            sales = sorted((a["amount_fen"], a["status"]) for a in node.core.auths.values() if a["kind"] == "sale")
            assert sales == [(3_300, "reversed"), (5_000, "posted"), (10_000, "voided"), (20_000, "posted")]
            [recon] = [r for r in tables["reconciliation"].values() if r["matched_count"]]
            assert recon["exceptions"] == [] and recon["posted_fen"] == 25_000
