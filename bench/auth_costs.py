#!/usr/bin/env python3
"""Where one authorization's CPU goes, measured in one process, without TCP.

    python bench/auth_costs.py [--sales 3000]

Companion to bench/auth_bench.py. It prints three things:

1. The cores alone: the network of bench/auth_bench.py (the demo config with
   balances no run spends) built as an in-process world (posnet.sim.scenario.build),
   one terminal (printer off, on mains) selling in a loop; the time each party's ``core.handle``
   takes per sale. No sockets, no store, no trace file: the floor of what
   the TCP runtime adds to.
2. The top functions of that loop by own time (cProfile), per sale.
3. What the TCP runtime does around the cores, one operation at a time:
   a SQLite group commit as PartyStore does it (WAL, synchronous=FULL, and
   NORMAL for comparison), a trace line written and flushed as PartyNode
   does it, and the pieces a party repeats per message (decode, encode with
   its MAC, PIN translation, PIN verification).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import auth_bench

if __name__ == "__main__":
    auth_bench.run_at_commit(Path(__file__))

from auth_bench import (
    SAMPLE_HOST_SALE,
    bench_config_text,
    machine_line,
    remove_snapshot_at_exit,
    source_version,
)

from posnet import config as cfg
from posnet.demo import demo_config_text
from posnet.effects import Put
from posnet.runtime.store import PartyStore
from posnet.security import SecurityModule
from posnet.terminal.core import Card
from posnet.wire import Message, decode_host, encode_host

try:
    from posnet.sim.scenario import build as build_world
except ImportError:  # before the simulator's scenarios
    from posnet.sim.network import build_world


def build(directory: Path):
    path = directory / "posnet.toml"
    path.write_text(bench_config_text(demo_config_text(), 1), encoding="utf-8")
    net = cfg.load(path)
    world = build_world(net, int(time.time() * 1000))
    tid = net.acquirer["terminals"][0]["terminal_id"]
    term = f"pos-{tid}"
    core = world.parties[term].core
    core.config = dataclasses.replace(
        core.config, print_copies=()
    )  # printer off, as in auth_bench
    if hasattr(core, "devices"):  # a terminal with a battery: on mains
        assert world.command(term, "battery", mains=True).done.ok
    c = net.card(None)
    return world, term, Card(c["pan"], str(c["expiry"])), str(c["pin"])


def timed_cores(
    world,
    sales: int,
    term: str,
    card: Card,
    pin: str,
    prof: cProfile.Profile | None = None,
):
    """Microseconds per sale in each party's core.handle (the world around them is not counted)."""
    spent: dict[str, float] = defaultdict(float)
    for name, state in world.parties.items():
        core = state.core
        original = core.handle

        def handle(event, now_ms, _original=original, _name=name):
            if prof is not None:
                prof.enable()
            t = time.perf_counter()
            try:
                return _original(event, now_ms)
            finally:
                spent[_name] += time.perf_counter() - t
                if prof is not None:
                    prof.disable()

        core.handle = handle  # this process's instance only
    for _ in range(sales):
        out = world.command(term, "sale", card=card, pin=pin, amount_fen=100)
        assert out.done is not None and out.done.ok, out.done
        world.advance(1)
    return {k: v / sales * 1e6 for k, v in spent.items()}


