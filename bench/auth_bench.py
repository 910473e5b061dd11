#!/usr/bin/env python3
"""Authorizations over TCP: N terminals selling at once against a real network.

    python bench/auth_bench.py --terminals 1,4,16 --seconds 10

For each N, a fresh network is started the way ``posnet up`` starts one
(every party its own process, on free loopback ports, in a temporary
folder), from the demo config with N bench terminals added at the acquirer
and the active cards given a balance no run can spend. N terminals sign on
once, then each sells in a loop, one sale at a time, for the given time.
A terminal here is the real terminal core (posnet.terminal.core.Terminal)
driven by a small asyncio client in this one process: one TCP connection
per terminal, kept open, and no store (the client keeps its records in
memory, so the client's own disk does not count against the network).

Latency is from the moment the sale's frame is written to the socket to the
moment the terminal core has parsed and checked the approved reply (MAC
included). Only sales that complete inside the timed window count; a short
warm-up before it is not counted. Declines are counted by response code,
apart from approvals.

With ``--config FILE`` the bench runs against a network that is already up:
it uses the first N terminals of that file (they sign on again, so a POS
using one of them must sign on again after) and the first card, or --card.

CPU: the user+system time of this process and of each party process
(/proc/<pid>/stat) over the timed window, in per cent of one core, and the
busy time of the whole machine (/proc/stat) so that load from anything else
on the machine shows. Every process here is single-threaded, so one at
about 100% is the bottleneck; the verdict line says which.

``--profile PARTY`` samples that party with py-spy during each timed window
(py-spy must be installed; it is not a dependency of posnet) and prints
where its time goes, idle time included (--idle), so that time blocked in
fsync shows.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

SNAPSHOT_ENV = (
    "POSNET_BENCH_AT"  # "<commit> <folder>" once re-run on a snapshot of src/posnet
)


def run_at_commit(script: Path) -> None:
    """--at REV: run this bench, and every party it starts, on src/posnet as of REV.

    Other people commit and edit in the same checkout; a snapshot keeps one
    version under every run of an invocation. The snapshot is a `git archive`
    of src/posnet in a temporary folder, put first on PYTHONPATH (which the
    party processes inherit), and this script is run again on it.
    """
    argv = sys.argv[1:]
    rev = None
    for i, a in enumerate(argv):
        if a == "--at" and i + 1 < len(argv):
            rev = argv[i + 1]
        elif a.startswith("--at="):
            rev = a.split("=", 1)[1]
    if rev is None or os.environ.get(SNAPSHOT_ENV):
        return
    import io
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    commit = subprocess.run(
        [*git, "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=False,
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise SystemExit(f"auth_bench: --at {rev}: not a commit of {repo}")
    commit_id = commit.stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix=f"posnet-src-{commit_id[:8]}-"))
    tar = subprocess.run(
        [*git, "archive", commit_id, "src/posnet"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(folder, filter="data")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(folder / "src"), env.get("PYTHONPATH", "")) if p
    )
    env[SNAPSHOT_ENV] = f"{commit_id} {folder}"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, str(script.resolve()), *argv], env)


_snapshot_cleanup = []


def remove_snapshot_at_exit() -> None:
    """Remove the --at snapshot when this process ends (once, however often it is called)."""
    at = os.environ.get(SNAPSHOT_ENV)
    if (
        at
        and not _snapshot_cleanup
        and at.split(" ", 1)[1].startswith(tempfile.gettempdir())
    ):
        import atexit

        _snapshot_cleanup.append(at.split(" ", 1)[1])
        atexit.register(shutil.rmtree, _snapshot_cleanup[0], True)


if __name__ == "__main__":
    run_at_commit(Path(__file__))
    remove_snapshot_at_exit()  # before posnet is imported from it, in case that fails

from posnet import config as cfg
from posnet.cli import start_network, stop_network
from posnet.demo.story import write_config
from posnet.effects import (
    CancelTimer,
    Command,
    Done,
    Received,
    Send,
    SetTimer,
    TimerFired,
)
from posnet.runtime.node import now_ms
from posnet.security import SecurityModule
from posnet.terminal.core import RESPONSE_TIMER, Card, Terminal
from posnet.wire import FrameReader, WireError, frame

# A host-leg sale request (acquirer -> switch) as the benches time it: bench/codec_bench.py, bench/auth_costs.py.
SAMPLE_HOST_SALE = {
    "2": "6222020000000001",
    "3": "000000",
    "4": "000000000100",
    "7": "1124014500",
    "11": "000123",
    "12": "094500",
    "13": "1124",
    "14": "3012",
    "18": "5411",
    "22": "021",
    "25": "00",
    "32": "48020000",
    "33": "48020000",
    "35": "6222020000000001=30122010000000000",
    "37": "000000000123",
    "41": "90000001",
    "42": "898310148160001",
    "43": "posnet 测试商户",
    "49": "156",
    "52": "54C4406EC8B0BC42",
    "53": "2600000000000000",
    "60": "000001000123",
}
BENCH_BALANCE = "1000000000.00"  # yuan: no run spends it
# The demo's two active cards with a balance (bank-a's first card, bank-b's card).
DEMO_BALANCES = ('balance = "10000.00"', 'balance = "2000.00"')
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the network --------------------------------------------------------------


def bench_terminal_id(n: int) -> str:
    return f"9{n:07d}"  # 90000001, 90000002, … (8 characters)


def bench_config_text(text: str, terminals: int) -> str:
    """The demo config with `terminals` bench terminals and balances no run can spend."""
    for old in DEMO_BALANCES:
        if text.count(old) != 1:
            raise SystemExit(
                f"auth_bench: the demo config no longer has exactly one {old!r}; update DEMO_BALANCES"
            )
        text = text.replace(old, f'balance = "{BENCH_BALANCE}"')
    merchant_id = tomllib.loads(text)["acquirer"]["merchants"][0]["merchant_id"]
    extra = [f"\n# {terminals} bench terminals (bench/auth_bench.py)\n"]
    for n in range(1, terminals + 1):
        extra.append(
            "[[acquirer.terminals]]\n"
            f'terminal_id = "{bench_terminal_id(n)}"\n'
            f'merchant_id = "{merchant_id}"\n'
            f'tmk = "{secrets.token_hex(16).upper()}"\n\n'
        )
    return text + "".join(extra)


def make_network(directory: Path, terminals: int) -> tuple[cfg.Network, Path]:
    path = write_config(directory)  # the demo config on four free loopback ports
    path.write_text(
        bench_config_text(path.read_text(encoding="utf-8"), terminals), encoding="utf-8"
    )
    return cfg.load(path), path


def listening_pids(ports: dict[str, int]) -> dict[str, int]:
    """Party -> pid of the process listening on its port (for --config; best effort)."""
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            port = int(parts[1].rsplit(":", 1)[1], 16)
            if parts[3] == "0A":  # LISTEN
                for party, p in ports.items():
                    if p == port:
                        inodes[f"socket:[{parts[9]}]"] = party
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                party = inodes.get(os.readlink(fd))
                if party:
                    found[party] = int(proc.name)
        except OSError:
            continue
    return found


# -- CPU accounting -------------------------------------------------------------


def proc_sched_s(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of a process's main thread."""
    try:
        run_ns, wait_ns, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        pass
    try:  # no schedstat: user+system ticks from /proc/<pid>/stat, and no wait figure
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, float("nan")


