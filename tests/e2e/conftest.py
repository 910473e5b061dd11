import json
import os
import subprocess
import sys

import pytest

from posnet import config
from posnet.cli import start_network, stop_network
from posnet.demo.story import write_config


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The demo network, each party its own process, on free loopback ports."""
    directory = tmp_path_factory.mktemp("net")
    path = write_config(directory)
    net = config.load(path)
    procs = start_network(net, str(path), quiet=True)
    yield net
    stop_network(procs)
    for p in procs:
        assert p.returncode == 0, f"a party exited with {p.returncode}; see {net.data_dir}/*/party.log"


def posnet(net, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "POSNET_CONFIG": str(net.path)}
    proc = subprocess.run([sys.executable, "-m", "posnet", *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def pos(net, *args: str) -> dict:
    proc = posnet(net, "pos", "--json", *args)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def balance(net, pan: str) -> int:
    proc = posnet(net, "balance", "--json", "--card", pan, check=True)
    return json.loads(proc.stdout)[pan]


@pytest.fixture
def run_pos():
    return pos


@pytest.fixture
def issuer_balance():
    return balance
