"""Each of the six one-way hops loses one message, through the fault proxy, over real TCP.

The sale fails with no receipt; after the next terminal transaction or the
store-and-forward retry the issuer's hold is voided; the cardholder's
balance is whole again; nothing is charged twice.
"""

import json
import time
import urllib.request
from contextlib import contextmanager

import pytest
from cli_helpers import wait_until

from posnet import config
from posnet.cli import issuer_balances, start_network, stop_network
from posnet.demo.story import free_port_block, write_config
from posnet.runtime.pos import TerminalDriver
from posnet.terminal.core import Card

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"
CARD = Card(PAN, "3012")


@pytest.fixture(scope="module")
def chaos_network(tmp_path_factory):
    directory = tmp_path_factory.mktemp("chaosnet")
    path = write_config(directory)
    text = path.read_text(encoding="utf-8")
    text = text.replace("host_timeout_ms = 20000", "host_timeout_ms = 1500")
    text = text.replace("issuer_timeout_ms = 10000", "issuer_timeout_ms = 800")
    text = text.replace('tmk = "0123456789ABCDEFFEDCBA9876543210"',
                        'tmk = "0123456789ABCDEFFEDCBA9876543210"\nresponse_timeout_ms = 2500', 1)
    base = free_port_block(5)
    text += f"\n[chaos]\nenabled = true\nbase_port = {base}\ncontrol_port = {base + 4}\nseed = 1\n"
    path.write_text(text, encoding="utf-8")
    net = config.load(path)
    procs = start_network(net, str(path), quiet=True)
    yield net, f"http://127.0.0.1:{base + 4}"
    stop_network(procs)


def chaos(control: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(control + path, data=json.dumps(body or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def held(net) -> int:
    return 1_000_000 - issuer_balances(net, [PAN])[PAN]


@contextmanager
def terminal_at_rest(net, control):
    """A signed-on terminal that owes nothing, on a network that holds nothing; healed after."""
    driver = TerminalDriver(net, "10000001")
    try:
        assert driver.run("sign-on").done.ok
        assert driver.run("inquiry", card=CARD, pin="123456").done.ok  # sends any reversal still owed
        assert wait_until(lambda: held(net) == 0)
        yield driver
    finally:
        chaos(control, "/heal")
        driver.close()


@pytest.mark.parametrize(
    "link, direction",
    [
        ("terminal-acquirer", "up"),
        ("terminal-acquirer", "down"),
        ("acquirer-switch", "up"),
        ("acquirer-switch", "down"),
        ("switch-bank-a", "up"),
        ("switch-bank-a", "down"),
    ],
)
def test_one_lost_message_on_a_hop_costs_the_cardholder_nothing(chaos_network, link, direction):
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        vouchers_before = len(driver.core.journal)

        chaos(control, f"/proxies/{link}/faults", {"direction": direction, "drop_next": 1})
        sale = driver.run("sale", card=CARD, pin="123456", amount_fen=4200)
        assert not sale.done.ok and sale.slips == [], "the sale fails and prints no receipt"
        assert len(driver.core.journal) == vouchers_before

        after = driver.run("inquiry", card=CARD, pin="123456")  # the next transaction
        assert after.done.ok
        assert driver.core.reversal is None
        assert wait_until(lambda: held(net) == 0), f"still held: {held(net)} fen"


def test_the_faq_case_reply_lost_next_inquiry_reverses_and_says_so(chaos_network):
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        chaos(control, "/proxies/terminal-acquirer/faults", {"direction": "down", "drop_next": 1})
        sale = driver.run("sale", card=CARD, pin="123456", amount_fen=8800)
        assert not sale.done.ok and sale.slips == []
        assert held(net) == 8800, "the issuer approved and holds the money: the SMS would say so"
        inquiry = driver.run("inquiry", card=CARD, pin="123456")
        assert "自动冲正成功 AUTO REVERSAL DONE" in inquiry.displays
        assert inquiry.done.ok and held(net) == 0
        assert inquiry.done.result["balance_fen"] == 1_000_000


def test_corrupted_frames_never_charge_a_sale_the_terminal_did_not_approve(chaos_network):
    """Flipped bits in a request: a 30, an A0, a closed link, or — when they hit the TPDU or the header,
    which the MAC does not cover — an approval. Whatever the outcome, the issuer holds exactly the
    sales in the terminal's journal once the terminal has made its next transaction."""
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        before = set(driver.core.journal)
        codes = []
        for _ in range(8):
            chaos(control, "/proxies/terminal-acquirer/faults", {"direction": "up", "corrupt_next": 1})
            out = driver.run("sale", card=CARD, pin="123456", amount_fen=100)
            codes.append(out.done.response_code if out.done else None)
            if not driver.core.signed_on:
                driver.run("sign-on")
        driver.run("inquiry", card=CARD, pin="123456")
        standing = sum(driver.core.journal[v]["amount_fen"] for v in set(driver.core.journal) - before)
        assert set(codes) - {"00"}, f"some corruption must be caught: {codes}"
        assert wait_until(lambda: held(net) == standing), (codes, held(net), standing)
        for voucher in set(driver.core.journal) - before:  # leave the card as it was
            driver.run("void", voucher_no=int(voucher))
        assert wait_until(lambda: held(net) == 0)


def test_a_reversal_that_fails_three_times_prints_a_fault_slip_and_is_delivered_later(chaos_network):
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        chaos(control, "/proxies/terminal-acquirer/faults", {"direction": "down", "drop_next": 1})
        assert not driver.run("sale", card=CARD, pin="123456", amount_fen=5500).done.ok
        assert held(net) == 5500
        chaos(control, "/proxies/terminal-acquirer/faults", {"direction": "up", "black_hole": True})
        out = driver.run("inquiry", card=CARD, pin="123456")
        assert "冲正不成功,请联系服务商 REVERSAL FAILED, CONTACT SERVICE PROVIDER" in out.displays
        assert any("冲正不成功,请人工处理" in s.text() and "NOT A RECEIPT" in s.text() for s in out.slips)
        assert driver.core.reversal is not None and driver.core.reversal["failed"], "the record is kept"
        assert held(net) == 5500
        chaos(control, "/heal")
        assert driver.run("inquiry", card=CARD, pin="123456").done.ok
        assert driver.core.reversal is None
        assert wait_until(lambda: held(net) == 0), "delivered later, the hold is released"


def test_a_late_approval_after_the_acquirers_timeout_is_reversed(chaos_network):
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        chaos(control, "/proxies/acquirer-switch/faults", {"direction": "down", "delay_ms": 2000})
        sale = driver.run("sale", card=CARD, pin="123456", amount_fen=7700)
        assert sale.done.response_code == "98" and sale.slips == []
        time.sleep(2.5)  # the approval arrives at the acquirer, late
        chaos(control, "/heal")
        assert wait_until(lambda: held(net) == 0)


def test_a_duplicated_request_gets_one_answer_and_one_hold(chaos_network):
    net, control = chaos_network
    with terminal_at_rest(net, control) as driver:
        chaos(control, "/proxies/terminal-acquirer/faults", {"direction": "up", "duplicate": 1.0})
        sale = driver.run("sale", card=CARD, pin="123456", amount_fen=3300)
        chaos(control, "/heal")
        assert sale.done.ok
        time.sleep(0.5)
        assert held(net) == 3300, "charged once"
        assert driver.run("void", voucher_no=int(sale.done.result["voucher_no"])).done.ok
        assert wait_until(lambda: held(net) == 0)
