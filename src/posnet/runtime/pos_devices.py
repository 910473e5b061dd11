"""The `posnet pos` device commands and `posnet acquirer inject-tmk`: arguments in, core commands out.

Kept beside ``cli.py`` so the command line stays one readable list; each
function here turns what the operator typed into the ``Command`` a core
takes (docs/terminal.md).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import config as cfg
from . import acquirer_cli
from .pos import POWER_CUT_POINTS

# -- parsers ----------------------------------------------------------------------------


def add_printer_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--png", metavar="FILE", help="also draw what the printer printed as a PNG of the roll")
    sp.add_argument("--escpos", metavar="TARGET", help="also print on an ESC/POS printer: HOST[:PORT] (9100) or a device file")


def add_device_parsers(fns) -> None:
    """The device's own functions, under `posnet pos`."""
    fns.add_parser("power-on", help="开机: a pending reversal first, unprinted receipts offered")
    f = fns.add_parser("power-cut", help="断电: kill the terminal's process (SIGKILL) at a point of a function")
    f.add_argument("--at", choices=POWER_CUT_POINTS, default="sent", help="where the power goes (default: sent)")
    f.add_argument("rest", nargs=argparse.REMAINDER, help="the function, e.g. sale --amount 12.34 (none: while idle)")
    fns.add_parser("status", help="paper, battery, protection, keys, unprinted receipts")
    f = fns.add_parser("load-paper", help="装纸: a new roll")
    f.add_argument("--length-m", type=float, help="metres of paper on the roll (default: a full roll)")
    fns.add_parser("remove-paper", help="取纸: the roll is out (paper out)")
    f = fns.add_parser("battery", help="电池: set the level, plug in or unplug the charger")
    f.add_argument("--level", help="PERCENT (e.g. 25) or VOLTS with a V (e.g. 7.05V)")
    f.add_argument("--charge", action="store_true", help="on mains: the adapter powers the terminal and charges the battery")
    f.add_argument("--unplug", action="store_true", help="off mains: on the battery again")
    fns.add_parser("shock", help="撞击: the shock sensor trips; protection mode")
    fns.add_parser("open-case", help="开壳: the case switch trips; protection mode, every key erased")
    f = fns.add_parser("unlock", help="解锁: the protection password")
    f.add_argument("--password", help="(default: asked for, not echoed)")
    f = fns.add_parser("load-tmk", help="灌装主密钥: the key-loading device puts a new TMK in")
    g = f.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-file", help="the key-injection file from `posnet acquirer inject-tmk`")
    g.add_argument("--tmk-under-transport", metavar="HEX", help="the TMK under the transport key (32 hex)")
    f.add_argument("--kcv", help="with --tmk-under-transport: the TMK's check value (8 hex)")
    f = fns.add_parser("reprint", help="重打印: the last receipt, or one by voucher number")
    f.add_argument("--voucher", type=int, help="voucher number (凭证号); default: the last transaction")
    fns.add_parser("detail", help="打印明细: the batch's transactions")
    fns.add_parser("totals", help="打印总计: count and amount per type")
    fns.add_parser("ui", help="the terminal as a screen and keys, interactively")


def register_acquirer_cli(sub, with_config) -> None:
    sp = with_config(sub.add_parser("acquirer", help="the acquirer operator's commands"))
    ops = sp.add_subparsers(dest="operation", required=True)
    f = ops.add_parser("inject-tmk", help="a new terminal master key for a terminal (after its keys were erased)")
    f.add_argument("--terminal", required=True, help="terminal id")
    g = f.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-file", help="make a new TMK and write the key-injection file here")
    g.add_argument("--tmk-under-transport", metavar="HEX", help="take this TMK, given under the transport key (32 hex)")
    f.add_argument("--kcv", help="with --tmk-under-transport: the TMK's check value (8 hex)")
    f.add_argument("--json", action="store_true")
    acquirer_cli.add_parsers(ops)  # manual-credit, audit, books
    sp.set_defaults(fn=cmd_acquirer)


# -- `posnet pos` device functions ----------------------------------------------------------


