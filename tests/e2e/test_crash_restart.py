"""SIGKILL a host in the middle of traffic, start it again: nothing lost, nothing done twice.

After the traffic every terminal makes one more transaction (which sends any
reversal it owes) and the stores and forwards drain; then the cardholder's
balance at the issuer equals the opening balance less exactly the sales that
stand in the terminals' journals — a sale without a receipt cost nothing.
"""

import signal
import subprocess
import sys
import threading
import time

import pytest

from posnet import config
from posnet.cli import issuer_balances, start_network, stop_network
from posnet.demo.story import write_config
from posnet.runtime.pos import TerminalDriver, wait_for_port
from posnet.terminal.core import Card

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"
OPENING = 1_000_000


def fast_timeouts(text: str) -> str:
    text = text.replace("host_timeout_ms = 20000", "host_timeout_ms = 1500")
    text = text.replace("issuer_timeout_ms = 10000", "issuer_timeout_ms = 800")
    return text.replace('tmk = "0123456789ABCDEFFEDCBA9876543210"',
                        'tmk = "0123456789ABCDEFFEDCBA9876543210"\nresponse_timeout_ms = 2500', 1)


def restart(net, path, party: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "posnet", "run", party, "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ep = net.endpoint(party)
    assert wait_for_port(ep.host, ep.port), f"{party} did not come back"
    return proc


@pytest.mark.timeout(180)
def test_sigkill_of_each_host_mid_traffic_loses_nothing_and_charges_nothing_twice(tmp_path):
    path = write_config(tmp_path)
    path.write_text(fast_timeouts(path.read_text(encoding="utf-8")), encoding="utf-8")
    net = config.load(path)
    procs = dict(zip(["issuer-bank-a", "issuer-bank-b", "switch", "acquirer"], start_network(net, str(path), quiet=True), strict=True))
    card = Card(PAN, "3012")
    stop = threading.Event()
    outcomes: list[str] = []

    def traffic():
        driver = TerminalDriver(net, "10000001")
        try:
            while not stop.is_set():
                if not driver.core.signed_on:
                    driver.run("sign-on")
                    continue
                out = driver.run("sale", card=card, pin="123456", amount_fen=100)
                outcomes.append(out.done.response_code if out.done else "none")
        finally:
            driver.close()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        for party in ("acquirer", "switch", "issuer-bank-a"):
            time.sleep(1.5)
            procs[party].send_signal(signal.SIGKILL)
            procs[party].wait()
            time.sleep(0.5)
            procs[party] = restart(net, path, party)
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(timeout=60)

    try:
        assert "00" in outcomes and len(set(outcomes)) > 1, f"the kills should have hit some sales: {outcomes}"
        # One more transaction sends any reversal the terminal still owes.
        driver = TerminalDriver(net, "10000001")
        try:
            if not driver.core.signed_on:
                driver.run("sign-on")
            assert driver.run("inquiry", card=card, pin="123456").done.ok
            standing = sum(e["amount_fen"] for e in driver.core.journal.values() if e["kind"] == "sale" and not e["voided"])
            assert driver.core.reversal is None
        finally:
            driver.close()
        # Stores and forwards drain (switch and acquirer resend what they owe).
        deadline = time.monotonic() + 60
        while True:
            stop_network(list(procs.values()))
            balance = issuer_balances(net, [PAN])[PAN]
            if balance == OPENING - standing or time.monotonic() > deadline:
                break
            procs = dict(zip(["issuer-bank-a", "issuer-bank-b", "switch", "acquirer"],
                             start_network(net, str(path), quiet=True), strict=True))
            time.sleep(3)
        assert balance == OPENING - standing, (
            f"the issuer holds {OPENING - balance} fen but the journal stands at {standing}: {outcomes}"
        )
    finally:
        stop_network(list(procs.values()))
