"""`posnet demo`: the whole network trades on this machine, and says what happened.

A terminal signs on, checks a balance, sells, voids the sale, sells again and
refunds part of it; every step goes over TCP through the acquirer, the
switch and the issuer, each its own process, and the cardholder's balance
is shown before and after each step.
"""

from __future__ import annotations

import socket
from pathlib import Path

from .. import config as cfg
from ..terminal.receipt import yuan
from . import demo_config_text


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def free_port_block(n: int, attempts: int = 50) -> int:
    """The first of ``n`` consecutive free loopback ports (for proxies that take base, base+1, …), below
    the kernel's range for outgoing connections: a port found free there can be taken by any connection
    made before the proxy binds it (seen: a chaos control port lost so, failing a test run)."""
    import random

    top = _outgoing_ports_from() - n
    if top < 21_000:  # no room below that range on this machine: anywhere, as before
        top = 60_000
    for _ in range(attempts):
        base = random.randint(20_000, top)
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


def _outgoing_ports_from() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def write_config(directory: Path, base_port: int = 0) -> Path:
    text = demo_config_text()
    ports = [base_port + i for i in range(4)] if base_port else free_ports(4)
    for old, new in zip((18583, 18584, 18590, 18591), ports, strict=True):
        text = text.replace(f"port = {old}", f"port = {new}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "posnet.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_story(directory: Path, base_port: int = 0) -> int:
    from ..cli import start_network, stop_network
    from ..runtime.pos import TerminalDriver

    path = write_config(directory, base_port)
    net = cfg.load(path)
    card = net.card(None)
    assert card is not None
    print(f"posnet demo in {directory}")
    print("starting the network, each party its own process:")
    procs = start_network(net, str(path))
    failures = 0
    try:
        from ..terminal.core import Card

        the_card = Card(card["pan"], str(card["expiry"]))
        pin = str(card["pin"])
        driver = TerminalDriver(net, None, on_display=lambda t: print(f"   [screen] {t}"))

        def step(title: str, fn: str, **args):
            nonlocal failures
            print(f"\n== {title}")
            out = driver.run(fn, **args)
            for slip in out.slips:
                print()
                print("\n".join("   " + line for line in slip.text().splitlines()))
            if not (out.done and out.done.ok):
                failures += 1
            return out

        def balance(label: str) -> int:
            out = driver.run("inquiry", card=the_card, pin=pin)
            fen = out.done.result.get("balance_fen", 0) if out.done else 0
            print(f"   cardholder's balance at the issuer {label}: {yuan(fen)}")
            return fen

        step("sign on (签到): fresh PIN and MAC keys under the terminal master key", "sign-on")
        print("\n== balance inquiry (查询)")
        before = balance("before")
        sale = step("sale (消费) of RMB 88.00", "sale", card=the_card, pin=pin, amount_fen=8800)
        balance("after the sale")
        voucher = int(sale.done.result["voucher_no"]) if sale.done and sale.done.ok else 0
        step(f"void (撤销) of voucher {voucher:06d}: the hold is released", "void", voucher_no=voucher)
        balance("after the void")
        sale2 = step("sale (消费) of RMB 66.66", "sale", card=the_card, pin=pin, amount_fen=6666)
        ref = sale2.done.result.get("reference_no", "") if sale2.done else ""
        mmdd = ""
        if sale2.done and sale2.done.ok:
            mmdd = driver.core.journal[sale2.done.result["voucher_no"]]["date_mmdd"]
        step(f"refund (退货) of RMB 20.00 against reference {ref}", "refund", card=the_card, pin=pin,
             reference_no=ref, date_mmdd=mmdd, amount_fen=2000)
        after = balance("after the refund")
        driver.close()
        print(f"\nbalance moved from {yuan(before)} to {yuan(after)}: "
              f"-88.00 held, +88.00 released, -66.66 held, +20.00 refunded")
        if before - after != 6666 - 2000:
            print("the balance did not move as the story says", flush=True)
            failures += 1
    finally:
        stop_network(procs)
        print(f"\nnetwork stopped; its data is in {net.data_dir}")
    return 1 if failures else 0
