"""A day of trade and its settlement, over real TCP: one sale's reply lost, the batch still balances."""

import json
import subprocess
import sys

import pytest

from posnet import config
from posnet.cli import issuer_balances, start_network, stop_network
from posnet.demo.story import free_port_block, write_config
from posnet.runtime.parties import store_location
from posnet.runtime.store import PartyStore

pytestmark = pytest.mark.e2e


def test_a_day_of_sales_voids_refunds_and_a_lost_reply_settles_balanced(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        'tmk = "0123456789ABCDEFFEDCBA9876543210"', 'tmk = "0123456789ABCDEFFEDCBA9876543210"\nresponse_timeout_ms = 2000', 1
    )
    base = free_port_block(5)
    text += f"\n[chaos]\nenabled = true\nbase_port = {base}\ncontrol_port = {base + 4}\n"
    path.write_text(text, encoding="utf-8")
    net = config.load(path)

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
