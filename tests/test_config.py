"""The config file: the documented example loads, and mistakes get clear errors."""

import re
from pathlib import Path

import pytest

from posnet import config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_documented_example_loads(tmp_path):
    text = re.search(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    path = tmp_path / "posnet.toml"
    path.write_text(text, encoding="utf-8")
    net = config.load(path)
    assert net.terminal(None)["terminal_id"] == "10000001"
    assert net.endpoint("issuer-bank-a").port == 18590


@pytest.mark.parametrize(
    "change, message",
    [
        (('terminal_id = "10000001"', 'terminal_id = "1000001"'), "a terminal id is 8 characters"),
        (('tmk = "0123456789ABCDEFFEDCBA9876543210"', 'tmk = "0123"'), "'tmk' must be a double-length key"),
        (('pan = "6222020000000001"', 'pan = "9999990000000001"'), "outside the issuer's BINs"),
        (('expiry = "3012"', 'expiry = "12/30"'), "expiry is YYMM"),
        (('status = "lost"', 'status = "gone"'), "status is one of"),
    ],
)
def test_mistakes_are_named(demo_config_path, change, message):
    text = demo_config_path.read_text(encoding="utf-8").replace(*change, 1)
    demo_config_path.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(demo_config_path)


@pytest.mark.parametrize("value, fen", [("12.34", 1234), (12, 1200), ("0.05", 5), ("10000.00", 1_000_000)])
def test_yuan_to_fen_is_exact(value, fen):
    assert config.yuan_to_fen(value) == fen


def test_three_decimals_are_refused():
    with pytest.raises(config.ConfigError):
        config.yuan_to_fen("1.234")
