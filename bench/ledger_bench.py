"""Ledger benchmark: prints figures; not a test.

    python bench/ledger_bench.py            # full run (1M accounts and 1M transfers for the rebuild)
    python bench/ledger_bench.py --quick    # smaller N, a few seconds
    python bench/ledger_bench.py --no-pg    # SQLite only
    python bench/ledger_bench.py --pg postgresql://127.0.0.1:5432/test

What is timed, for every rate: ``Ledger.create_transfers`` + ``take_changes``
+ ``store.write`` + ``commit``, one transaction per batch. The Transfer
objects are built before the clock starts (they are the caller's). SQLite
runs in WAL mode with ``synchronous=FULL`` (fsync at every commit) unless
said otherwise. The PostgreSQL figures use a scratch schema, dropped after.

The raw SQLite rate is executemany of the very same rows into an empty
table of the same shape, one commit per 1,000 rows, with nothing else: the
ceiling the ledger's store is measured against.

The rebuild figures run in a fresh child process, which reports the time of
``store.load()`` (with and without the full invariant check) and its
resident memory (VmRSS from /proc, and the peak ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from posnet.ledger import (  # noqa: E402
    Account,
    AccountFlags,
    CreateTransferResult,
    Ledger,
    PostgresLedgerStore,
    SqliteLedgerStore,
    Transfer,
    TransferFlags,
)
from posnet.ledger.store import _TRANSFER_COLS, open_sqlite  # noqa: E402

NOW = 1_795_485_600_000
CNY = 156
FUNDING = 1
N_ACCOUNTS = 10_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ workloads


def accounts(n: int) -> list[Account]:
    out = [Account(FUNDING, CNY, 1501)]
    out += [Account(i, CNY, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for i in range(2, n + 2)]
    return out


def openings(n: int, rng: random.Random) -> list[Transfer]:
    return [Transfer(rng.getrandbits(127) + 1, FUNDING, i, 10**12, CNY, 1) for i in range(2, n + 2)]


def singles(n: int, rng: random.Random, n_accounts: int = N_ACCOUNTS) -> list[Transfer]:
    """Random single-phase transfers between cardholders, random 128-bit ids."""
    out = []
    for _ in range(n):
        a = rng.randrange(2, n_accounts + 2)
        b = rng.randrange(2, n_accounts + 1)
        if b >= a:
            b += 1
        out.append(Transfer(rng.getrandbits(127) + 1, a, b, rng.randint(1, 100_000), CNY, 11,
                            user_data=rng.getrandbits(127) + 1))
    return out


def hold_post_batches(cycles: int, per_batch: int, rng: random.Random) -> list[list[Transfer]]:
    """Batches of ``per_batch`` holds plus the posts of the previous batch's holds."""
    batches = []
    prev: list[Transfer] = []
    done = 0
    while done < cycles or prev:
        holds = []
        if done < cycles:
            for _ in range(min(per_batch, cycles - done)):
                card = rng.randrange(2, N_ACCOUNTS + 2)
                holds.append(Transfer(rng.getrandbits(127) + 1, card, FUNDING, rng.randint(100, 100_000), CNY, 10,
                                      TransferFlags.PENDING, user_data=rng.getrandbits(127) + 1,
                                      timeout_s=7 * 86_400))
            done += len(holds)
        posts = [Transfer(rng.getrandbits(127) + 1, 0, 0, h.amount - 50, 0, 0, TransferFlags.POST_PENDING,
                          pending_id=h.id) for h in prev]
        batches.append(holds + posts)
        prev = holds
    return batches


# --------------------------------------------------------------------- stores


class Sqlite:
    name = "SQLite"

    def __init__(self, directory: str, synchronous: str = "FULL"):
        self.directory = directory
        self.synchronous = synchronous

    def open(self):
        path = os.path.join(self.directory, f"{uuid.uuid4().hex}.db")
        conn = open_sqlite(path, self.synchronous)
        store = SqliteLedgerStore(conn)
        store.migrate()
        return conn, store

    def cleanup(self):
        pass