def per_call_us(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sales", type=int, default=3000)
    p.add_argument(
        "--at",
        metavar="REV",
        help="measure src/posnet as committed at REV (a snapshot)",
    )
    args = p.parse_args(argv)
    remove_snapshot_at_exit()
    print(f"machine: {machine_line()}")
    print(f"posnet: {source_version()}")
    tmp = Path(tempfile.mkdtemp(prefix="posnet-costs-"))

    # 1. the cores alone
    world, term, card, pin = build(tmp)
    assert world.command(term, "sign-on").done.ok
    timed_cores(world, 200, term, card, pin)  # warm up
    world, term, card, pin = build(tmp)
    assert world.command(term, "sign-on").done.ok
    costs = timed_cores(world, args.sales, term, card, pin)
    print(
        f"\n1. core.handle per sale, in-process ({args.sales} sales, one terminal), microseconds:"
    )
    for name, us in sorted(costs.items(), key=lambda kv: -kv[1]):
        if us >= 0.5:
            print(f"   {name:<16} {us:7.0f}")
    print(f"   {'all cores':<16} {sum(costs.values()):7.0f}")

    # 2. the top functions of that loop
    world, term, card, pin = build(tmp)
    assert world.command(term, "sign-on").done.ok
    prof = cProfile.Profile()
    timed_cores(world, args.sales, term, card, pin, prof)
    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, callers) in st.stats.items():
        rows.append(
            (
                tt,
                ct,
                nc,
                f"{fn} ({file.split('/site-packages/')[-1].split('/src/')[-1]}:{line})",
            )
        )
    total_tt = sum(r[0] for r in rows)
    print(
        f"\n2. own time by function inside the cores, per sale, under cProfile (which inflates small calls), "
        f"total {total_tt / args.sales * 1e6:.0f} us per sale:"
    )
    print("   own us  cumul us  calls/sale  function")
    for tt, ct, nc, name in sorted(rows, reverse=True)[:22]:
        print(
            f"   {tt / args.sales * 1e6:6.1f}  {ct / args.sales * 1e6:8.1f}  {nc / args.sales:10.1f}  {name}"
        )

    # 3. what the runtime adds, one operation at a time
    print("\n3. runtime pieces, microseconds per call (wall):")
    txn = {
        "rrn": "000000000123",
        "kind": "sale",
        "terminal_id": "90000001",
        "merchant_id": "898310148160001",
        "batch_no": "000001",
        "trace_no": "000123",
        "pan": "6222020000000001",
        "amount_fen": 100,
        "date_mmdd": "1124",
        "stan": "000123",
        "f7": "1124014500",
        "host_mti": "0200",
        "status": "pending",
        "auth_code": "",
        "original_rrn": "",
        "refunded_fen": 0,
        "reversible": True,
    }
    for sync in ("FULL", "NORMAL"):
        store = PartyStore(tmp / f"commit-{sync}.sqlite")
        store.conn.execute(f"PRAGMA synchronous={sync}")
        seq = iter(range(10**9))

        def commit(store=store, seq=seq):
            n = next(seq)
            store.commit(
                [
                    Put("state", "counters", {"stan": n, "rrn": n}),
                    Put("txns", f"{n:012d}", txn),
                ]
            )

        cpu0 = time.process_time()
        wall = per_call_us(commit, 2000)
        cpu = (time.process_time() - cpu0) / 2001 * 1e6
        print(
            f"   PartyStore.commit, 2 records (an acquirer's sale), synchronous={sync:<6} {wall:6.0f} wall, {cpu:5.0f} CPU"
        )
        store.close()
    trace_file = (tmp / "trace.jsonl").open(
        "a", encoding="utf-8"
    )  # open for the run, as PartyNode keeps it

    def trace():
        line = {
            "ms": 1,
            "party": "acquirer",
            "lifecycle": "000000000123",
            "event": "forwarded to switch",
            "kind": "sale",
            "tid": "90000001",
            "pan": "622202******0001",
            "amount": "000000000100",
        }
        trace_file.write(json.dumps(line, ensure_ascii=False) + "\n")
        trace_file.flush()

    print(
        f"   trace line, json.dumps + write + flush (PartyNode._trace)        {per_call_us(trace, 20000):6.1f}"
    )
    hsm = SecurityModule(SecurityModule.generate_lmk())
    zak = hsm.generate_key()
    zpk1, zpk2, pvk = hsm.generate_key(), hsm.generate_key(), hsm.generate_key()
    pan = "6222020000000001"
    offset = hsm.pin_offset(pvk, pan, "123456")
    pik = hsm.generate_key()
    block = hsm.encrypt_pin(zpk1, "123456", pan)
    msg = Message("0200", {**SAMPLE_HOST_SALE, "2": pan, "52": block.hex().upper(), "100": "01020000"})
    mac = lambda d: hsm.retail_mac(zak, d)
    raw = encode_host(Message(msg.mti, dict(msg.fields)), mac=mac)
    print(
        f"   encode_host with retail MAC (a host-leg sale request)           {per_call_us(lambda: encode_host(Message(msg.mti, dict(msg.fields)), mac=mac), 5000):6.1f}"
    )
    print(
        f"   decode_host (same)                                              {per_call_us(lambda: decode_host(raw), 5000):6.1f}"
    )
    dec = decode_host(raw)
    print(
        f"   SecurityModule.retail_mac over it                               {per_call_us(lambda: hsm.retail_mac(zak, dec.mac_input()), 5000):6.1f}"
    )
    print(
        f"   SecurityModule.translate_pin                                    {per_call_us(lambda: hsm.translate_pin(zpk1, zpk2, block, pan), 5000):6.1f}"
    )
    print(
        f"   SecurityModule.verify_pin (IBM 3624)                            {per_call_us(lambda: hsm.verify_pin(zpk1, block, pan, pvk, offset), 5000):6.1f}"
    )
    print(
        f"   SecurityModule.encrypt_pin (terminal)                           {per_call_us(lambda: hsm.encrypt_pin(pik, '123456', pan), 5000):6.1f}"
    )
    trace_file.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
