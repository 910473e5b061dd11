"""The README's walkthrough, run as written: every `$ posnet …` line of its console blocks.

`posnet up` blocks, so the test starts the same network itself; the ports are
moved to free ones and the refund's date is today's, since the README shows
the day it was written.
"""

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posnet import config, timefmt
from posnet.cli import start_network, stop_network
from posnet.demo.story import free_ports

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def console_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```console\n(.*?)```", text, re.S)]


def test_readme_walkthrough_runs_as_written(tmp_path):
    blocks = console_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has its walkthrough"
    env = {**os.environ}
    cwd = tmp_path
    procs = []
    today = timefmt.mmdd(int(time.time() * 1000))
    try:
        for block in blocks:
            lines = block
            for i, line in enumerate(lines):
                if not line.startswith("$ "):
                    continue
                argv = shlex.split(line[2:])
                expected = []
                for out in lines[i + 1 :]:
                    if out.startswith("$ "):
                        break
                    expected.append(out)
                if argv[0] == "cd":
                    cwd = cwd / argv[1]
                    continue
                assert argv[0] == "posnet", line
                if argv[1] == "init":
                    subprocess.run([sys.executable, "-m", "posnet", *argv[1:]], cwd=cwd, check=True, env=env)
                    cfg_path = cwd / argv[2] / "posnet.toml"
                    cfg_path.write_text(_spread_ports(cfg_path.read_text(encoding="utf-8")), encoding="utf-8")
                    continue
                if argv[1] == "up":
                    net = config.load(cwd / "posnet.toml")
                    procs = start_network(net, str(cwd / "posnet.toml"), quiet=True)
                    continue
                if "--date" in argv:
                    argv[argv.index("--date") + 1] = today
                proc = subprocess.run([sys.executable, "-m", "posnet", *argv[1:]], cwd=cwd, capture_output=True,
                                      text=True, env=env, timeout=60)
                assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
                for want in expected:
                    if want.startswith("[screen]") or re.match(r"^\d{6}\*+\d{4}  RMB", want):
                        assert want in proc.stdout, f"{line}: expected {want!r} in\n{proc.stdout}"
    finally:
        stop_network(procs)


def _spread_ports(text: str) -> str:
    ports = iter(free_ports(4))
    return re.sub(r"port = \d+", lambda m: f"port = {next(ports)}", text)