class Postgres:
    name = "PostgreSQL"

    def __init__(self, base_url: str):
        import psycopg

        self.base_url = base_url
        self.admin = psycopg.connect(base_url, autocommit=True, connect_timeout=3)
        self.schemas: list[str] = []
        self.conns: list = []

    def url_of(self, schema: str) -> str:
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options={quote(f'-csearch_path={schema}')}"

    def open(self):
        import psycopg

        schema = f"ledger_bench_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        conn = psycopg.connect(self.url_of(schema))
        self.conns.append(conn)
        store = PostgresLedgerStore(conn)
        store.migrate()
        return conn, store

    def cleanup(self):
        for c in self.conns:
            c.close()
        for s in self.schemas:
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        self.admin.close()


def fresh_books(backend, rng):
    conn, store = backend.open()
    led = Ledger()
    led.create_accounts(accounts(N_ACCOUNTS), NOW)
    assert set(led.create_transfers(openings(N_ACCOUNTS, rng), NOW)) == {CreateTransferResult.OK}
    store.write(led.take_changes())
    conn.commit()
    return conn, store, led


def run_batches(backend, batches: list[list[Transfer]], rng) -> float:
    """Seconds to apply, write and commit every batch, one transaction each."""
    conn, store, led = fresh_books(backend, rng)
    now = NOW
    t0 = time.perf_counter()
    for batch in batches:
        now += 1
        results = led.create_transfers(batch, now)
        store.write(led.take_changes())
        conn.commit()
    dt = time.perf_counter() - t0
    assert set(results) == {CreateTransferResult.OK}, set(results)
    conn.close()
    return dt


def transfers_per_s(backend, n: int, batch: int, rng) -> float:
    ts = singles(n, rng)
    dt = run_batches(backend, [ts[k:k + batch] for k in range(0, n, batch)], rng)
    return n / dt


def cycles_per_s(backend, cycles: int, rng) -> float:
    batches = hold_post_batches(cycles, 500, rng)
    dt = run_batches(backend, batches, rng)
    return cycles / dt


def memory_only_per_s(n: int, batch: int, rng) -> float:
    led = Ledger()
    led.create_accounts(accounts(N_ACCOUNTS), NOW)
    led.create_transfers(openings(N_ACCOUNTS, rng), NOW)
    led.take_changes()
    ts = singles(n, rng)
    t0 = time.perf_counter()
    for k in range(0, n, batch):
        led.create_transfers(ts[k:k + batch], NOW + 1)
        led.take_changes()
    return n / (time.perf_counter() - t0)


def raw_sqlite_per_s(directory: str, n: int, rng, synchronous: str = "FULL") -> float:
    """executemany of the same rows the store writes, into a bare table of the same shape."""
    ts = singles(n, rng)
    rows = [
        (seq, str(t.id), str(t.debit_account_id), str(t.credit_account_id), t.amount, t.ledger, t.code,
         t.flags.value, str(t.pending_id), str(t.user_data), t.timeout_s, NOW)
        for seq, t in enumerate(ts, 1)
    ]
    conn = open_sqlite(os.path.join(directory, f"raw-{uuid.uuid4().hex}.db"), synchronous)
    SqliteLedgerStore(conn).migrate()
    sql = f"INSERT INTO ledger_transfers ({_TRANSFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    t0 = time.perf_counter()
    for k in range(0, n, 1000):
        conn.executemany(sql, rows[k:k + 1000])
        conn.commit()
    dt = time.perf_counter() - t0
    (count,) = conn.execute("SELECT count(*) FROM ledger_transfers").fetchone()
    assert count == n
    conn.close()
    return n / dt


# -------------------------------------------------------------------- rebuild


