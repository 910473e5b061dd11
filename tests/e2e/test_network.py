"""The network over real TCP: four parties as processes, the terminal as the `posnet pos` command."""

import pytest

from posnet.runtime.pos import TerminalDriver

from posnet.terminal.core import Card

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"


def test_sign_on_inquiry_sale_void_sale_refund(run_pos, issuer_balance, network):
    start = issuer_balance(network, PAN)

    signed = run_pos(network, "sign-on")
    assert signed["ok"] and signed["result"]["batch_no"] == "000001"

    inquiry = run_pos(network, "inquiry")
    assert inquiry["ok"] and inquiry["result"]["balance_fen"] == start

    sale = run_pos(network, "sale", "--amount", "88.00")
    assert sale["ok"], sale
    assert issuer_balance(network, PAN) == start - 8800
    voucher = sale["result"]["voucher_no"]
    ref = sale["result"]["reference_no"]
    merchant_copy, cardholder_copy = sale["receipts"]
    assert "商户存根 MERCHANT COPY" in merchant_copy and "持卡人存根 CARDHOLDER COPY" in cardholder_copy
    for field in (f"凭证号(VOUCHER NO.): {voucher}", f"参考号(REFER NO.): {ref}", "批次号(BATCH NO.): 000001",
                  f"授权码(AUTH NO.): {sale['result']['auth_code']}", "卡号(CARD NO.): 622202******0001 /S",
                  "金额(AMOUNT): RMB 88.00"):
        assert field in merchant_copy, field
    assert PAN not in merchant_copy + cardholder_copy

    void = run_pos(network, "void", "--voucher", voucher)
    assert void["ok"], void
    assert issuer_balance(network, PAN) == start

    sale2 = run_pos(network, "sale", "--amount", "66.66")
    assert sale2["ok"]
    assert issuer_balance(network, PAN) == start - 6666

    date = sale2["receipts"][0].split("日期/时间(DATE/TIME): ")[1][5:10].replace("/", "")
    refund = run_pos(network, "refund", "--ref", sale2["result"]["reference_no"], "--date", date, "--amount", "20.00")
    assert refund["ok"], refund
    assert issuer_balance(network, PAN) == start - 6666 + 2000
    assert "退货 REFUND" in refund["receipts"][0]


@pytest.mark.parametrize(
    "card, pin, amount, code",
    [
        ("6222029999999999", "123456", "1.00", "14"),
        ("6222020000000027", "654321", "100.01", "51"),
        ("6222020000000019", "123456", "1.00", "54"),
        ("6222020000000001", "000000", "1.00", "55"),
        ("4000000000000002", "123456", "1.00", "15"),
    ],
)
def test_declines(run_pos, issuer_balance, network, card, pin, amount, code):
    run_pos(network, "sign-on")
    held_before = issuer_balance(network, "6222020000000027")
    out = run_pos(network, "sale", "--card", card, "--expiry", "3012" if card != "6222020000000019" else "2001",
              "--pin", pin, "--amount", amount)
    assert out["response_code"] == code, out
    assert out["receipts"] == []
    assert issuer_balance(network, "6222020000000027") == held_before


def test_three_wrong_pins_give_75(run_pos, issuer_balance, network):
    card = "6217000000000001"  # bank-b, untouched by the other tests
    run_pos(network, "sign-on")
    codes = [run_pos(network, "sale", "--card", card, "--pin", "111111", "--amount", "1.00")["response_code"] for _ in range(3)]
    assert codes == ["55", "55", "75"]


def test_unregistered_terminal_gets_97(run_pos, issuer_balance, network, tmp_path):
    from posnet import config

    text = network.path.read_text(encoding="utf-8") + (
        '\n[[acquirer.terminals]]\nterminal_id = "99999999"\nmerchant_id = "898310148160001"\n'
        'tmk = "0123456789ABCDEFFEDCBA9876543210"\n'
    )
    text = text.replace('data_dir = "data"', f'data_dir = "{tmp_path / "pos-data"}"')
    pos_side = tmp_path / "posnet.toml"
    pos_side.write_text(text, encoding="utf-8")
    driver = TerminalDriver(config.load(pos_side), "99999999")
    try:
        out = driver.run("sign-on")
    finally:
        driver.close()
    assert out.done.response_code == "97"


def test_bad_mac_gets_a0_and_moves_no_money(run_pos, issuer_balance, network):
    run_pos(network, "sign-on")
    before = issuer_balance(network, PAN)
    driver = TerminalDriver(network, "10000001")
    try:
        driver.core.keys["mak"] = driver.hsm.generate_key()  # a MAC key the acquirer never issued
        out = driver.run("sale", card=Card(PAN, "3012"),
                         pin="123456", amount_fen=100)
    finally:
        driver.close()
    assert out.done.response_code == "A0"
    assert issuer_balance(network, PAN) == before
    again = run_pos(network, "sale", "--amount", "1.00")
    assert again["ok"], again
    assert "重新签到 SIGNING ON AGAIN" in again["screen"], "after A0 the terminal signs on again first"
    run_pos(network, "void", "--voucher", again["result"]["voucher_no"])


def test_echo_and_sign_off(run_pos, issuer_balance, network):
    assert run_pos(network, "echo")["ok"]
    assert run_pos(network, "sign-on")["ok"]
    assert run_pos(network, "sign-off")["ok"]
    assert not run_pos(network, "sale", "--amount", "1.00")["ok"]
    assert run_pos(network, "sign-on")["ok"]