def machine_steal_s() -> float:
    """CPU time the hypervisor gave to someone else while this machine's CPUs wanted to run (/proc/stat steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[7] if len(v) > 7 else 0) / CLK_TCK


def machine_busy_s() -> float:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq; not idle, iowait, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


@dataclasses.dataclass
class CpuSnap:
    wall: float
    client: tuple[float, float] | None
    parties: dict[str, tuple[float, float] | None]
    machine: float
    steal: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSnap:
        return cls(
            time.perf_counter(),
            proc_sched_s(os.getpid()),
            {p: proc_sched_s(pid) for p, pid in pids.items()},
            machine_busy_s(),
            machine_steal_s(),
        )


def wait_quiet(max_wait_s: float, busy_below_pct: float = 15.0) -> str:
    """Wait (up to max_wait_s) for one second in which the machine is under busy_below_pct busy."""
    end = time.monotonic() + max_wait_s
    while True:
        a, t = machine_busy_s(), time.monotonic()
        time.sleep(1.0)
        busy = 100 * (machine_busy_s() - a) / (time.monotonic() - t)
        if busy < busy_below_pct:
            return f"machine {busy:.0f}% busy before the run"
        if time.monotonic() >= end:
            return f"machine still {busy:.0f}% busy before the run (waited {max_wait_s:.0f} s)"


# -- one bench terminal ---------------------------------------------------------------


class BenchTerminal(asyncio.Protocol):
    """The terminal core on one kept-open TCP connection; its records stay in memory."""

    def __init__(self, net: cfg.Network, terminal_id: str, host: str, port: int):
        tcfg, clear_tmk = cfg.terminal_config(net, terminal_id)
        tcfg = dataclasses.replace(
            tcfg, print_copies=()
        )  # a POS with its printer switched off
        self.hsm = SecurityModule(SecurityModule.generate_lmk())
        self.core = Terminal(tcfg, self.hsm, self.hsm.import_clear_key(clear_tmk))
        self.core.restore(
            {}, now_ms()
        )  # a fresh terminal, as TerminalDriver starts one with an empty store
        if hasattr(
            self.core, "devices"
        ):  # a terminal with a battery: on mains, so it never runs flat
            self.core.handle(Command("battery", {"mains": True}), now_ms())
        self.host, self.port = host, port
        self.transport: asyncio.Transport | None = None
        self.frames = FrameReader()
        self.inbox: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.closed_count = 0

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.inbox.extend(self.frames.feed(data))
        except WireError:
            self.inbox.append(data)  # let the core judge an unreadable reply
            self.frames = FrameReader()
        self._wake()

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.closed_count += 1
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _connect(self) -> None:
        self.frames = FrameReader()
        self.inbox.clear()
        await asyncio.get_running_loop().create_connection(
            lambda: self, self.host, self.port
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def run(self, name: str, **args) -> tuple[Done, float, float, int]:
        """One POS function: (its Done, first frame written at, reply parsed at, frames sent)."""
        loop = asyncio.get_running_loop()
        effects = self.core.handle(Command(name, args), now_ms())
        sent_at = 0.0
        sends = 0
        deadline_ms: int | None = None
        while True:
            done = None
            for e in effects:
                if isinstance(e, Send):
                    if self.transport is None:
                        await self._connect()
                    self.transport.write(frame(e.frame))
                    sends += 1
                    if sends == 1:
                        sent_at = time.perf_counter()
                elif isinstance(e, SetTimer):
                    deadline_ms = e.at_ms
                elif isinstance(e, CancelTimer):
                    deadline_ms = None
                elif isinstance(e, Done):
                    done = e
            if done is not None:
                return done, sent_at, time.perf_counter(), sends
            while not self.inbox and self.transport is not None:
                self.waiter = loop.create_future()
                timer = None
                if deadline_ms is not None:
                    timer = loop.call_later(
                        max(0.0, (deadline_ms - now_ms()) / 1000), self._wake
                    )
                try:
                    await self.waiter
                finally:
                    self.waiter = None
                    if timer is not None:
                        timer.cancel()
                if deadline_ms is not None and now_ms() >= deadline_ms:
                    break
            if self.inbox:
                event = Received("acquirer", self.inbox.popleft())
            else:  # timed out, or the acquirer closed the connection: the core decides (reversal next time)
                event = TimerFired(RESPONSE_TIMER)
            effects = self.core.handle(event, now_ms())


# -- one run --------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    done_at: float
    latency_s: float
    ok: bool
    rc: str
    sends: int


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


async def bench_run(
    net: cfg.Network,
    terminal_ids: list[str],
    cards: list[tuple[Card, str | None]],
    seconds: float,
    warmup: float,
    amount_fen: int,
    pids: dict[str, int],
    profile: tuple[str, Path] | None,
) -> dict:
    ep = net.endpoint("acquirer")
    terms = [BenchTerminal(net, tid, ep.host, ep.port) for tid in terminal_ids]
    signed = await asyncio.gather(*(t.run("sign-on") for t in terms))
    for tid, (done, *_rest) in zip(terminal_ids, signed):
        if not done.ok:
            raise SystemExit(
                f"auth_bench: terminal {tid} could not sign on: {done.response_code} {done.result}"
            )

    samples: list[Sample] = []
    stop = asyncio.Event()

    async def sell(n: int, term: BenchTerminal) -> None:
        card, pin = cards[n % len(cards)]
        while not stop.is_set():
            done, sent_at, done_at, sends = await term.run(
                "sale", card=card, pin=pin, amount_fen=amount_fen
            )
            if (
                sends == 0
            ):  # ended before going online (e.g. signed off after a MAC error): count it, sign on again
                samples.append(
                    Sample(
                        done_at,
                        0.0,
                        False,
                        f"offline: {done.result.get('error', '?')}",
                        0,
                    )
                )
                again, *_ = await term.run("sign-on")
                if not again.ok:
                    await asyncio.sleep(0.1)
                continue
            samples.append(
                Sample(
                    done_at,
                    done_at - sent_at,
                    bool(done.ok),
                    done.response_code or "--",
                    sends,
                )
            )

    tasks = [asyncio.create_task(sell(n, t)) for n, t in enumerate(terms)]
    await asyncio.sleep(warmup)
    spy = None
    if profile is not None:
        party, out = profile
        target = os.getpid() if party == "client" else pids[party]
        spy = await asyncio.create_subprocess_exec(
            *(
                "py-spy",
                "record",
                "--pid",
                str(target),
                "--duration",
                str(math.ceil(seconds)),
            ),
            *(
                "--rate",
                "200",
                "--idle",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    start = CpuSnap.take(pids)
    await asyncio.sleep(seconds)
    end = CpuSnap.take(pids)
    stop.set()
    await asyncio.gather(*tasks)
    lost = sum(t.closed_count for t in terms)
    for t in terms:
        t.close()
    if spy is not None:
        await spy.wait()

    window = [s for s in samples if start.wall <= s.done_at <= end.wall]
    wall = end.wall - start.wall

    def share(a, b, i):  # per cent of the window
        return None if a is None or b is None else 100 * (b[i] - a[i]) / wall

    approved = sorted(s.latency_s * 1000 for s in window if s.ok)
    declines = collections.Counter(s.rc for s in window if not s.ok)
    party_cpu = {p: share(start.parties[p], end.parties[p], 0) for p in pids}
    party_wait = {p: share(start.parties[p], end.parties[p], 1) for p in pids}
    client_cpu = share(start.client, end.client, 0)
    machine = 100 * (end.machine - start.machine) / wall
    ours = (client_cpu or 0) + sum(v for v in party_cpu.values() if v is not None)
    return {
        "terminals": len(terms),
        "seconds": round(wall, 3),
        "approved": len(approved),
        "auth_per_s": len(approved) / wall,
        "p50_ms": pct(approved, 50),
        "p95_ms": pct(approved, 95),
        "p99_ms": pct(approved, 99),
        "max_ms": approved[-1] if approved else float("nan"),
        "declined": dict(declines),
        "with_reversal": sum(1 for s in window if s.sends > 1),
        "connections_lost": lost,
        "cpu_client_pct": client_cpu,
        "wait_client_pct": share(start.client, end.client, 1),
        "cpu_parties_pct": party_cpu,
        "wait_parties_pct": party_wait,
        "cpu_machine_pct": machine,
        "cpu_steal_pct": 100 * (end.steal - start.steal) / wall,
        "cpu_others_pct": max(0.0, machine - ours),
        "cores": os.cpu_count(),
    }


def known(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


def verdict(r: dict) -> str:
    noted = verdict_of_processes(r)
    if r["cpu_others_pct"] >= 25:
        return (
            f"disturbed: other load took {r['cpu_others_pct']:.0f}% of a core during the run; "
            + noted
        )
    return noted


def verdict_of_processes(r: dict) -> str:
    cores = r["cores"] or 1
    if (r["cpu_client_pct"] or 0) >= 85:
        return (
            f"the client is the bottleneck: this process was on a CPU {r['cpu_client_pct']:.0f}% of the window; "
            "the network may do more than this figure"
        )
    cpu = {"client": r["cpu_client_pct"], **r["cpu_parties_pct"]}
    wait = {"client": r["wait_client_pct"], **r["wait_parties_pct"]}
    busiest = max(
        ((v, p) for p, v in cpu.items() if v is not None and p != "client"),
        default=(0.0, "?"),
    )
    if busiest[0] >= 85:
        return f"{busiest[1]} is CPU-bound (on a CPU {busiest[0]:.0f}% of the window)"
    waits = sum(v for v in wait.values() if known(v))
    wanting = max(
        (
            (cpu[p] + (wait[p] if known(wait[p]) else 0), p)
            for p in cpu
            if cpu[p] is not None
        ),
        default=(0.0, "?"),
    )
    if r["cpu_machine_pct"] >= 90 * cores or wanting[0] >= 80:
        return (
            f"CPU is the limit: the machine was {r['cpu_machine_pct']:.0f}% busy of {cores * 100}%, "
            f"{wanting[1]} was running or runnable {wanting[0]:.0f}% of the window, and our processes "
            f"spent {waits:.0f}% of a core in all waiting for a CPU ({cores} cores shared by {len(cpu)} processes)"
        )
    if waits >= 50:
        return (
            f"no process is saturated, but the CPUs are contended: our processes waited for a CPU {waits:.0f}% "
            f"of a core in all ({wanting[1]} running or runnable {wanting[0]:.0f}% of the window; "
            f"{cores} cores shared by {len(cpu)} processes), which adds to every hop's latency"
        )
    return (
        "no process is CPU-bound and the machine has CPU to spare: the figure is bound by latency "
        f"(one sale in flight per terminal: the hops' work in series, fsyncs included; "
        f"our processes waited for a CPU {waits:.0f}% of a core in all)"
    )


# -- profile digest ------------------------------------------------------------------------


def short_frame(f: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = f.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


IDLE_LEAVES = (
    "run (uvloop",
    "run_forever",
    "select (selectors",
    "_run_once",
    "poll (selectors",
)


def profile_digest(path: Path, top: int = 18) -> str:
    """Self and inclusive time per function from py-spy's raw (collapsed) output."""
    selfc: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [
            short_frame(f)
            for f in stack.split(";")
            if not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += n
        selfc[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "(no samples)"
    lines = [
        f"{total} samples at 200 Hz, idle included (a sample in uvloop's run is the loop waiting for input)",
        "self time:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in selfc.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top + 12)]
    return "\n".join(lines)


# -- output ----------------------------------------------------------------------------


def table(results: list[dict], markdown: bool) -> str:
    """One row per run. A CPU cell is "on a CPU / waiting for one", in per cent of the window."""
    parties = list(results[0]["cpu_parties_pct"]) if results else []
    head = [
        "terminals",
        "auth/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "approved",
        "declined",
        "client CPU",
    ]
    head += [f"{p} CPU" for p in parties] + ["machine CPU", "others' CPU", "steal"]

    def cell(cpu, wait=None):
        if cpu is None:
            return "-"
        return f"{cpu:.0f}%" + (f" / {wait:.0f}%" if known(wait) else "")

    rows = []
    for r in results:
        declined = sum(r["declined"].values())
        rows.append(
            [
                str(r["terminals"]),
                f"{r['auth_per_s']:.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['max_ms']:.1f}",
                str(r["approved"]),
                str(declined)
                + (
                    ""
                    if not declined
                    else " ("
                    + ", ".join(f"{k}: {v}" for k, v in sorted(r["declined"].items()))
                    + ")"
                ),
                cell(r["cpu_client_pct"], r["wait_client_pct"]),
            ]
            + [cell(r["cpu_parties_pct"][p], r["wait_parties_pct"][p]) for p in parties]
            + [
                cell(r["cpu_machine_pct"]),
                cell(r["cpu_others_pct"]),
                cell(r["cpu_steal_pct"]),
            ]
        )
    if markdown:
        out = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---:" for _ in head) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def machine_line() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio (no uvloop)"
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({model}), "
        f"Python {platform.python_version()}, {loop}"
    )


def source_version() -> str:
    """The commit of the posnet being measured, and whether src/ differs from it."""
    import posnet

    if os.environ.get(SNAPSHOT_ENV):
        commit_id, folder = os.environ[SNAPSHOT_ENV].split(" ", 1)
        return f"commit {commit_id[:7]} exactly (git archive in {folder}; posnet imported from {posnet.__file__})"

    src = Path(posnet.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # not stripped: a porcelain line starts with its status columns
    except (OSError, subprocess.CalledProcessError):
        return f"{src} (not a git checkout)"
    changed = [line[3:] for line in dirty.splitlines() if line.strip()]
    shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
    return f"commit {head}" + (
        f", src/posnet differs from it: {shown}" if changed else ""
    )


# -- main ----------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--terminals",
        default="1,4,16",
        help="comma-separated numbers of concurrent terminals (default 1,4,16)",
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="timed window per run (default 10)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of selling before the window, not counted (default 1)",
    )
    p.add_argument(
        "--amount",
        type=int,
        default=100,
        help="sale amount in fen (default 100, RMB 1.00)",
    )
    p.add_argument(
        "--cards",
        choices=("first", "spread"),
        default="first",
        help="first: every terminal uses the first card (one issuer); "
        "spread: terminals alternate bank-a's and bank-b's card (own network only)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each number of terminals this many times (default 1)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each run, wait up to S seconds for the machine to be under 15%% busy (a shared machine)",
    )
    p.add_argument(
        "--max-others",
        type=float,
        metavar="PCT",
        help="on a shared machine: discard and redo a run in which other load exceeded PCT%% of a core",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="runs at most per row with --max-others (default 3)",
    )
    p.add_argument(
        "--at",
        metavar="REV",
        help="measure src/posnet as committed at REV (a snapshot), not the working tree",
    )
    p.add_argument(
        "--config",
        help="run against this already running network instead of starting one",
    )
    p.add_argument(
        "--card", help="PAN to sell on with --config (default: the config's first card)"
    )
    p.add_argument(
        "--dir",
        help="where to put the networks (default: a new temporary folder, removed after)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (logs, traces, stores)",
    )
    p.add_argument(
        "--profile",
        metavar="PARTY",
        help="sample this party with py-spy during each window (acquirer, switch, issuer-bank-a …, or client)",
    )
    p.add_argument(
        "--no-uvloop", action="store_true", help="run the client on plain asyncio"
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table in Markdown"
    )
    p.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON to FILE"
    )
    return p.parse_args(argv)


def cards_for(
    net: cfg.Network, mode: str, pan: str | None
) -> list[tuple[Card, str | None]]:
    def one(c):
        return Card(c["pan"], str(c["expiry"])), (str(c["pin"]) if "pin" in c else None)

    if pan:
        c = net.card(pan)
        if c is None:
            raise SystemExit(f"auth_bench: no card {pan} in {net.path}")
        return [one(c)]
    if mode == "spread":
        return [one(i["cards"][0]) for i in net.issuers if i.get("cards")]
    return [one(net.card(None))]


def run_loop(coro):
    if not NO_UVLOOP:
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            pass
    return asyncio.run(coro)


NO_UVLOOP = False


def run_own_network(args, n: int, directory: Path) -> dict | None:
    """One run on a fresh network of parties; None if a party did not come up (its log is kept)."""
    if directory.exists():
        shutil.rmtree(directory)
    net, path = make_network(directory, n)
    if args.wait_quiet:
        print(f"  ({wait_quiet(args.wait_quiet)})", flush=True)
    try:
        procs = start_network(net, str(path), quiet=True)
    except RuntimeError as e:
        print(f"  {n} terminals: not run: {e}", flush=True)
        for log in sorted((directory / "data").glob("*/party.log")):
            for line in log.read_text(errors="replace").splitlines()[-5:]:
                print(f"    {log.parent.name}: {line}")
        return None
    try:
        # start_network starts the issuers, then the switch, then the acquirer
        order = [p for p in net.party_names() if p.startswith("issuer-")] + [
            "switch",
            "acquirer",
        ]
        started = dict(zip(order, procs))
        pids = {p: started[p].pid for p in net.party_names()}
        print(
            f"  {n} terminals: "
            + ", ".join(f"{p} pid {pid}" for p, pid in pids.items()),
            flush=True,
        )
        ids = [bench_terminal_id(i) for i in range(1, n + 1)]
        profile = (
            (args.profile, directory / f"profile-{args.profile}.txt")
            if args.profile
            else None
        )
        cards = cards_for(net, args.cards, None)
        r = run_loop(
            bench_run(
                net, ids, cards, args.seconds, args.warmup, args.amount, pids, profile
            )
        )
        dead = [
            f"{p} (exit {started[p].returncode})"
            for p in pids
            if started[p].poll() is not None
        ]
        if dead:
            print(
                f"  parties stopped during the run: {', '.join(dead)}; logs in {directory / 'data'}"
            )
    finally:
        stop_network(procs)
    report_run(r, profile)
    return r


def main(argv=None) -> int:
    global NO_UVLOOP
    args = parse_args(argv)
    remove_snapshot_at_exit()
    NO_UVLOOP = args.no_uvloop
    # SIGTERM ends the bench like Ctrl-C: the parties it started are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ns = [
        int(x)
        for x in args.terminals.split(",")
        if x.strip()
        for _ in range(args.repeat)
    ]
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("auth_bench: --profile needs py-spy (pip install py-spy)")
    print(f"machine: {machine_line()}")
    print(f"posnet: {source_version()}")
    shown_args = argv if argv is not None else sys.argv[1:]
    script = (
        os.path.relpath(sys.argv[0])
        if not os.path.relpath(sys.argv[0]).startswith("..")
        else sys.argv[0]
    )
    print(f"command: python {' '.join([script, *shown_args])}")
    results = []
    if args.config:
        net = cfg.load(args.config)
        configured = [t["terminal_id"] for t in net.acquirer.get("terminals", [])]
        if max(ns) > len(configured):
            raise SystemExit(
                f"auth_bench: {args.config} has {len(configured)} terminals; {max(ns)} needed"
            )
        ports = {p: net.endpoint(p).port for p in net.party_names()}
        found = listening_pids(ports)
        pids = {p: found[p] for p in ports if p in found}
        missing = [p for p in ports if p not in pids]
        if missing:
            print(
                f"(no CPU figures for {', '.join(missing)}: no process of ours listens on their ports)"
            )
        cards = cards_for(net, args.cards, args.card)
        print(
            f"network: {net.path} (already running); card {cards[0][0].pan[:6]}…; sale RMB {args.amount / 100:.2f}"
        )
        for n in ns:
            profile = None
            if args.profile:
                profile = (
                    args.profile,
                    Path(tempfile.gettempdir()) / f"auth_bench-{args.profile}-{n}.txt",
                )
            if args.wait_quiet:
                print(f"  ({wait_quiet(args.wait_quiet)})", flush=True)
            r = run_loop(
                bench_run(
                    net,
                    configured[:n],
                    cards,
                    args.seconds,
                    args.warmup,
                    args.amount,
                    pids,
                    profile,
                )
            )
            results.append(r)
            report_run(r, profile)
    else:
        root = (
            Path(args.dir)
            if args.dir
            else Path(tempfile.mkdtemp(prefix="posnet-bench-"))
        )
        print(
            f"networks in {root}; sale RMB {args.amount / 100:.2f}; cards: {args.cards}"
        )
        keep = args.keep or bool(args.dir)
        try:
            for i, n in enumerate(ns, 1):
                for attempt in range(1, args.attempts + 1):
                    r = run_own_network(
                        args, n, root / f"run{i}-terminals-{n}-attempt{attempt}"
                    )
                    if r is None:
                        keep = True
                        break
                    if (
                        args.max_others is None
                        or r["cpu_others_pct"] <= args.max_others
                    ):
                        results.append(r)
                        break
                    if attempt == args.attempts:
                        print(
                            f"  kept anyway: other load stayed above {args.max_others:.0f}% in {attempt} attempts"
                        )
                        results.append(r)
                    else:
                        print(
                            f"  discarded: other load {r['cpu_others_pct']:.0f}% > {args.max_others:.0f}%; again"
                        )
        finally:
            if keep:
                print(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        "CPU: time on a CPU / time runnable but waiting for one, in % of the timed window (100% = one core)"
    )
    print(table(results, args.markdown))
    for r in results:
        print(f"N={r['terminals']}: {verdict(r)}")
    if args.json:
        out = {
            "machine": machine_line(),
            "posnet": source_version(),
            "results": results,
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def report_run(r: dict, profile: tuple[str, Path] | None) -> None:
    d = sum(r["declined"].values())
    extra = ""
    if d:
        extra += f", declined {d} ({', '.join(f'{k}: {v}' for k, v in sorted(r['declined'].items()))})"
    if r["with_reversal"]:
        extra += f", {r['with_reversal']} after an automatic reversal"
    if r["connections_lost"]:
        extra += f", {r['connections_lost']} connections lost"
    print(
        f"  {r['terminals']:>3} terminals: {r['auth_per_s']:.0f} auth/s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms{extra}; {verdict(r)}",
        flush=True,
    )
    if profile is not None and profile[1].exists():
        print(
            f"\nprofile of {profile[0]} at {r['terminals']} terminals ({profile[1]}):"
        )
        print(profile_digest(profile[1]))
        print()


if __name__ == "__main__":
    sys.exit(main())