class BigBuild:
    """Writes n accounts, then n transfers, to several backends at once (batches of 10,000)."""

    def __init__(self, backends, rng):
        self.backends = backends
        self.rng = rng
        self.conns = [b.open() for b in backends]
        self.led = Ledger()
        self.timing = {b.name: {"accounts": 0.0, "transfers": 0.0} for b in backends}
        self.ids: list[int] = []

    def _flush(self, phase: str) -> None:
        changes = self.led.take_changes()
        for b, (conn, store) in zip(self.backends, self.conns):
            t0 = time.perf_counter()
            store.write(changes)
            conn.commit()
            self.timing[b.name][phase] += time.perf_counter() - t0

    def accounts(self, n: int) -> None:
        rng = self.rng
        accts = [Account(FUNDING, CNY, 1501)] + [
            Account((rng.getrandbits(96) << 32) | i, CNY, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                    user_data=i)
            for i in range(2, n + 1)
        ]
        self.ids = [a.id for a in accts[1:]]
        for k in range(0, len(accts), 10_000):
            assert set(self.led.create_accounts(accts[k:k + 10_000], NOW)) == {"ok"}
            self._flush("accounts")

    def transfers(self, n: int) -> None:
        """A third opening balances; then holds on funded accounts, most of them posted later."""
        rng = self.rng
        ids = self.ids
        funded: list[int] = []
        pending: list[Transfer] = []
        now = NOW
        batch: list[Transfer] = []
        for made in range(n):
            r = rng.random()
            if r < 0.34 or not funded:
                acct = rng.choice(ids)
                funded.append(acct)
                t = Transfer(rng.getrandbits(127) + 1, FUNDING, acct, rng.randint(10**6, 10**8), CNY, 1)
            elif r < 0.67 or not pending:
                t = Transfer(rng.getrandbits(127) + 1, rng.choice(funded), FUNDING, rng.randint(1, 2_000), CNY, 10,
                             TransferFlags.PENDING, user_data=rng.getrandbits(127) + 1, timeout_s=7 * 86_400)
                pending.append(t)
            else:
                p = pending.pop(rng.randrange(len(pending)))
                t = Transfer(rng.getrandbits(127) + 1, 0, 0, 0, 0, 0, TransferFlags.POST_PENDING, pending_id=p.id)
            batch.append(t)
            if len(batch) == 10_000 or made == n - 1:
                now += 1_000
                results = self.led.create_transfers(batch, now)
                assert set(results) == {CreateTransferResult.OK}, set(results)
                batch = []
                self._flush("transfers")

    def locations(self):
        out = []
        for b, (conn, _store) in zip(self.backends, self.conns):
            if b.name == "SQLite":
                out.append(("sqlite", conn.execute("PRAGMA database_list").fetchone()[2], b.name))
            else:
                out.append(("pg", b.url_of(b.schemas[-1]), b.name))
        return out

    def close(self) -> None:
        for conn, _store in self.conns:
            conn.close()


