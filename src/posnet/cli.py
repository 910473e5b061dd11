"""The `posnet` command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import config as cfg

DEFAULT_CONFIG = "posnet.toml"


def _load(args) -> cfg.Network:
    return cfg.load(args.config)


# -- init -------------------------------------------------------------------------


def cmd_init(args) -> int:
    from .demo import demo_config_text

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / DEFAULT_CONFIG
    if target.exists() and not args.force:
        print(f"{target} exists; --force overwrites it", file=sys.stderr)
        return 1
    text = demo_config_text()
    if args.base_port:
        text = with_ports(text, args.base_port)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}: one acquirer, the switch, two issuers, two terminals, five cards")
    print(f"next: cd {directory} && posnet up")
    return 0


def with_ports(text: str, base: int) -> str:
    """The demo config with its ports moved to base, base+1, … (acquirer, switch, issuers)."""
    for n, old in enumerate((18583, 18584, 18590, 18591)):
        text = text.replace(f"port = {old}", f"port = {base + n}")
    return text


# -- up / run ---------------------------------------------------------------------


def start_network(net: cfg.Network, config_path: str, quiet: bool = False) -> list[subprocess.Popen]:
    """Start every party as its own process; return once each listens."""
    from .runtime.pos import wait_for_port

    procs: list[subprocess.Popen] = []
    from .runtime import chaos

    if chaos.plan_proxies(net):
        # A fault proxy on every link: the parties' clients connect through it.
        log_path = net.data_dir / "chaos" / "chaos.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "posnet", "chaos", "run", "--config", str(config_path)],
                stdout=open(log_path, "ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        host, port = chaos.control_address(net)
        if not wait_for_port(host, port):  # it opens once every proxy listens
            stop_network(procs)
            raise RuntimeError(f"the chaos proxies did not start; see {log_path}")
        if not quiet:
            print(f"  {'chaos':<16} control http://{host}:{port}  pid {procs[-1].pid}  log {log_path}")
    # Issuers first, then the switch, then the acquirer: each finds its upstream ready.
    order = [p for p in net.party_names() if p.startswith("issuer-")] + ["switch", "acquirer"]
    for party in order:
        log_path = net.data_dir / party / "party.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "posnet", "run", party, "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        ep = net.endpoint(party)
        if not wait_for_port(ep.host, ep.port):
            stop_network(procs)
            raise RuntimeError(f"{party} did not start listening on {ep.host}:{ep.port}; see {log_path}")
        if not quiet:
            print(f"  {party:<16} {ep.host}:{ep.port:<6} pid {procs[-1].pid}  log {log_path}")
    return procs


def stop_network(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cmd_up(args) -> int:
    net = _load(args)
    print(f"posnet network from {net.path}, data in {net.data_dir}")
    procs = start_network(net, args.config)
    print("ready. Try: posnet pos sign-on && posnet pos sale --amount 12.34   (Ctrl-C stops every party)")
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for p in procs:
                if p.poll() is not None:
                    print(f"a party stopped (pid {p.pid}, exit {p.returncode}); stopping the network", file=sys.stderr)
                    stopping = True
            time.sleep(0.2)
    finally:
        stop_network(procs)
        print("stopped; data kept in", net.data_dir)
    return 0


def cmd_run(args) -> int:
    from .runtime.parties import run

    run(_load(args), args.party)
    return 0


# -- pos --------------------------------------------------------------------------


def _card_args(net: cfg.Network, args):
    from .terminal.core import Card

    known = net.card(args.card)
    pan = args.card or (known or {}).get("pan")
    if pan is None:
        raise cfg.ConfigError("give --card PAN (the config has no cards)")
    expiry = args.expiry or (known or {}).get("expiry")
    if expiry is None:
        raise cfg.ConfigError(f"give --expiry YYMM for card {pan[:6]}…")
    pin = args.pin
    if pin is None and not args.no_pin and known is not None:
        pin = str(known.get("pin", "")) or None  # a demo convenience: the config's PIN, typed for you
    return Card(pan, str(expiry)), pin


def cmd_pos(args) -> int:
    from .runtime import pos_devices
    from .runtime.pos import TerminalDriver
    from .terminal.functions import DEVICE_FUNCTIONS

    if args.function == "power-cut":
        return pos_devices.power_cut(args, cmd_pos)
    net = _load(args)
    show = not args.json
    if args.function == "ui":
        from .terminal.ui import run_ui

        return run_ui(net, args.terminal)

    def on_display(text: str) -> None:
        if show:
            print(f"[screen] {text}")

    driver = TerminalDriver(net, args.terminal, on_display=on_display, power_cut_at=getattr(args, "power_cut_at", None))
    try:
        fn = args.function
        call: dict = pos_devices.device_call(net, driver, args) if fn in DEVICE_FUNCTIONS else {}
        if fn in ("inquiry", "sale", "refund"):
            card, pin = _card_args(net, args)
            call.update(card=card, pin=pin)
        if fn in ("sale", "refund"):
            call["amount_fen"] = cfg.yuan_to_fen(args.amount)
        if fn == "void":
            call["voucher_no"] = args.voucher
            if args.card:
                call["card"], call["pin"] = _card_args(net, args)
        if fn == "refund":
            call.update(reference_no=args.ref, date_mmdd=args.date)
        out = driver.run(fn, **call)
    finally:
        driver.close()
    pos_devices.print_to_devices(args, out.slips)
    if args.json:
        done = out.done
        print(
            json.dumps(
                {
                    "ok": bool(done and done.ok),
                    "response_code": done.response_code if done else None,
                    "result": done.result if done else {},
                    "screen": out.displays,
                    "receipts": [s.text() for s in out.slips],
                },
                ensure_ascii=False,
            )
        )
    else:
        for slip in out.slips:
            print()
            print(slip.text(), end="")
    return 0 if out.done and out.done.ok else 1


# -- balance ----------------------------------------------------------------------


def issuer_balances(net: cfg.Network, pans: list[str] | None = None) -> dict[str, int]:
    """Available balance per card, read from each issuer's store (fen)."""
    from .issuer.core import Issuer
    from .runtime.parties import party_dir, party_schema, security_module, store_location
    from .runtime.store import PartyStore

    out: dict[str, int] = {}
    for i in net.issuers:
        party = f"issuer-{i['name']}"
        if not (party_dir(net, party) / f"{party}.sqlite").exists() and "database" not in net.raw.get("network", {}):
            continue
        hsm = security_module(party_dir(net, party))
        location = store_location(net, party)
        store = PartyStore(location, with_ledger=True, schema=party_schema(net, party) if location.startswith("postgres") else None)
        try:
            core = Issuer(cfg.issuer_config(net, i["name"], hsm), hsm, store.load_ledger())
            for pan in core.config.cards:
                if pans is None or pan in pans:
                    out[pan] = core.balance_of_card(pan)
        finally:
            store.close()
    return out


