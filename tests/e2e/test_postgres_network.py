"""The same network with every party's records and books in PostgreSQL."""

import json
import os
import subprocess
import sys

import pytest

from posnet import config
from posnet.cli import start_network, stop_network
from posnet.demo.story import write_config

pytestmark = pytest.mark.e2e


def test_sale_and_void_with_the_parties_on_postgresql(tmp_path, pg_schema):
    path = write_config(tmp_path)
    # Each party gets its own schema; the test's schema name keeps parallel runs apart.
    text = path.read_text(encoding="utf-8").replace(
        'host = "127.0.0.1"', f'host = "127.0.0.1"\ndatabase = "postgresql://127.0.0.1:5432/test"\nschema_prefix = "{pg_schema}"'
    )
    path.write_text(text, encoding="utf-8")
    net = config.load(path)
    env = {**os.environ, "POSNET_CONFIG": str(path)}

    def posnet(*args):
        p = subprocess.run([sys.executable, "-m", "posnet", *args], capture_output=True, text=True, env=env, timeout=60)
        return p

    procs = start_network(net, str(path), quiet=True)
    try:
        assert posnet("pos", "sign-on").returncode == 0
        sale = json.loads(posnet("pos", "--json", "sale", "--amount", "10.00").stdout)
        assert sale["ok"], sale
        held = json.loads(posnet("balance", "--json", "--card", "6222020000000001").stdout)
        assert held["6222020000000001"] == 1_000_000 - 1000
        assert posnet("pos", "void", "--voucher", sale["result"]["voucher_no"]).returncode == 0
    finally:
        stop_network(procs)
    # Restarted from PostgreSQL, the issuer still knows the released hold.
    released = json.loads(posnet("balance", "--json", "--card", "6222020000000001").stdout)
    assert released["6222020000000001"] == 1_000_000