def load_in_child(kind: str, location: str, verify: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load-child", kind, location, "verify" if verify else "noverify"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_load(kind: str, location: str, verify: str) -> None:
    import gc

    before = rss_mib()
    if kind == "sqlite":
        conn = open_sqlite(location)
        store = SqliteLedgerStore(conn)
    else:
        import psycopg

        conn = psycopg.connect(location)
        store = PostgresLedgerStore(conn)
    t0 = time.perf_counter()
    led = store.load(verify=False)
    load_s = time.perf_counter() - t0
    check_s = None
    if verify == "verify":
        t1 = time.perf_counter()
        led.check_invariants()
        check_s = time.perf_counter() - t1
    gc.collect()
    after = rss_mib()
    print(json.dumps({
        "accounts": led.account_count(),
        "transfers": led.transfer_count(),
        "load_s": load_s,
        "check_s": check_s,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "ledger_mib": after - before,
        "maxrss_mib": maxrss_mib(),
    }))


# ----------------------------------------------------------------------- main


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller N for a fast run")
    ap.add_argument("--pg", default="postgresql://127.0.0.1:5432/test", help="PostgreSQL URL (a scratch schema is made)")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--repeat", type=int, default=None,
                    help="run each rate this many times and keep the best (default 3, 1 with --quick)")
    ap.add_argument("--load-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        child_load(*args.load_child)
        return

    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    rng = random.Random(20261124)

    def best(fn, *a):
        return max(fn(*a) for _ in range(repeat))

    tmp = tempfile.mkdtemp(prefix="ledger-bench-")
    backends = [Sqlite(tmp)]
    if not args.no_pg:
        try:
            backends.append(Postgres(args.pg))
        except Exception as e:  # noqa: BLE001
            print(f"(PostgreSQL skipped: {e})")

    print(f"# posnet ledger benchmark{' (--quick)' if quick else ''}")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    print(f"accounts for the rates: {N_ACCOUNTS:,} cardholders (DEBITS_MUST_NOT_EXCEED_CREDITS), random pairs,")
    print("random 128-bit transfer ids; SQLite WAL synchronous=FULL;")
    print(f"each rate is the best of {repeat} run(s)")
    print()

    n_one = 300 if quick else 2_000
    n_100 = 10_000 if quick else 50_000
    n_1000 = 20_000 if quick else 200_000
    n_cycles = 10_000 if quick else 100_000

    rows = []
    mem = best(memory_only_per_s, n_1000, 1000, rng)
    rows.append(("in memory only (no store), batches of 1,000", "transfers/s", fmt_rate(mem)))
    raw = best(raw_sqlite_per_s, tmp, n_1000, rng)
    rows.append(("raw SQLite executemany of the same rows, 1,000 per commit", "rows/s", fmt_rate(raw)))
    for b in backends:
        r1 = best(transfers_per_s, b, n_one, 1, rng)
        rows.append((f"{b.name}: one transfer per commit", "transfers/s", fmt_rate(r1)))
        r100 = best(transfers_per_s, b, n_100, 100, rng)
        rows.append((f"{b.name}: batches of 100", "transfers/s", fmt_rate(r100)))
        r1000 = best(transfers_per_s, b, n_1000, 1000, rng)
        rows.append((f"{b.name}: batches of 1,000", "transfers/s", fmt_rate(r1000)))
        if b.name == "SQLite":
            rows.append(("  SQLite batches of 1,000 / raw insert rate", "ratio", f"{r1000 / raw:.2f}"))
        c = best(cycles_per_s, b, n_cycles, rng)
        rows.append((f"{b.name}: pending-then-post cycles, 1,000 transfers per commit", "cycles/s", fmt_rate(c)))
    normal = Sqlite(tmp, "NORMAL")
    rows.append(("SQLite synchronous=NORMAL: one transfer per commit", "transfers/s",
                 fmt_rate(best(transfers_per_s, normal, n_one * 5, 1, rng))))
    rows.append(("SQLite synchronous=NORMAL: batches of 1,000", "transfers/s",
                 fmt_rate(best(transfers_per_s, normal, n_1000, 1000, rng))))

    width = max(len(r[0]) for r in rows)
    for name, unit, value in rows:
        print(f"{name:<{width}}  {value:>12} {unit}")
    print()

    n_big = 100_000 if quick else 1_000_000
    print(f"## rebuild: {n_big:,} accounts, then {n_big:,} transfers (random ids; 1/3 opening balances,")
    print("## 1/3 holds on funded cardholders, 1/3 posts of those holds)")
    big = BigBuild([Sqlite(tmp)] + [b for b in backends if b.name == "PostgreSQL"], rng)
    big.accounts(n_big)
    for name, t in big.timing.items():
        print(f"{name}: wrote {n_big:,} accounts in {t['accounts']:.1f} s (batches of 10,000, write + commit)")
    for kind, loc, name in big.locations():
        r = load_in_child(kind, loc, verify=True)
        print(f"{name}: load of {r['accounts']:,} accounts {r['load_s']:.1f} s "
              f"(+{r['check_s']:.1f} s check_invariants); ledger {r['ledger_mib']:.0f} MiB "
              f"(process RSS {r['rss_after_mib']:.0f} MiB, peak {r['maxrss_mib']:.0f} MiB)")
    big.transfers(n_big)
    for name, t in big.timing.items():
        print(f"{name}: wrote {n_big:,} transfers in {t['transfers']:.1f} s (batches of 10,000, write + commit)")
    for kind, loc, name in big.locations():
        r = load_in_child(kind, loc, verify=True)
        print(f"{name}: load of {r['accounts']:,} accounts + {r['transfers']:,} transfers {r['load_s']:.1f} s "
              f"(+{r['check_s']:.1f} s check_invariants); ledger {r['ledger_mib']:.0f} MiB "
              f"(process RSS {r['rss_after_mib']:.0f} MiB, peak {r['maxrss_mib']:.0f} MiB)")
    big.close()
    for b in backends:
        b.cleanup()


if __name__ == "__main__":
    main()