def cmd_balance(args) -> int:
    from .terminal.receipt import yuan

    net = _load(args)
    balances = issuer_balances(net, [args.card] if args.card else None)
    if args.json:
        print(json.dumps(balances))
        return 0
    for pan, fen in balances.items():
        from .effects import mask_pan

        print(f"{mask_pan(pan)}  {yuan(fen)}")
    return 0


# -- demo -------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from .demo.story import run_story

    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="posnet-demo-"))
    if (directory / "data").exists():
        shutil.rmtree(directory / "data")
    return run_story(directory, base_port=args.base_port)


# -- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posnet", description="A card-present payment network in a box.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", default=os.environ.get("POSNET_CONFIG", DEFAULT_CONFIG), help="network file (default posnet.toml)")
        return sp

    sp = sub.add_parser("init", help="write a demo network config into DIR")
    sp.add_argument("dir")
    sp.add_argument("--force", action="store_true")
    sp.add_argument("--base-port", type=int, default=0, help="move the four ports to BASE, BASE+1, …")
    sp.set_defaults(fn=cmd_init)

    sp = with_config(sub.add_parser("up", help="start every party of the network, each its own process"))
    sp.set_defaults(fn=cmd_up)

    sp = with_config(sub.add_parser("run", help="run one party in the foreground"))
    sp.add_argument("party", help="acquirer, switch or issuer-<name>")
    sp.set_defaults(fn=cmd_run)

    sp = with_config(sub.add_parser("pos", help="a scriptable POS terminal"))
    sp.add_argument("--terminal", help="terminal id (default: the first of the config)")
    sp.add_argument("--json", action="store_true", help="print the outcome as JSON")
    from .runtime.pos_devices import add_device_parsers, add_printer_options, register_acquirer_cli

    add_printer_options(sp)
    fns = sp.add_subparsers(dest="function", required=True)
    for name, help_ in (
        ("sign-on", "签到: get fresh working keys"),
        ("sign-off", "签退"),
        ("echo", "回响测试"),
        ("send-reversal", "手工冲正: send the pending reversal now, also one whose attempts ran out"),
        ("settle", "结算: settle the batch with the acquirer, print the slip, open the next batch"),
    ):
        fns.add_parser(name, help=help_)

    def card_opts(f):
        f.add_argument("--card", help="PAN (default: the first card of the config)")
        f.add_argument("--expiry", help="YYMM (default: from the config)")
        f.add_argument("--pin", help="PIN typed on the PIN pad (default: the config's, for the demo)")
        f.add_argument("--no-pin", action="store_true", help="no PIN entered")
        return f

    card_opts(fns.add_parser("inquiry", help="查询: balance inquiry"))
    f = card_opts(fns.add_parser("sale", help="消费"))
    f.add_argument("--amount", required=True, help="yuan, e.g. 12.34")
    f = card_opts(fns.add_parser("void", help="撤销: void a sale of the open batch"))
    f.add_argument("--voucher", required=True, type=int, help="voucher number (凭证号) of the sale")
    f = card_opts(fns.add_parser("refund", help="退货"))
    f.add_argument("--ref", required=True, help="reference number (参考号) of the original sale")
    f.add_argument("--date", required=True, help="date of the original sale, MMDD")
    f.add_argument("--amount", required=True, help="yuan, up to the original's amount")
    add_device_parsers(fns)  # paper, battery, power, tamper, keys, reprints, lists (docs/terminal.md)
    sp.set_defaults(fn=cmd_pos)

    register_acquirer_cli(sub, with_config)  # posnet acquirer inject-tmk

    sp = with_config(sub.add_parser("balance", help="cardholders' available balances at the issuers"))
    sp.add_argument("--card")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_balance)

    sp = sub.add_parser("demo", help="run the whole story on a fresh network and print it")
    sp.add_argument("--dir", help="where to put the demo network (default: a new temporary folder)")
    sp.add_argument("--base-port", type=int, default=0)
    sp.set_defaults(fn=cmd_demo)

    from .runtime import chaos, clearing_io, clock, notifier
    from .sim import cli as sim_cli

    chaos.register_cli(sub)
    notifier.register_cli(sub, with_config)  # posnet sms
    clock.register_cli(sub, with_config)  # posnet clock show | advance 48h
    clearing_io.register_cli(sub, with_config)  # posnet clearing report | status
    sim_cli.register_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except cfg.ConfigError as e:
        print(f"posnet: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `posnet pos sale … | head`: the reader left; the sale itself is done
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