def battery_level_mv(text: str, settings) -> int:
    """'25' or '25%' (of the range from empty to full) or '7.05V' -> millivolts."""
    t = text.strip().upper()
    try:
        if t.endswith("V"):
            return int(Decimal(t[:-1]) * 1000)
        pct = Decimal(t.rstrip("%"))
    except InvalidOperation:
        raise cfg.ConfigError(f"--level {text!r}: give a percentage (25) or volts (7.05V)") from None
    if not 0 <= pct <= 100:
        raise cfg.ConfigError(f"--level {text!r}: a percentage is 0 to 100")
    span = settings.battery_full_mv - settings.battery_empty_mv
    return settings.battery_empty_mv + int(pct * span / 100)


def device_call(net: cfg.Network, driver, args) -> dict[str, Any]:
    """The arguments of a device function's command."""
    fn, call = args.function, {}
    if fn == "load-paper" and args.length_m:
        call["length_mm"] = int(args.length_m * 1000)
    if fn == "battery":
        if args.level is not None:
            call["level_mv"] = battery_level_mv(args.level, driver.core.device_settings)
        if args.charge and args.unplug:
            raise cfg.ConfigError("--charge or --unplug, not both")
        if args.charge or args.unplug:
            call["mains"] = bool(args.charge)
    if fn == "unlock":
        call["password"] = args.password if args.password is not None else getpass.getpass("保护密码 PROTECTION PASSWORD: ")
    if fn == "reprint" and args.voucher is not None:
        call["voucher_no"] = args.voucher
    if fn == "load-tmk":
        call.update(_tmk_to_load(net, driver, args))
    return call


def _transport_key(net: cfg.Network) -> str:
    tk = net.acquirer.get("transport_key")
    if not tk:
        raise cfg.ConfigError("[acquirer] has no transport_key: the key-loading device needs one (docs/terminal.md)")
    return str(tk)


def _tmk_to_load(net: cfg.Network, driver, args) -> dict[str, Any]:
    from ..acquirer.keys import read_key_file

    tk = driver.hsm.import_clear_key(_transport_key(net))  # the key-loading device's transport key
    if args.key_file:
        try:
            inj = read_key_file(args.key_file)
        except ValueError as e:
            raise cfg.ConfigError(str(e)) from None
        if inj.terminal_id != driver.core.config.terminal_id:
            raise cfg.ConfigError(f"{args.key_file} is for terminal {inj.terminal_id}, not {driver.core.config.terminal_id}")
        if inj.tk_kcv != driver.hsm.kcv(tk).hex().upper():
            raise cfg.ConfigError(f"{args.key_file} is under another transport key (KCV {inj.tk_kcv})")
        return {"tk": tk, "tmk_under_tk": inj.tmk_under_tk, "kcv": inj.kcv}
    if not args.kcv:
        raise cfg.ConfigError("--tmk-under-transport needs --kcv")
    return {"tk": tk, "tmk_under_tk": args.tmk_under_transport, "kcv": args.kcv}


