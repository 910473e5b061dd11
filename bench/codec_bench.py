#!/usr/bin/env python3
"""What the ISO 8583 codec costs, and the floor pyiso8583 puts under the simulator.

    python bench/codec_bench.py [--calls 20000]
    python bench/codec_bench.py --sim [--seed 1] [--transactions 5000] [--repeat 3]
    python bench/codec_bench.py --sim-bound [--seed 1] [--transactions 5000]

Any of them with ``--at REV`` measures src/posnet as committed at REV (a
snapshot, as bench/auth_bench.py takes one).

Default: microseconds per call of posnet.wire's encode_host, decode_host,
encode_terminal and decode_terminal on a typical sale (the MAC filled with 8
constant bytes, so no HSM time counts), next to pyiso8583 alone
(iso8583.encode / iso8583.decode) on the same message: the difference is
posnet's wrapper (for an encode, building the Message to encode included).
Best of 5 rounds of --calls calls each.

--sim: the deterministic simulator as ``posnet sim --faults none`` runs it,
--repeat times; transactions per second of each run and the best.

--sim-bound: one simulator run (faults none) that records every call the
codec makes to iso8583.encode and iso8583.decode, every call of posnet.wire's
four codec functions, and the time spent in the SecurityModule's MAC, PIN
and key calls. It then replays the recorded calls, best of 5 rounds: the
pyiso8583 calls alone, and the codec functions (a constant MAC in place of
the HSM's). It prints calls and microseconds per simulated transaction, and
the transactions per second one core could reach if everything but
pyiso8583 (and the HSM) were free: the lower bound the mandated library puts
on the simulator.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import auth_bench

if __name__ == "__main__":
    auth_bench.run_at_commit(Path(__file__))

import iso8583
from auth_bench import SAMPLE_HOST_SALE as HOST_SALE, machine_line, remove_snapshot_at_exit, source_version

from posnet.wire import codec
from posnet.wire.codec import Message
from posnet.wire.specs import HOST_SPEC, TERMINAL_SPEC

CONSTANT_MAC = bytes.fromhex("0123456789ABCDEF")
ROUNDS = 5
CODEC_FUNCTIONS = ("encode_host", "decode_host", "encode_terminal", "decode_terminal")
HSM_CALLS = (
    "cup_mac",
    "verify_cup_mac",
    "retail_mac",
    "verify_retail_mac",
    "encrypt_pin",
    "translate_pin",
    "verify_pin",
    "pin_offset",
    "generate_key",
    "kcv",
    "export_key",
    "import_key",
    "import_clear_key",
)

PAN = "6222020000000001"
TERMINAL_SALE = {
    "2": PAN,
    "3": "000000",
    "4": "000000000100",
    "11": "000123",
    "14": "3012",
    "22": "021",
    "25": "00",
    "26": "12",
    "35": PAN + "D30122010000000000",
    "41": "90000001",
    "42": "898310148160001",
    "49": "156",
    "52": "54C4406EC8B0BC42",
    "53": "2600000000000000",
    "60": "22000001000",
}


def constant_mac(data: bytes) -> bytes:
    return CONSTANT_MAC


def best_us(fn, calls: int) -> float:
    """Microseconds per call of fn(), best of ROUNDS rounds of ``calls`` calls."""
    fn()
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - t)
    return best / calls * 1e6


def per_call(calls: int) -> None:
    host = Message("0200", dict(HOST_SALE))
    host_frame = codec.encode_host(Message("0200", dict(HOST_SALE)), mac=constant_mac)
    term = Message("0200", dict(TERMINAL_SALE), tpdu="6000030000", header="602200000000")
    term_frame = codec.encode_terminal(
        Message("0200", dict(TERMINAL_SALE), tpdu="6000030000", header="602200000000"), mac=constant_mac
    )
    host_doc = {"t": "0200", **HOST_SALE, "64": CONSTANT_MAC.hex().upper()}
    term_doc = {"t": "0200", **TERMINAL_SALE, "64": CONSTANT_MAC.hex().upper()}
    term_body = term_frame[11:]
    rows = [
        (
            f"encode_host, a host-leg sale ({len(host_frame)} bytes)",
            lambda: codec.encode_host(Message(host.mti, dict(host.fields)), mac=constant_mac),
            lambda: iso8583.encode(dict(host_doc), HOST_SPEC),
        ),
        ("decode_host (same)", lambda: codec.decode_host(host_frame), lambda: iso8583.decode(host_frame, HOST_SPEC)),
        (
            f"encode_terminal, a terminal sale ({len(term_frame)} bytes)",
            lambda: codec.encode_terminal(
                Message(term.mti, dict(term.fields), tpdu=term.tpdu, header=term.header), mac=constant_mac
            ),
            lambda: iso8583.encode(dict(term_doc), TERMINAL_SPEC),
        ),
        (
            "decode_terminal (same)",
            lambda: codec.decode_terminal(term_frame),
            lambda: iso8583.decode(term_body, TERMINAL_SPEC),
        ),
    ]
    print(f"\nmicroseconds per call, best of {ROUNDS} rounds of {calls} (MAC: 8 constant bytes):")
    print(f"   {'':<46} {'posnet.wire':>11} {'pyiso8583':>10} {'wrapper':>8}")
    for name, ours, library in rows:
        a, b = best_us(ours, calls), best_us(library, calls)
        print(f"   {name:<46} {a:11.1f} {b:10.1f} {a - b:8.1f}")


def sim(seed: int, transactions: int, repeat: int) -> None:
    from posnet.sim.run import simulate

    rates = []
    for i in range(repeat):
        r = simulate(seed, transactions, "none")
        assert r.ok, r.violations
        rates.append(r.transactions / r.elapsed_s)
        print(
            f"   run {i + 1}: {r.elapsed_s:.2f} s, {rates[-1]:.0f} transactions/s "
            f"(seed {seed}, {transactions} transactions, {r.events} events, trace {r.trace_hash})",
            flush=True,
        )
    print(f"   best {max(rates):.0f} transactions/s")


def sim_bound(seed: int, transactions: int) -> None:
    from posnet.security.module import SecurityModule
    from posnet.sim.run import simulate

    # -- record --------------------------------------------------------------------
    encodes: list[tuple[dict, dict]] = []
    decodes: list[tuple[bytes, dict]] = []
    wire_calls: list[tuple[str, tuple]] = []
    hsm_us: dict[str, float] = defaultdict(float)
    hsm_n: Counter = Counter()
    depth = [0]

    real_encode, real_decode = iso8583.encode, iso8583.decode

    def encode(doc, spec):
        encodes.append((dict(doc), spec))
        return real_encode(doc, spec)

    def decode(s, spec):
        decodes.append((bytes(s), spec))
        return real_decode(s, spec)

    def recording(name, fn):
        if name.startswith("encode"):

            def wrapped(msg, mac=None):
                copy = Message(msg.mti, dict(msg.fields), tpdu=msg.tpdu, header=msg.header)
                wire_calls.append((name, (copy, mac is not None)))
                return fn(msg, mac)

        else:

            def wrapped(frame):
                wire_calls.append((name, (bytes(frame),)))
                return fn(frame)

        return wrapped

    def timed(name, fn):
        def wrapped(*args, **kwargs):
            if depth[0]:  # inside another HSM call: counted there
                return fn(*args, **kwargs)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                hsm_us[name] += (time.perf_counter() - t) * 1e6
                hsm_n[name] += 1
                depth[0] -= 1

        return wrapped

    originals = {name: getattr(codec, name) for name in CODEC_FUNCTIONS}
    patched_modules = []
    for module in list(sys.modules.values()):  # every module that imported a codec function by name
        for name, fn in originals.items():
            if getattr(module, name, None) is fn:
                setattr(module, name, recording(name, fn))
                patched_modules.append((module, name, fn))
    hsm_originals = {name: getattr(SecurityModule, name) for name in HSM_CALLS if hasattr(SecurityModule, name)}
    for name, fn in hsm_originals.items():
        setattr(SecurityModule, name, timed(name, fn))
    iso8583.encode, iso8583.decode = encode, decode
    try:
        r = simulate(seed, transactions, "none")
    finally:
        iso8583.encode, iso8583.decode = real_encode, real_decode
        for name, fn in hsm_originals.items():
            setattr(SecurityModule, name, fn)
        for module, name, fn in patched_modules:
            setattr(module, name, fn)
    assert r.ok, r.violations
    n = r.transactions
    print(
        f"\nsimulator run recorded: seed {seed}, {n} transactions, faults none, {r.events} events, "
        f"trace {r.trace_hash} ({r.elapsed_s:.2f} s with the recording on)"
    )

    # -- replay --------------------------------------------------------------------
    def replay_library() -> float:
        best = float("inf")
        for _ in range(ROUNDS):
            docs = [(dict(doc), spec) for doc, spec in encodes]  # encode pops "1" and "65"
            gc.collect()
            t = time.perf_counter()
            for doc, spec in docs:
                try:
                    real_encode(doc, spec)
                except Exception:  # noqa: BLE001 - refused as in the run
                    pass
            for s, spec in decodes:
                try:
                    real_decode(s, spec)
                except Exception:  # noqa: BLE001
                    pass
            best = min(best, time.perf_counter() - t)
        return best * 1e6

    def replay_wire() -> float:
        best = float("inf")
        for _ in range(ROUNDS):
            calls = []
            for name, args in wire_calls:
                fn = originals[name]
                if name.startswith("encode"):
                    m, macced = args
                    calls.append((fn, (Message(m.mti, dict(m.fields), tpdu=m.tpdu, header=m.header), constant_mac if macced else None)))
                else:
                    calls.append((fn, args))
            gc.collect()
            t = time.perf_counter()
            for fn, args in calls:
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - refused as in the run
                    pass
            best = min(best, time.perf_counter() - t)
        return best * 1e6

    library_us = replay_library()
    wire_us = replay_wire()
    hsm_total = sum(hsm_us.values())
    kinds = Counter(name for name, _ in wire_calls)
    print(
        f"\ncalls per transaction: pyiso8583 {(len(encodes) + len(decodes)) / n:.2f} "
        f"({len(encodes) / n:.2f} encode, {len(decodes) / n:.2f} decode; {len(encodes) + len(decodes)} in all); "
        + ", ".join(f"{k} {kinds[k] / n:.2f}" for k in CODEC_FUNCTIONS)
    )
    print(f"microseconds per transaction (replayed, best of {ROUNDS} rounds; HSM timed in the run):")
    print(f"   pyiso8583 alone (iso8583.encode/decode)            {library_us / n:8.1f}")
    print(f"   posnet.wire codec functions (pyiso8583 included)    {wire_us / n:8.1f}   wrapper {(wire_us - library_us) / n:.1f}")
    print(f"   SecurityModule calls                               {hsm_total / n:8.1f}")
    for name, us in sorted(hsm_us.items(), key=lambda kv: -kv[1]):
        print(f"      {name:<20} {hsm_n[name] / n:5.2f} calls {us / n:7.1f}")
    print("transactions/s one core could reach if everything else were free:")
    print(f"   pyiso8583 alone                                    {n / library_us * 1e6:8.0f}")
    print(f"   pyiso8583 and the HSM                              {n / (library_us + hsm_total) * 1e6:8.0f}")
    print(f"   posnet.wire codec and the HSM                      {n / (wire_us + hsm_total) * 1e6:8.0f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sim", action="store_true", help="time the simulator, --repeat runs")
    mode.add_argument("--sim-bound", action="store_true", help="record a simulator run and time pyiso8583 alone on its calls")
    p.add_argument("--calls", type=int, default=20000, help="calls per round for the per-call figures (default 20000)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--transactions", type=int, default=5000, help="simulated transactions (default 5000)")
    p.add_argument("--repeat", type=int, default=3, help="simulator runs for --sim (default 3)")
    p.add_argument("--at", metavar="REV", help="measure src/posnet as committed at REV (a snapshot)")
    args = p.parse_args(argv)
    remove_snapshot_at_exit()
    print(f"machine: {machine_line()}")
    print(f"posnet: {source_version()}")
    print(f"pyiso8583: {getattr(iso8583, '__version__', '?')}")
    if args.sim:
        sim(args.seed, args.transactions, args.repeat)
    elif args.sim_bound:
        sim_bound(args.seed, args.transactions)
    else:
        per_call(args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
