import pathlib

import pytest

from posnet import config
from posnet.demo import demo_config_text

# 2026-11-24 10:00:00 China Standard Time
NOW_MS = 1_795_485_600_000


@pytest.fixture
def demo_config_path(tmp_path: pathlib.Path) -> pathlib.Path:
    p = tmp_path / "posnet.toml"
    p.write_text(demo_config_text(), encoding="utf-8")
    return p


@pytest.fixture
def demo_net(demo_config_path):
    return config.load(demo_config_path)


@pytest.fixture
def world(demo_net):
    """The demo network's cores in one process, no sockets, the clock at NOW_MS."""
    from posnet.sim.network import build_world

    return build_world(demo_net, NOW_MS)


@pytest.fixture
def card():
    from posnet.terminal.core import Card

    return Card("6222020000000001", "3012")
