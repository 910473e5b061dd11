"""The seed's case over TCP: a hold that never clears is released at expiry, and the cardholder is whole.

The network runs with `[network] dev_clock = true`; `posnet clock advance` moves every party's time forward
and answers once what fell due has happened.
"""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import balance, pos, posnet, posnet_lines, running_network, wait_until

from posnet import config
from posnet.demo.story import write_config
from posnet.runtime.clock import wall_ms
from posnet.runtime.pos import wait_for_port

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"
ISSUER = "issuer-bank-a"
HOUR_MS = 3_600_000
DOC = Path(__file__).resolve().parents[2] / "docs" / "clock.md"


def with_dev_clock(text: str) -> str:
    return text.replace("[network]\n", "[network]\ndev_clock = true\n", 1)


@pytest.fixture(scope="module")
def dev_network(tmp_path_factory):
    with running_network(tmp_path_factory.mktemp("net"), edit=with_dev_clock) as (net, procs):
        assert pos(net, "sign-on")["ok"]
        yield net, procs


def sale_lost_on_the_wire(net, amount: str) -> None:
    """The terminal's power goes as its sale leaves: the issuer approves and holds, the terminal never hears."""
    cut = posnet(net, "pos", "--json", "power-cut", "--at", "sent", "sale", "--amount", amount)
    assert cut.returncode == -signal.SIGKILL, cut.stderr


def issuer_trace(net) -> list[dict]:
    path = net.data_dir / ISSUER / "trace.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_hold_that_never_clears_is_released_at_expiry_and_the_cardholder_is_whole(dev_network):
    net, _ = dev_network
    before = balance(net, PAN)
    sale_lost_on_the_wire(net, "66.00")
    assert wait_until(lambda: balance(net, PAN) == before - 6600), "the issuer approved and holds 66.00"

    early = posnet(net, "clock", "advance", "47h", check=True)
    assert re.search(rf"{ISSUER} +told", early.stdout) and "hold-expiry" not in early.stdout, early.stdout
    assert balance(net, PAN) == before - 6600, "47 hours on, the hold still stands"

    due = posnet(net, "clock", "advance", "2h", check=True)
    assert re.search(rf"{ISSUER} +told; \d+ timers? fell due: .*hold-expiry", due.stdout), due.stdout
    assert balance(net, PAN) == before, "the advance answers once the hold is released: the cardholder is whole"
    released = [t for t in issuer_trace(net) if t["event"] == "hold expired and released"]
    assert [(t["pan"], t["amount"]) for t in released] == [("622202******0001", 6600)]
    assert released[0]["ms"] >= wall_ms() - 5_000 + 49 * HOUR_MS, "released at the network's time"

    boot = pos(net, "power-on")
    assert boot["ok"] and boot["result"] == {"reversal": "done"}, "the terminal's reversal is acknowledged"
    assert balance(net, PAN) == before, "the reversal finds nothing left to release: the money came back once"


def test_a_stopped_issuer_takes_the_advanced_time_when_it_starts_again(dev_network):
    net, procs = dev_network
    before = balance(net, PAN)
    sale_lost_on_the_wire(net, "12.00")
    assert wait_until(lambda: balance(net, PAN) == before - 1200)
    shown = json.loads(posnet(net, "clock", "show", "--json", check=True).stdout)

    i = next(n for n, p in enumerate(procs) if ISSUER in p.args)
    procs[i].send_signal(signal.SIGTERM)
    assert procs[i].wait(timeout=10) == 0
    advanced = posnet(net, "clock", "advance", "2d1h", check=True)
    assert re.search(rf"{ISSUER} +not running: takes the new time when it starts", advanced.stdout), advanced.stdout
    assert balance(net, PAN) == before - 1200, "nobody released the hold while the issuer was down"

    log = open(net.data_dir / ISSUER / "party.log", "ab")
    procs[i] = subprocess.Popen([sys.executable, "-m", "posnet", "run", ISSUER, "--config", str(net.path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ep = net.endpoint(ISSUER)
    assert wait_for_port(ep.host, ep.port), f"{ISSUER} did not come back"
    assert wait_until(lambda: balance(net, PAN) == before, timeout_s=10), "released at start: its time is 49 h on"
    now = json.loads(posnet(net, "clock", "show", "--json", check=True).stdout)
    assert now["offset_ms"] == shown["offset_ms"] + 49 * HOUR_MS
    last = [t for t in issuer_trace(net) if t["event"] == "hold expired and released"][-1]
    assert last["amount"] == 1200
    assert last["ms"] >= shown["now_ms"] + 49 * HOUR_MS, "the restarted issuer keeps the advanced time"


def test_without_dev_clock_the_clock_will_not_move(tmp_path):
    path = write_config(tmp_path)
    env_net = config.load(path)  # dev_clock not set: real time
    refused = posnet(env_net, "clock", "advance", "48h")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"posnet: the network clock moves only in dev mode: put `dev_clock = true` under [network] in {path}\n"
    )
    assert not (tmp_path / "data" / "clock.json").exists()
    shown = posnet(env_net, "clock", "show", check=True).stdout
    assert shown.endswith("(real time; dev_clock is off)\n"), shown
    bad = posnet(env_net, "clock", "advance", "two days")
    assert bad.returncode == 2
    assert "'two days' is not a duration: write it like 90s, 30m, 48h, 2d or 1d12h" in bad.stderr


def test_the_clock_page_runs_as_written(tmp_path):
    with running_network(tmp_path, edit=with_dev_clock) as (net, _):
        checked = 0
        for command, comment in posnet_lines(DOC.read_text(encoding="utf-8")):
            if command.startswith(("posnet init", "posnet up")):
                continue  # the network the fixture started
            argv = command.split()[1:]
            if comment.startswith("RMB "):
                shown = comment.split(":")[0]
                assert wait_until(lambda: shown in posnet(net, *argv, check=True).stdout, timeout_s=10), (command, shown)
                checked += 1
                continue
            p = posnet(net, *argv)
            want = -signal.SIGKILL if comment.startswith("power cut") else 0
            assert p.returncode == want, (command, p.returncode, p.stdout[-1500:], p.stderr[-1500:])
        assert checked == 5
