"""The terminal as a device, end to end: each party its own process, the terminal over TCP."""

import json

import pytest
from cli_helpers import balance, pos, posnet, wait_until

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"
PASSWORD = "147258"


def fresh(net, terminal="10000001"):
    """A charged terminal with paper, signed on."""
    pos(net, "--terminal", terminal, "battery", "--level", "100", "--unplug")
    pos(net, "--terminal", terminal, "load-paper")
    assert pos(net, "--terminal", terminal, "sign-on")["ok"]


def acquirer_trace_lines(net) -> int:
    path = net.data_dir / "acquirer" / "trace.jsonl"
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def test_low_voltage_after_approval_no_slip_detail_shows_it_charged_reprint_last_and_one_hold(network):
    fresh(network)
    before = balance(network, PAN)
    pos(network, "battery", "--level", "7.0V")  # at the protection level: the radio's drain of the sale takes it below
    sale = pos(network, "sale", "--amount", "88.00")
    assert sale["ok"] and sale["receipts"] == []
    assert "电量不足,请充电 BATTERY LOW, PLEASE CHARGE; 签购单未打印 RECEIPT NOT PRINTED" in sale["screen"]
    voucher = sale["result"]["voucher_no"]

    detail = pos(network, "detail")
    assert voucher in [e["voucher_no"] for e in detail["result"]["entries"]]
    charging = pos(network, "battery", "--charge")
    assert any(f"凭证号 VOUCHER {voucher}; 请重打印 PLEASE REPRINT" in s for s in charging["screen"])
    reprint = pos(network, "reprint")
    assert reprint["ok"] and len(reprint["receipts"]) == 2
    assert all("****重打印 REPRINT****" in r and f"凭证号(VOUCHER NO.): {voucher}" in r for r in reprint["receipts"])
    assert balance(network, PAN) == before - 8800, "exactly one hold of the sale's amount"


def test_paper_out_mid_slip_the_sale_stands_load_paper_reprint_last(network):
    fresh(network)
    before = balance(network, PAN)
    pos(network, "load-paper", "--length-m", "0.15")
    sale = pos(network, "sale", "--amount", "42.00")
    assert sale["ok"] and sale["response_code"] == "00"
    merchant, torn = sale["receipts"]
    assert "商户存根 MERCHANT COPY" in merchant and "金额(AMOUNT): RMB 42.00" in merchant
    assert "持卡人存根 CARDHOLDER COPY" in torn and "金额(AMOUNT)" not in torn, "the paper ran out mid-slip"
    assert "缺纸 PAPER OUT: 请装纸后重打印 LOAD PAPER, THEN REPRINT" in sale["screen"]
    pos(network, "load-paper")
    reprint = pos(network, "reprint")
    assert reprint["ok"] and len(reprint["receipts"]) == 1
    assert "持卡人存根 CARDHOLDER COPY" in reprint["receipts"][0] and "****重打印 REPRINT****" in reprint["receipts"][0]
    assert balance(network, PAN) == before - 4200


def test_reprint_by_voucher_number_of_an_earlier_sale(network):
    fresh(network)
    first = pos(network, "sale", "--amount", "11.11")["result"]["voucher_no"]
    pos(network, "sale", "--amount", "22.22")
    out = pos(network, "reprint", "--voucher", str(int(first)))
    assert out["ok"] and len(out["receipts"]) == 2
    assert all(f"凭证号(VOUCHER NO.): {first}" in r and "RMB 11.11" in r and "REPRINT" in r for r in out["receipts"])


def test_battery_below_protection_refuses_a_sale_before_anything_is_sent(network):
    fresh(network)
    before, traced = balance(network, PAN), acquirer_trace_lines(network)
    pos(network, "battery", "--level", "25")  # 25 % is 6.9 V: below the 7.0 V protection
    sale = pos(network, "sale", "--amount", "5.00")
    assert sale["ok"] is False and sale["result"] == {"error": "battery low"}
    assert sale["screen"] == ["电量不足,请充电 BATTERY LOW, PLEASE CHARGE"]
    assert acquirer_trace_lines(network) == traced, "the acquirer heard nothing"
    assert balance(network, PAN) == before
    pos(network, "battery", "--charge")
    assert pos(network, "sale", "--amount", "5.00")["ok"]


def test_power_cut_between_sending_a_sale_and_its_reply_reversal_first_at_power_up_money_back(network):
    fresh(network)
    before = balance(network, PAN)
    cut = posnet(network, "pos", "--json", "power-cut", "--at", "sent", "sale", "--amount", "66.00")
    assert cut.returncode == -9 and cut.stdout == "", "killed after the request left, before the reply"
    assert wait_until(lambda: balance(network, PAN) == before - 6600), "the issuer approved and holds the money"
    boot = pos(network, "power-on")
    assert boot["screen"][:3] == ["POSNET 10000001 欢迎使用 WELCOME", "自动冲正 AUTO REVERSAL", "冲正中 REVERSING"]
    assert boot["ok"] and boot["result"] == {"reversal": "done"}
    assert wait_until(lambda: balance(network, PAN) == before), "the reversal gave the money back"
    assert pos(network, "detail")["result"]["entries"] == [] or all(
        e["amount_fen"] != 6600 for e in pos(network, "detail")["result"]["entries"]
    ), "the sale is not in the detail list"


def test_opened_case_keys_erased_locked_password_unlocks_no_trade_until_a_new_tmk_and_sign_on(network, tmp_path):
    t = ("--terminal", "10000002")
    fresh(network, "10000002")
    before = balance(network, PAN)
    opened = pos(network, *t, "open-case")
    assert opened["result"] == {"locked": True, "reason": "case opened", "keys_erased": True}
    status = pos(network, *t, "status")["result"]
    assert status["locked"] and not status["has_tmk"] and not status["signed_on"]
    assert pos(network, *t, "sale", "--amount", "1.00")["result"]["error"] == "protection"
    assert pos(network, *t, "unlock", "--password", "000000")["result"]["error"] == "wrong"
    assert pos(network, *t, "unlock", "--password", PASSWORD)["ok"]
    assert pos(network, *t, "sale", "--amount", "1.00")["result"] == {"error": "no master key"}
    assert pos(network, *t, "sign-on")["result"] == {"error": "no master key"}

    key_file = tmp_path / "tmk-10000002.json"
    injected = posnet(network, "acquirer", "inject-tmk", "--terminal", "10000002", "--key-file", str(key_file), "--json", check=True)
    out = json.loads(injected.stdout)
    assert out["acquirer"] == "running acquirer" and len(out["kcv"]) == 8
    assert "tmk_under_tk" in key_file.read_text() and key_file.stat().st_mode & 0o077 == 0
    assert pos(network, *t, "sale", "--amount", "1.00")["result"] == {"error": "no master key"}, "not loaded yet"
    loaded = pos(network, *t, "load-tmk", "--key-file", str(key_file))
    assert loaded["ok"] and loaded["result"] == {"kcv": out["kcv"]}
    assert pos(network, *t, "sale", "--amount", "1.00")["result"] == {"error": "not signed on"}
    assert pos(network, *t, "sign-on")["ok"]
    assert pos(network, *t, "sale", "--amount", "1.00")["ok"]
    assert balance(network, PAN) == before - 100
