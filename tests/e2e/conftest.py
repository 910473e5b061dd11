
import pytest
from cli_helpers import balance, pos

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


@pytest.fixture
def run_pos():
    return pos


@pytest.fixture
def issuer_balance():
    return balance
