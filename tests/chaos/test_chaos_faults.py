"""Each fault of the proxy, per direction, over real loopback TCP: a client, the proxy, a frame server."""

from __future__ import annotations

import asyncio
import time

import pytest
from chaos_helpers import QUIET_S, Client, FrameServer, payloads, rig, run

from posnet.runtime.chaos import ChaosProxy, Faults
from posnet.wire import frame

BOTH = pytest.mark.parametrize("direction", ["up", "down"])


def test_a_healed_proxy_carries_every_frame_both_ways_unchanged():
    async def story():
        async with rig() as (server, proxy):
            client = await Client.connect(proxy.address)
            sent = payloads(20)
            client.send(*sent)
            assert await client.recv_n(20) == sent
            assert server.frames == sent
            stats = proxy.stats
            assert stats["up"]["passed"] == stats["down"]["passed"] == 20
            assert stats["connections"]["open"] == 1
            client.close()

    run(story())


@BOTH
def test_drop_next_drops_exactly_the_next_n_frames_then_carries_the_rest(direction):
    async def story():
        async with rig(**{f"{direction}_drop_next": 2}) as (server, proxy):
            client = await Client.connect(proxy.address)
            sent = payloads(5)
            client.send(*sent)
            assert await client.recv_n(3) == sent[2:]
            await client.nothing()
            # Dropped on the way up: the server never saw them. On the way down: it did, and answered.
            assert server.frames == (sent[2:] if direction == "up" else sent)
            assert proxy.stats[direction]["dropped"] == 2
            assert proxy.faults(direction).drop_next == 0
            client.send(b"after")
            assert await client.recv() == b"after"

    run(story())


def test_drop_at_probability_one_drops_every_frame_and_zero_none():
    async def story():
        async with rig(up_drop=1.0) as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(*payloads(10))
            await client.nothing()
            assert server.frames == [] and proxy.stats["up"]["dropped"] == 10
            proxy.set_faults("up", drop=0.0)
            client.send(b"now")
            assert await client.recv() == b"now"

    run(story())


@BOTH
def test_black_hole_silences_a_direction_keeps_the_connection_open_until_healed(direction):
    async def story():
        async with rig(**{f"{direction}_black_hole": True}) as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(b"into the hole 1", b"into the hole 2")
            await client.nothing()
            assert len(server.frames) == (0 if direction == "up" else 2)
            assert proxy.stats[direction]["swallowed"] == 2
            assert proxy.stats["connections"]["open"] == 1
            proxy.heal()
            client.send(b"healed")
            assert await client.recv() == b"healed"  # what fell in the hole stays lost

    run(story())


@BOTH
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_reset_closes_the_clients_connection_and_the_servers_and_the_proxy_lives_on(direction, loop):
    async def story():
        async with rig(**{f"{direction}_reset_next": 1}) as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(b"the last words")
            assert await client.closed()
            await asyncio.wait_for(server.lost.wait(), 2)
            assert server.frames == ([] if direction == "up" else [b"the last words"])
            assert proxy.stats[direction]["resets"] == 1
            again = await Client.connect(proxy.address)
            again.send(b"a new connection")
            assert await again.recv() == b"a new connection"
            assert proxy.stats["connections"] == {"accepted": 2, "refused": 0, "target_unreachable": 0, "open": 1}

    run(story(), loop=loop)


@BOTH
def test_corrupt_flips_payload_bits_and_keeps_the_framing(direction):
    async def story():
        async with rig(**{f"{direction}_corrupt_next": 1}) as (server, proxy):
            client = await Client.connect(proxy.address)
            sent = payloads(3, size=64)
            client.send(*sent)
            got = await client.recv_n(3)  # a FrameReader still frames them: the length prefix is intact
            assert got[1:] == sent[1:]
            assert len(got[0]) == len(sent[0]) and got[0] != sent[0]
            flipped = sum(bin(a ^ b).count("1") for a, b in zip(got[0], sent[0]))
            assert 1 <= flipped <= 3
            assert proxy.stats[direction]["corrupted"] == 1

    run(story())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_split_frames_leave_in_pieces_and_still_arrive_whole_at_a_frame_reader(loop):
    async def story():
        async with rig(up_split=1.0, down_split=1.0) as (server, proxy):
            client = await Client.connect(proxy.address)
            sent = payloads(10, size=200)
            for p in sent:  # one at a time, so pieces cannot hide in one read with the next frame
                client.send(p)
                assert await client.recv() == p
            assert server.frames == sent
            assert proxy.stats["up"]["split"] == proxy.stats["down"]["split"] == 10
            # Pieces arrive as separate reads on both sides.
            assert server.reads > 10
            assert client.reads > 10

    run(story(), loop=loop)


