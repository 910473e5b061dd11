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
    from posnet.sim.scenario import build as build_world

    return build_world(demo_net, NOW_MS)


@pytest.fixture
def world_of():
    """A world of the cores of a network a test has changed, the clock at NOW_MS."""
    from posnet.sim.scenario import build as build_world

    return lambda net: build_world(net, NOW_MS)


@pytest.fixture
def card():
    from posnet.terminal.core import Card

    return Card("6222020000000001", "3012")


PG_URL = "postgresql://127.0.0.1:5432/test"


@pytest.fixture
def pg_schema():
    """A fresh PostgreSQL schema name on 127.0.0.1:5432/test, dropped after the test.

    Skips when PostgreSQL cannot be reached, unless POSNET_REQUIRE_POSTGRES=1 (CI), then fails.
    """
    import os
    import uuid

    try:
        import psycopg

        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001 - any failure to connect means "no PostgreSQL here"
        if os.environ.get("POSNET_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but unreachable at {PG_URL}: {e}")
        pytest.skip(f"no PostgreSQL at {PG_URL}: {e}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    # The schema and any named after it (a network's parties: <schema>_acquirer, …).
    rows = conn.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s", (schema + "%",))
    for (name,) in rows.fetchall():
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()