def power_cut(args, cmd_pos) -> int:
    """`posnet pos power-cut --at POINT FUNCTION …`: run FUNCTION and lose the power at POINT."""
    rest = [a for a in args.rest if a != "--"]
    if not rest:
        from .pos import TerminalDriver

        TerminalDriver(cfg.load(args.config), args.terminal).close()
        print("[screen] (power cut)", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    from ..cli import build_parser

    argv = ["pos", "--config", args.config]
    argv += ["--terminal", args.terminal] if args.terminal else []
    argv += ["--json"] if args.json else []
    inner = build_parser().parse_args(argv + rest)
    if inner.function in ("power-cut", "ui"):
        raise cfg.ConfigError(f"power-cut runs a function; {inner.function!r} is not one")
    inner.power_cut_at = args.at
    return cmd_pos(inner)


def print_to_devices(args, slips: list[Any]) -> None:
    """--png and --escpos: what the printer put out, drawn and sent to a real printer."""
    from ..terminal import render

    if not slips:
        return
    if getattr(args, "png", None):
        roll = render.png(slips)
        roll.save(args.png)
        if not roll.cjk:
            print(f"posnet: no Chinese font found: {args.png} shows Chinese as boxes (see docs/terminal.md)", file=sys.stderr)
    if getattr(args, "escpos", None):
        render.send_escpos(render.escpos(slips), args.escpos)


# -- `posnet acquirer inject-tmk` --------------------------------------------------------------


def cmd_acquirer(args) -> int:
    net = cfg.load(args.config)
    if args.operation == "inject-tmk":
        return inject_tmk(net, args)
    if args.operation in acquirer_cli.OPERATIONS:
        return acquirer_cli.run(net, args)
    raise cfg.ConfigError(f"unknown acquirer operation {args.operation!r}")


def inject_tmk(net: cfg.Network, args) -> int:
    """A new TMK for a terminal: made (or taken under the transport key) in the acquirer's security
    module, handed to the acquirer (running or not), then written for the key-loading device."""
    from ..acquirer import keys
    from ..security import KeyCheckError, SecurityError
    from .parties import party_dir, security_module

    net.terminal(args.terminal)  # a ConfigError names an unknown terminal
    directory = party_dir(net, "acquirer")
    hsm = security_module(directory)
    tk = hsm.import_clear_key(_transport_key(net))
    try:
        if args.key_file:
            tmk, injection = keys.new_tmk(hsm, tk, args.terminal)
        else:
            if not args.kcv:
                raise cfg.ConfigError("--tmk-under-transport needs --kcv")
            tmk, injection = keys.tmk_from_transport(hsm, tk, args.terminal, args.tmk_under_transport, args.kcv)
    except (KeyCheckError, SecurityError, ValueError) as e:
        raise cfg.ConfigError(f"the TMK does not check out: {e}") from None
    command = {"terminal_id": args.terminal, "tmk": tmk}
    how = "running acquirer"
    from . import control

    reply = control.send(directory, "inject-tmk", command)
    if reply is None:  # the acquirer is not running: its store takes the command directly
        reply, how = _offline(net, directory, hsm, command), "acquirer's store"
    injected = [t for t in reply.get("traces", []) if t.get("event") == "TMK injected"]
    if not reply.get("ok") or not injected:
        print(f"posnet: the acquirer refused the key: {reply}", file=sys.stderr)
        return 1
    if args.key_file:
        keys.write_key_file(args.key_file, injection)
    out = {"terminal_id": args.terminal, "kcv": injection.kcv, "key_file": args.key_file, "acquirer": how}
    if args.json:
        print(json.dumps(out))
    else:
        where = f"; key-injection file {args.key_file}" if args.key_file else ""
        print(f"TMK for terminal {args.terminal} injected at the {how}: KCV {injection.kcv}{where}")
        print(f"next, at the terminal: posnet pos --terminal {args.terminal} load-tmk "
              + (f"--key-file {args.key_file}" if args.key_file else f"--tmk-under-transport {injection.tmk_under_tk} --kcv {injection.kcv}")
              + " && posnet pos sign-on")
    return 0


def _offline(net: cfg.Network, directory, hsm, command: dict[str, Any]) -> dict[str, Any]:
    from ..acquirer.core import Acquirer
    from ..effects import Command, Put, Trace
    from .clock import NetworkClock
    from .parties import party_schema, store_location
    from .store import PartyStore

    location = store_location(net, "acquirer")
    store = PartyStore(location, with_ledger=True, schema=party_schema(net, "acquirer") if location.startswith("postgres") else None)
    try:
        core = Acquirer(cfg.acquirer_config(net, hsm), hsm, store.load_ledger())
        now_ms = NetworkClock.of(net).now_ms()
        core.restore(store.load(), now_ms)  # only to know the terminals; what restore would resend is left for the acquirer's start
        effects = core.handle(Command("inject-tmk", command), now_ms)
        store.commit([e for e in effects if isinstance(e, Put) and e.table == "terminals"])
    finally:
        store.close()
    return {"ok": True, "traces": [{"event": t.event, **t.detail} for t in effects if isinstance(t, Trace)]}
