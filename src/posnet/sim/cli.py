"""`posnet sim`: run seeds, print what they found, replay one as a story."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from .faults import PROFILES
from .run import SimResult, simulate


def parse_seeds(text: str) -> list[int]:
    """'7', '1..200' or '1,5,9'."""
    seeds: list[int] = []
    for part in text.split(","):
        if ".." in part:
            lo, hi = part.split("..", 1)
            seeds += range(int(lo), int(hi) + 1)
        else:
            seeds.append(int(part))
    return seeds


def _one(args: tuple[int, int, str]) -> SimResult:
    seed, n, prof = args
    return simulate(seed, n, prof)


def register_cli(sub) -> None:
    sp = sub.add_parser("sim", help="deterministic simulation of the whole network under faults")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, default=None, help="one seed (default 1)")
    g.add_argument("--seeds", help="many seeds, e.g. 1..200, run in parallel processes")
    g.add_argument("--replay", type=int, help="run one seed again and tell the story of what broke")
    sp.add_argument("--transactions", type=int, default=200, help="terminal functions per seed (default 200)")
    sp.add_argument("--faults", default="heavy", choices=sorted(PROFILES), help="fault profile (default heavy)")
    sp.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for --seeds")
    sp.set_defaults(fn=main)


def main(args: argparse.Namespace) -> int:
    if args.replay is not None:
        r = simulate(args.replay, args.transactions, args.faults, keep_story=True)
        _print_one(r)
        print(r.story or "no rule was broken: nothing to tell")
        return 0 if r.ok else 1
    if args.seeds is None:
        r = simulate(args.seed or 1, args.transactions, args.faults)
        _print_one(r)
        if not r.ok:
            print(f"replay with: posnet sim --replay {r.seed} --transactions {args.transactions} --faults {args.faults}")
        return 0 if r.ok else 1
    seeds = parse_seeds(args.seeds)
    started = time.perf_counter()
    failed: list[SimResult] = []
    faults: Counter = Counter()
    outcomes: Counter = Counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(_one, [(s, args.transactions, args.faults) for s in seeds]):
            faults.update(r.faults)
            outcomes.update(r.outcomes)
            if not r.ok:
                failed.append(r)
                print(f"seed {r.seed}: {len(r.violations)} violation(s): {r.violations[0]}", flush=True)
    elapsed = time.perf_counter() - started
    total = len(seeds) * args.transactions
    print(f"seeds run: {len(seeds)}  transactions: {total}  profile: {PROFILES[args.faults].describe()}")
    print(f"faults injected: {sum(faults.values())} ({', '.join(f'{k} {v}' for k, v in faults.most_common())})")
    print(f"outcomes: {', '.join(f'{k} {v}' for k, v in outcomes.most_common(12))}")
    print(f"violations: {sum(len(r.violations) for r in failed)} in {len(failed)} seed(s)"
          + (f": {', '.join(str(r.seed) for r in failed)}" if failed else ""))
    print(f"time: {elapsed:.1f} s with {args.jobs} process(es), {total / elapsed:.0f} transactions/s")
    for r in failed[:3]:
        print(f"replay with: posnet sim --replay {r.seed} --transactions {args.transactions} --faults {args.faults}")
    return 1 if failed else 0


def _print_one(r: SimResult) -> None:
    print(f"seed {r.seed}: {r.transactions} transactions, profile {r.profile}, {r.events} events, trace {r.trace_hash}")
    print(f"  faults: {', '.join(f'{k} {v}' for k, v in r.faults.most_common()) or 'none'}")
    print(f"  outcomes: {', '.join(f'{k} {v}' for k, v in r.outcomes.most_common())}")
    print(f"  {'rules hold' if r.ok else 'VIOLATIONS:'}")
    for v in r.violations:
        print(f"    - {v}")
    print(f"  {r.elapsed_s:.2f} s, {r.transactions / r.elapsed_s:.0f} transactions/s (traffic, quiescence and checks)")


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="posnet")
    register_cli(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(["sim", *sys.argv[1:]])
    sys.exit(a.fn(a))
