"""Running the `posnet` command against a network, as a user would; shared by the end-to-end tests."""

import json
import os
import subprocess
import sys


def posnet(net, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "POSNET_CONFIG": str(net.path)}
    proc = subprocess.run([sys.executable, "-m", "posnet", *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def pos(net, *args: str) -> dict:
    """`posnet pos --json …`: the outcome of one terminal function."""
    proc = posnet(net, "pos", "--json", *args)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def balance(net, pan: str) -> int:
    """A card's available balance at its issuer, read from the issuer's store (fen)."""
    return json.loads(posnet(net, "balance", "--json", "--card", pan, check=True).stdout)[pan]


def wait_until(predicate, timeout_s: float = 20.0) -> bool:
    """Poll until ``predicate()`` holds (stores and forwards drain in their own time)."""
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
