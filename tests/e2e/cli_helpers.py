"""Running the `posnet` command against a network, as a user would; shared by the end-to-end tests."""

import contextlib
import json
import os
import re
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


def posnet_lines(text: str) -> list[tuple[str, str]]:
    """(command, comment) of every `posnet` line in the sh blocks of a page of the docs."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            if command.strip().startswith("posnet "):
                out.append((command.strip(), comment.strip()))
    return out


def wait_until(predicate, timeout_s: float = 20.0) -> bool:
    """Poll until ``predicate()`` holds (stores and forwards drain in their own time)."""
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@contextlib.contextmanager
def running_network(directory, edit=None):
    """The demo network in ``directory`` (its file passed through ``edit``), each party its own process on free
    loopback ports. Yields the network and the list of its processes (a test that restarts a party puts the new
    process in its place); at the end every one must stop cleanly."""
    from posnet import config
    from posnet.cli import start_network, stop_network
    from posnet.demo.story import write_config

    path = write_config(directory)
    if edit is not None:
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    net = config.load(path)
    procs = start_network(net, str(path), quiet=True)
    try:
        yield net, procs
    finally:
        stop_network(procs)
    for p in procs:
        assert p.returncode == 0, f"a party exited with {p.returncode}; see {net.data_dir}/*/party.log"
