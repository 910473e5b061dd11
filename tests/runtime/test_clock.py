"""The network's clock: durations, the offset in the data folder, and a node's timers when the clock moves."""

import asyncio
import json
import threading

import pytest

from posnet import config
from posnet.config import ConfigError
from posnet.effects import Put, SetTimer, TimerFired
from posnet.runtime import clock, control
from posnet.runtime.clock import NetworkClock, format_duration, parse_duration_s
from posnet.runtime.node import PartyNode
from posnet.runtime.store import PartyStore

HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("30m", 1_800), ("48h", 172_800), ("49h", 176_400), ("2d", 172_800), ("1d12h", 129_600),
     ("1d2h3m4s", 93_784), (" 48H ", 172_800)],
)
def test_durations_as_an_operator_writes_them(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "'' is not a duration: write it like 90s, 30m, 48h, 2d or 1d12h"),
        ("48", "'48' is not a duration"),
        ("48x", "'48x' is not a duration"),
        ("1h1d", "'1h1d' is not a duration"),
        ("-1h", "'-1h' is not a duration"),
        ("0s", "'0s': the clock only moves forward; give a duration of 1s or more"),
        ("3661d", "'3661d': one advance moves the clock at most 3660d"),
    ],
)
def test_a_bad_duration_is_named_with_what_to_write(text, message):
    with pytest.raises(ConfigError) as e:
        parse_duration_s(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("seconds, text", [(176_400, "2d1h"), (90, "1m30s"), (129_600, "1d12h"), (0, "0s")])
def test_durations_are_shown_in_the_same_words(seconds, text):
    assert format_duration(seconds) == text
    if seconds:
        assert parse_duration_s(text) == seconds


def test_the_clock_only_moves_forward():
    c = NetworkClock(5 * HOUR_MS)
    assert not c.move_to(HOUR_MS) and c.offset_ms == 5 * HOUR_MS
    assert c.move_to(49 * HOUR_MS) and c.offset_ms == 49 * HOUR_MS
    assert c.now_ms() - clock.wall_ms() in range(49 * HOUR_MS - 1_000, 49 * HOUR_MS + 1)


def dev_net(demo_config_path, on: bool = True):
    text = demo_config_path.read_text(encoding="utf-8")
    demo_config_path.write_text(text.replace("[network]\n", f"[network]\ndev_clock = {'true' if on else 'false'}\n", 1),
                                encoding="utf-8")
    return config.load(demo_config_path)


def test_advances_add_up_in_the_data_folder_and_every_reader_sees_them(demo_config_path):
    net = dev_net(demo_config_path)
    assert NetworkClock.of(net).offset_ms == 0, "no file yet: real time"
    assert clock.advance(net, 48 * 3600) == 48 * HOUR_MS
    assert clock.advance(net, 3600) == 49 * HOUR_MS
    assert json.loads((net.data_dir / "clock.json").read_text()) == {"offset_ms": 49 * HOUR_MS}
    assert NetworkClock.of(config.load(demo_config_path)).offset_ms == 49 * HOUR_MS


def test_advances_at_the_same_moment_all_count(demo_config_path):
    net = dev_net(demo_config_path)
    workers = [threading.Thread(target=clock.advance, args=(net, 60)) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert clock.read_offset_ms(net) == 8 * 60_000


def test_without_dev_mode_the_clock_is_real_time_and_will_not_move(demo_config_path):
    net = dev_net(demo_config_path, on=False)
    (net.data_dir).mkdir(parents=True)
    (net.data_dir / "clock.json").write_text('{"offset_ms": 176400000}')  # left from a dev session
    assert NetworkClock.of(net).offset_ms == 0
    with pytest.raises(ConfigError) as e:
        clock.advance(net, 3600)
    assert "the network clock moves only in dev mode: put `dev_clock = true` under [network]" in str(e.value)
    assert clock.read_offset_ms(net) == 176_400_000, "the file is left alone"


def test_a_damaged_clock_file_is_named(demo_config_path):
    net = dev_net(demo_config_path)
    net.data_dir.mkdir(parents=True)
    (net.data_dir / "clock.json").write_text('{"offset_ms": -5}')
    with pytest.raises(ConfigError, match="clock.json: offset_ms must be a whole number of milliseconds, 0 or more"):
        NetworkClock.of(net)
    (net.data_dir / "clock.json").write_text("{not json")
    with pytest.raises(ConfigError, match="clock.json: not a clock file .*; delete it to go back to real time"):
        NetworkClock.of(net)


def test_dev_clock_is_true_or_false(demo_config_path):
    text = demo_config_path.read_text(encoding="utf-8")
    demo_config_path.write_text(text.replace("[network]\n", '[network]\ndev_clock = "yes"\n', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[network\] dev_clock is true or false"):
        config.load(demo_config_path)


# -- a node's timers when the clock moves ----------------------------------------------


class TimerCore:
    """A core that only keeps time: each timer that fires is recorded with the time the core was handed;
    ``then`` names a timer to set when one fires (key -> (next key, delay ms))."""

    def __init__(self, then=None):
        self.then = then or {}

    def handle(self, event, now_ms):
        if not isinstance(event, TimerFired):
            return []
        effects = [Put("fired", event.key, {"now_ms": now_ms})]
        if event.key in self.then:
            key, delay_ms = self.then[event.key]
            effects.append(SetTimer(key, now_ms + delay_ms))
        return effects


def node_with_timers(tmp_path, timers_h, then=None):
    node = PartyNode("issuer-test", TimerCore(then), PartyStore(tmp_path / "party.sqlite"), listen=None)
    node.loop = asyncio.get_running_loop()
    t0 = node.clock.now_ms()
    node._execute([SetTimer(key, t0 + hours * HOUR_MS) for key, hours in timers_h.items()])
    return node, t0


def test_an_advance_fires_the_timers_now_due_earliest_first_and_rearms_the_rest(tmp_path):
    async def story():
        node, t0 = node_with_timers(tmp_path, {"late": 50, "hold-b": 2, "hold-a": 1, "cut-off": 100})
        fired = node.advance_clock(49 * HOUR_MS)
        assert fired == ["hold-a", "hold-b"]
        records = node.store.load()["fired"]
        assert set(records) == {"hold-a", "hold-b"}, "committed before the advance returns"
        assert records["hold-a"]["now_ms"] >= t0 + 49 * HOUR_MS, "the core is handed the advanced time"
        loop = asyncio.get_running_loop()
        late_at, late = node._timers["late"]
        assert late_at == t0 + 50 * HOUR_MS, "a timer keeps its absolute time"
        assert late.when() - loop.time() == pytest.approx(3_600, abs=2), "re-armed: one hour left, not fifty"
        assert node._timers["cut-off"][1].when() - loop.time() == pytest.approx(51 * 3_600, abs=2)
        assert node.advance_clock(HOUR_MS) == [], "a stale, earlier offset moves nothing back"
        assert node.clock.offset_ms == 49 * HOUR_MS
        await node.stop()

    asyncio.run(story())


def test_a_timer_set_by_one_that_fell_due_fires_in_the_same_advance_when_it_too_is_due(tmp_path):
    async def story():
        # The issuer's expiry does this: one hold released, the next hold's expiry armed.
        node, _ = node_with_timers(tmp_path, {"expiry": 1}, then={"expiry": ("expiry-next", 0)})
        assert node.advance_clock(2 * HOUR_MS) == ["expiry", "expiry-next"]
        assert set(node.store.load()["fired"]) == {"expiry", "expiry-next"}
        await node.stop()

    asyncio.run(story())


def test_the_control_socket_moves_a_running_node_and_answers_once_it_is_done(tmp_path):
    async def story():
        node, _ = node_with_timers(tmp_path, {"hold-expiry": 48})
        server = await control.serve(node, tmp_path)
        try:
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, control.send, tmp_path, control.CLOCK_ADVANCE,
                                               {"offset_ms": 49 * HOUR_MS})
            assert reply == {"ok": True, "offset_ms": 49 * HOUR_MS, "fired": ["hold-expiry"]}
            assert "hold-expiry" in node.store.load()["fired"]
            bad = await loop.run_in_executor(None, control.send, tmp_path, control.CLOCK_ADVANCE, {"offset_ms": "49h"})
            assert bad == {"ok": False, "error": "clock-advance: offset_ms is a whole number of milliseconds, 0 or more"}
        finally:
            server.close()
            await node.stop()

    asyncio.run(story())
