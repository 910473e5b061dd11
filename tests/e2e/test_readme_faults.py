"""The README's "When things break" example, run as written (ports moved to free ones)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from posnet import config
from posnet.cli import start_network, stop_network
from posnet.demo.story import free_port_block, write_config

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## When things break") : text.index("## What is inside")]


def test_the_faq_case_by_hand_as_the_readme_tells_it(tmp_path):
    part = section()
    toml = re.search(r"```toml\n(.*?)```", part, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in re.search(r"```sh\n(.*?)```", part, re.S).group(1).splitlines()]
    base = free_port_block(6)
    toml = toml.replace("19583", str(base)).replace("19600", str(base + 5))
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8").replace(  # the terminal gives up after 3 s here, not 30
        'tmk = "0123456789ABCDEFFEDCBA9876543210"', 'tmk = "0123456789ABCDEFFEDCBA9876543210"\nresponse_timeout_ms = 3000', 1
    )
    path.write_text(text + "\n" + toml, encoding="utf-8")
    net = config.load(path)
    env = {**os.environ, "POSNET_CONFIG": str(path)}
    procs = start_network(net, str(path), quiet=True)
    outputs = []
    try:
        subprocess.run([sys.executable, "-m", "posnet", "pos", "sign-on"], env=env, check=True, capture_output=True)
        for cmd in commands:
            argv = shlex.split(cmd.replace("19600", str(base + 5)))
            assert argv[0] == "posnet"
            p = subprocess.run([sys.executable, "-m", "posnet", *argv[1:]], env=env, capture_output=True, text=True, timeout=90)
            outputs.append(p.stdout)
    finally:
        stop_network(procs)
    _set, sale, held, inquiry, back = outputs
    assert "交易超时" in sale and "签购单" not in sale
    assert "622202******0001  RMB 9912.00" in held
    assert "自动冲正成功" in inquiry
    assert "622202******0001  RMB 10000.00" in back


def test_the_readme_replay_example_tells_a_story():
    part = section()
    line = next(ln for ln in part.splitlines() if ln.startswith("posnet sim --replay"))
    argv = shlex.split(line.split("#")[0])
    p = subprocess.run([sys.executable, "-m", "posnet", *argv[1:]], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "rules hold" in p.stdout