@BOTH
def test_delay_adds_at_least_delay_ms_and_jitter_keeps_the_order(direction):
    async def story():
        async with rig(**{f"{direction}_delay_ms": 150, f"{direction}_jitter_ms": 100}) as (server, proxy):
            client = await Client.connect(proxy.address)
            started = time.monotonic()
            client.send(b"slow")
            assert await client.recv() == b"slow"
            assert time.monotonic() - started >= 0.150
            sent = payloads(30)
            client.send(*sent)
            assert await client.recv_n(30) == sent  # jittered, never reordered
            assert proxy.stats[direction]["delayed"] == 31

    run(story())


def test_duplicate_delivers_each_frame_twice():
    async def story():
        async with rig(up_duplicate=1.0) as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(b"once", b"twice")
            assert await client.recv_n(4) == [b"once", b"once", b"twice", b"twice"]
            assert proxy.stats["up"]["duplicated"] == 2 and proxy.stats["up"]["passed"] == 2

    run(story())


def _one_run(seed: int) -> tuple[list[bytes], list]:
    async def story():
        faults = dict(drop=0.3, corrupt=0.3, duplicate=0.2, split=0.3, delay_ms=1, jitter_ms=3)
        async with rig(echo=False, seed=seed, name="replay", **{f"up_{k}": v for k, v in faults.items()}) as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(*payloads(60))
            client.writer.write_eof()  # the proxy passes the end on once every frame has left
            await asyncio.wait_for(server.got_eof.wait(), 5)
            client.close()
            return list(server.frames), proxy.decisions

    return run(story())


def test_the_same_seed_replays_the_same_fault_decisions_and_another_seed_does_not():
    frames_a, decisions_a = _one_run(seed=7)
    frames_b, decisions_b = _one_run(seed=7)
    frames_c, decisions_c = _one_run(seed=8)
    assert decisions_a == decisions_b and frames_a == frames_b
    kinds = " ".join(d[3] for d in decisions_a)
    assert all(k in kinds for k in ("drop", "corrupt", "split", "duplicate", "pass")), kinds
    assert decisions_c != decisions_a


def test_garbage_that_does_not_frame_goes_through_raw_and_the_proxy_lives_on():
    async def story():
        async with rig(echo=False) as (server, proxy):
            client = await Client.connect(proxy.address)
            garbage = b"\xff\xffGET / HTTP/1.0\r\n\r\n" + bytes(range(256))
            client.send(b"a good frame")
            client.writer.write(garbage)
            await server.wait_frames(1)
            for _ in range(200):
                if server.raw.endswith(garbage):
                    break
                await asyncio.sleep(0.01)
            assert server.raw == frame(b"a good frame") + garbage  # every byte, as sent
            assert proxy.stats["up"]["framing_errors"] == 1
            assert proxy.stats["up"]["raw_bytes"] == len(garbage)
            client.writer.write(b"\x00\x00more")  # the raw direction stays raw
            client.close()
            # A zero length is as bad as a huge one; and a new connection frames again.
            zero = await Client.connect(proxy.address)
            zero.writer.write(b"\x00\x00\x00\x05hello")
            good = await Client.connect(proxy.address)
            good.send(b"framed again")
            await server.wait_frames(2)
            assert server.frames[-1] == b"framed again"
            assert proxy.stats["up"]["framing_errors"] == 2
            zero.close()
            good.close()

    run(story())


def test_an_unreachable_target_closes_the_client_and_the_proxy_lives_on():
    async def story():
        parked = await FrameServer().start()
        port = parked.address[1]
        await parked.stop()  # nothing listens there now
        proxy = ChaosProxy(("127.0.0.1", 0), ("127.0.0.1", port), name="nowhere")
        async with proxy:
            client = await Client.connect(proxy.address)
            assert await client.closed()
            assert proxy.stats["connections"]["target_unreachable"] == 1
            client.close()

    run(story())


def test_faults_changed_while_frames_flow_apply_to_the_frames_read_after():
    async def story():
        async with rig() as (server, proxy):
            client = await Client.connect(proxy.address)
            client.send(b"1")
            assert await client.recv() == b"1"
            proxy.up = Faults(black_hole=True)  # assigning a whole Faults works as well as set_faults
            client.send(b"2")
            await client.nothing(QUIET_S)
            proxy.set_faults("both", black_hole=False, delay_ms=20)
            client.send(b"3")
            assert await client.recv() == b"3"
            assert proxy.up.delay_ms == proxy.down.delay_ms == 20

    run(story())
