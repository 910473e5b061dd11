
import pytest
from cli_helpers import balance, pos, running_network


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The demo network, each party its own process, on free loopback ports."""
    with running_network(tmp_path_factory.mktemp("net")) as (net, _):
        yield net


@pytest.fixture
def run_pos():
    return pos


@pytest.fixture
def issuer_balance():
    return balance
