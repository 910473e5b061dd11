"""The control endpoint and the command line: faults changed while frames flow, errors that say why."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from chaos_helpers import QUIET_S, Client, FrameServer, close_clients, rig, run

from posnet.demo.story import free_ports
from posnet.runtime.chaos import ChaosControl, ChaosProxy, main

DOCS = Path(__file__).parents[2] / "docs" / "chaos.md"


def http(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def http_async(*args, **kwargs):
    return await asyncio.to_thread(http, *args, **kwargs)


def test_faults_changed_at_the_control_endpoint_take_hold_while_frames_flow():
    async def story():
        async with rig() as (server, proxy):
            control = ChaosControl([proxy])
            await control.start()
            client = await Client.connect(proxy.address)
            echoes: list[bytes] = []
            running = True

            async def traffic():
                n = 0
                while running:
                    n += 1
                    client.send(b"tick %d" % n)
                    await asyncio.sleep(0.01)

            async def listen():
                while True:
                    echoes.append(await client.recv(timeout_s=10))

            tasks = [asyncio.create_task(traffic()), asyncio.create_task(listen())]
            await asyncio.sleep(0.1)
            assert echoes, "frames flow before any fault"

            status, answer = await http_async(f"{control.url}/proxies/link/faults", "POST", {"direction": "up", "black_hole": True})
            assert status == 200 and answer["faults"]["up"]["black_hole"] is True
            await asyncio.sleep(0.05)  # frames in flight before the change come back
            silent_from = len(echoes)
            await asyncio.sleep(QUIET_S)
            assert len(echoes) == silent_from, "nothing comes back through the black hole"

            status, answer = await http_async(f"{control.url}/proxies/link/heal", "POST", {})
            assert status == 200 and answer["faults"]["up"]["black_hole"] is False
            await asyncio.sleep(0.15)
            assert len(echoes) > silent_from, "frames flow again once healed"

            status, [shown] = await http_async(f"{control.url}/proxies")
            assert shown["name"] == "link" and shown["stats"]["up"]["swallowed"] > 0
            assert shown["stats"]["connections"]["open"] == 1

            running = False
            for t in tasks:
                t.cancel()
            await control.stop()

    run(story())


def test_the_control_endpoint_refuses_what_it_cannot_do_and_changes_nothing():
    proxy = ChaosProxy(("127.0.0.1", 0), ("127.0.0.1", 9), name="acq")
    control = ChaosControl([proxy])

    def post(path, body):
        return control.handle("POST", path, json.dumps(body).encode())

    assert post("/proxies/acq/faults", {"direction": "up", "drop": 0.5, "delay_ms": -1}) == (
        400, {"error": "delay_ms: -1 is outside 0..600000"})
    assert post("/proxies/acq/faults", {"direction": "up", "lag": 5})[1]["error"].startswith("unknown fault 'lag'")
    assert post("/proxies/acq/faults", {"drop": 0.5}) == (400, {"error": "direction None: give \"up\", \"down\" or \"both\""})
    assert post("/proxies/acq/faults", ["drop"])[0] == 400
    assert control.handle("POST", "/proxies/acq/faults", b"{drop")[1]["error"].startswith("the body is not JSON")
    assert proxy.up.drop == 0.0 and proxy.up.delay_ms == 0, "a refused change changes nothing"
    assert control.handle("GET", "/proxies/bank-z") == (404, {"error": "no proxy 'bank-z'; the proxies are acq"})
    assert control.handle("GET", "/heal") == (405, {"error": "GET /heal: use POST"})
    assert control.handle("DELETE", "/proxies/acq")[0] == 405
    assert control.handle("GET", "/nowhere")[0] == 404

    status, answer = post("/proxies/acq/faults", {"direction": "both", "drop_next": 2, "split": 0.5})
    assert status == 200 and answer["faults"]["down"]["drop_next"] == 2 and answer["faults"]["up"]["split"] == 0.5
    assert control.handle("GET", "/proxies/acq/faults")[1]["up"]["drop_next"] == 2
    assert control.handle("POST", "/heal")[1][0]["faults"]["up"]["split"] == 0.0
    assert "GET /proxies" in control.handle("GET", "/")[1]["endpoints"]


def test_garbage_at_the_control_port_gets_an_error_and_the_endpoint_lives_on():
    async def story():
        control = ChaosControl([ChaosProxy(("127.0.0.1", 0), ("127.0.0.1", 9), name="acq")])
        await control.start()
        reader, writer = await asyncio.open_connection(*control.address)
        writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 400 ") and b"not an HTTP request line" in answer
        writer.close()
        status, answer = await http_async(f"{control.url}/proxies/acq")
        assert status == 200 and answer["name"] == "acq"
        await control.stop()

    run(story())


def test_the_command_line_sets_shows_and_heals_through_the_control_endpoint(capsys):
    async def story():
        async with rig(name="acq") as (server, proxy):
            control = ChaosControl([proxy])
            await control.start()
            at = "{}:{}".format(*control.address)

            async def cli(*argv):
                return await asyncio.to_thread(main, list(argv))

            assert await cli("set", "--control", at, "acq", "--direction", "down", "drop_next=1", "delay_ms=20") == 0
            assert json.loads(capsys.readouterr().out)["faults"]["down"]["drop_next"] == 1
            client = await Client.connect(proxy.address)
            client.send(b"lost reply", b"kept reply")
            assert await client.recv() == b"kept reply"

            assert await cli("show", "--control", at) == 0
            [shown] = json.loads(capsys.readouterr().out)
            assert shown["stats"]["down"]["dropped"] == 1 and shown["faults"]["down"]["delay_ms"] == 20

            assert await cli("heal", "--control", at, "acq") == 0
            assert json.loads(capsys.readouterr().out)["faults"]["down"]["delay_ms"] == 0

            assert await cli("set", "--control", at, "acq", "drop=1.5") == 2
            assert "drop: 1.5 is not a probability" in capsys.readouterr().err
            assert await cli("set", "--control", at, "bank-z", "drop=0.5") == 1
            assert "no proxy 'bank-z'" in capsys.readouterr().err
            assert await cli("heal", "--control", at) == 0
            capsys.readouterr()
            await control.stop()
            assert await cli("show", "--control", at) == 1
            assert "no control endpoint at" in capsys.readouterr().err

    run(story())


async def wait_listening(address: tuple[str, int], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        try:
            _, w = await asyncio.open_connection(*address)
            w.close()
            return
        except OSError:
            if loop.time() > end:
                raise AssertionError(f"nothing listens on {address}")
            await asyncio.sleep(0.05)


def test_the_proxy_command_runs_in_the_foreground_until_interrupted():
    async def story():
        server = await FrameServer().start()
        listen, control = free_ports(2)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posnet.runtime.chaos", "proxy",
            "--listen", f"127.0.0.1:{listen}", "--target", "{}:{}".format(*server.address),
            "--name", "acq", "--control", f"127.0.0.1:{control}", "--seed", "7", "--up", "drop_next=1",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            await wait_listening(("127.0.0.1", control))
            client = await Client.connect(("127.0.0.1", listen))
            client.send(b"dropped", b"carried")
            assert await client.recv() == b"carried"
            status, answer = await http_async(f"http://127.0.0.1:{control}/proxies/acq")
            assert answer["seed"] == 7 and answer["stats"]["up"]["dropped"] == 1
            close_clients()
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
            await server.stop()
        assert proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert any("chaos acq" in line and f"127.0.0.1:{listen}" in line for line in lines), lines
        final = json.loads(lines[-1])  # the counters, printed as it stops
        assert final["proxy"] == "acq"
        assert (final["stats"]["up"]["dropped"], final["stats"]["up"]["passed"]) == (1, 1)

    run(story())


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_curl_examples_of_the_docs_do_what_they_say():
    examples = re.findall(r"^curl .*$", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(examples) >= 5

    async def story():
        proxies = [ChaosProxy(("127.0.0.1", 0), ("127.0.0.1", 9), name=n) for n in ("acquirer-switch", "switch-bank-a")]
        control = ChaosControl(proxies)
        await control.start()
        port = control.address[1]
        for example in examples:
            command = example.replace("127.0.0.1:19600", f"127.0.0.1:{port}")
            proc = await asyncio.create_subprocess_shell(command, stdout=subprocess.PIPE, env={**os.environ})
            out, _ = await proc.communicate()
            assert proc.returncode == 0, command
            assert "error" not in json.loads(out), (command, out)
            if "drop_next" in command:
                assert proxies[0].down.drop_next == 1
            if "black_hole" in command:
                assert proxies[1].up.black_hole is True
        assert not any(p.up.active or p.down.active for p in proxies), "the last example heals them all"
        await control.stop()

    run(story())
