"""A proxy on every link of a configured network: the plan, its checks, and `posnet chaos run`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from chaos_helpers import Client, FrameServer, close_clients, run
from test_chaos_control import http_async, wait_listening

from posnet import config
from posnet.demo.story import free_ports, write_config
from posnet.runtime import chaos

DOCS = Path(__file__).parents[2] / "docs" / "chaos.md"


def network(tmp_path: Path, section: str) -> config.Network:
    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "\n" + section, encoding="utf-8")
    return config.load(path)


def test_the_plan_puts_a_proxy_on_every_link_on_consecutive_ports(tmp_path):
    net = network(tmp_path, "[chaos]\nenabled = true\nbase_port = 29583\nseed = 3\n")
    specs = chaos.plan_proxies(net)
    ep = net.endpoint
    assert [(s.name, s.listen, s.target, s.client, s.server) for s in specs] == [
        ("terminal-acquirer", ("127.0.0.1", 29583), (ep("acquirer").host, ep("acquirer").port), "terminal", "acquirer"),
        ("acquirer-switch", ("127.0.0.1", 29584), (ep("switch").host, ep("switch").port), "acquirer", "switch"),
        ("switch-bank-a", ("127.0.0.1", 29585), (ep("issuer-bank-a").host, ep("issuer-bank-a").port), "switch", "issuer-bank-a"),
        ("switch-bank-b", ("127.0.0.1", 29586), (ep("issuer-bank-b").host, ep("issuer-bank-b").port), "switch", "issuer-bank-b"),
    ]
    assert chaos.proxied_endpoints(net) == {
        "terminal-acquirer": ("127.0.0.1", 29583),
        "acquirer-switch": ("127.0.0.1", 29584),
        "switch-bank-a": ("127.0.0.1", 29585),
        "switch-bank-b": ("127.0.0.1", 29586),
    }
    assert chaos.upstream_endpoint(net, "terminal", "acquirer") == ("127.0.0.1", 29583)
    assert chaos.upstream_endpoint(net, "acquirer", "switch") == ("127.0.0.1", 29584)
    assert chaos.upstream_endpoint(net, "switch", "issuer-bank-b") == ("127.0.0.1", 29586)
    assert chaos.control_address(net) == ("127.0.0.1", 29587)  # the port after the last proxy
    assert all(not s.up.active and not s.down.active for s in specs)


def test_without_chaos_enabled_there_is_no_plan_and_clients_connect_straight(tmp_path):
    for section in ("", "[chaos]\nenabled = false\nbase_port = 29583\n"):
        net = network(tmp_path, section)
        assert chaos.plan_proxies(net) == [] and chaos.proxied_endpoints(net) == {}
        assert chaos.control_address(net) is None
        sw = net.endpoint("switch")
        assert chaos.upstream_endpoint(net, "acquirer", "switch") == (sw.host, sw.port)


@pytest.mark.parametrize(
    "section, message",
    [
        ("enabled = true\n", "missing 'base_port'"),
        ("enabled = true\nbase_port = 29583\nseeed = 1\n", "unknown key 'seeed'; the keys are enabled, base_port"),
        ("enabled = 'yes'\nbase_port = 29583\n", "'enabled' is true or false"),
        ("enabled = true\nbase_port = '29583'\n", "'base_port' must be a whole number"),
        ("enabled = true\nbase_port = 65534\n", "base_port 65534 leaves no room for 4 ports"),
        ("enabled = true\nbase_port = 29583\ncontrol_port = 29585\n", "control port 29585 is taken"),
        ("enabled = true\nbase_port = 29583\n[chaos.links.acquirer-bank-a]\nup = { drop = 0.1 }\n",
         "no link 'acquirer-bank-a'; the links are terminal-acquirer, acquirer-switch, switch-bank-a, switch-bank-b"),
        ("enabled = true\nbase_port = 29583\n[chaos.links.acquirer-switch]\nup = { drop = 2 }\n",
         "[chaos.links.acquirer-switch]: drop: 2 is not a probability"),
        ("enabled = true\nbase_port = 29583\n[chaos.links.acquirer-switch]\nsideways = { drop = 0.1 }\n",
         "[chaos.links.acquirer-switch] holds 'up' and 'down' tables"),
    ],
)
def test_a_chaos_section_that_cannot_work_is_refused_with_its_reason(tmp_path, section, message):
    with pytest.raises(config.ConfigError) as e:
        network(tmp_path, "[chaos]\n" + section)  # loading the file checks the plan
    assert message in str(e.value)


def test_a_proxy_on_a_partys_port_is_refused(tmp_path):
    net = network(tmp_path, "")
    switch_port = net.endpoint("switch").port
    net.raw["chaos"] = {"enabled": True, "base_port": switch_port - 1}
    with pytest.raises(config.ConfigError, match=f"link acquirer-switch would listen on {switch_port}, the port of switch"):
        chaos.plan_proxies(net)


def test_the_chaos_section_of_the_docs_plans_as_it_says(tmp_path):
    block = re.search(r"```toml\n(\[chaos\].*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert block, "docs/chaos.md shows a [chaos] section"
    net = network(tmp_path, block.group(1))
    specs = {s.name: s for s in chaos.plan_proxies(net)}
    assert specs["terminal-acquirer"].listen[1] == 19583 and specs["switch-bank-b"].listen[1] == 19586
    assert chaos.control_address(net) == ("127.0.0.1", 19600)
    assert specs["acquirer-switch"].up == chaos.Faults(delay_ms=50, jitter_ms=20)
    assert specs["acquirer-switch"].down == chaos.Faults(drop=0.01)


def test_register_cli_adds_chaos_to_the_posnet_parser():
    parser = argparse.ArgumentParser(prog="posnet")
    sub = parser.add_subparsers(dest="command", required=True)
    chaos.register_cli(sub)
    args = parser.parse_args(["chaos", "set", "--control", "127.0.0.1:19600", "acq", "--direction", "up", "drop_next=1", "delay_ms=200"])
    assert (args.fn, args.control, args.name, args.direction, args.changes) == (
        chaos.cmd_set, ("127.0.0.1", 19600), "acq", "up", ["drop_next=1", "delay_ms=200"])
    args = parser.parse_args(["chaos", "proxy", "--listen", ":19583", "--target", "127.0.0.1:18583", "--up", "drop=0.1,delay_ms=50"])
    assert (args.fn, args.listen, args.target, args.up, args.seed) == (
        chaos.cmd_proxy, ("127.0.0.1", 19583), ("127.0.0.1", 18583), ["drop=0.1,delay_ms=50"], 0)
    assert parser.parse_args(["chaos", "heal"]).fn is chaos.cmd_heal
    assert parser.parse_args(["chaos", "show", "acq"]).name == "acq"
    assert parser.parse_args(["chaos", "run", "--config", "x.toml"]).fn is chaos.cmd_run
    with pytest.raises(SystemExit):
        parser.parse_args(["chaos", "proxy", "--listen", "here", "--target", "127.0.0.1:1"])


def test_chaos_run_refuses_a_network_without_chaos(tmp_path, capsys):
    path = write_config(tmp_path)
    assert chaos.main(["run", "--config", str(path)]) == 2
    assert "[chaos] is not enabled" in capsys.readouterr().err


def test_chaos_run_puts_every_planned_proxy_and_the_control_endpoint_up_until_terminated(tmp_path):
    base, control_port = free_ports(2)
    if base <= control_port < base + 4:  # the links take base .. base+3
        control_port = base + 4
    net = network(tmp_path, f"[chaos]\nenabled = true\nbase_port = {base}\ncontrol_port = {control_port}\n"
                            "[chaos.links.terminal-acquirer]\ndown = { duplicate = 1.0 }\n")
    control = chaos.control_address(net)
    acquirer = net.endpoint("acquirer")

    async def story():
        stand_in = await FrameServer().start(acquirer.host, acquirer.port)  # an "acquirer" that echoes
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posnet.runtime.chaos", "run", "--config", str(net.path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            await wait_listening(control)
            for spec in chaos.plan_proxies(net):
                await wait_listening(spec.listen)
            _, shown = await http_async("http://{}:{}/proxies".format(*control))
            assert [p["name"] for p in shown] == ["terminal-acquirer", "acquirer-switch", "switch-bank-a", "switch-bank-b"]
            assert shown[0]["target"] == f"{acquirer.host}:{acquirer.port}"
            client = await Client.connect(chaos.upstream_endpoint(net, "terminal", "acquirer"))
            client.send(b"0200 sale")
            assert await client.recv_n(2) == [b"0200 sale", b"0200 sale"]  # the link's starting faults hold
            close_clients()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
            await stand_in.stop()
        assert proc.returncode == 0, err.decode()
        finals = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        assert [f["proxy"] for f in finals][:1] == ["terminal-acquirer"]
        assert finals[0]["stats"]["down"]["duplicated"] == 1

    run(story())
