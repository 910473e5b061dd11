"""Idle host links are tested with echo messages; an unanswered echo closes the link."""

from posnet.effects import Close, LinkUp, Send
from posnet.wire import decode_host


def test_an_idle_link_to_the_switch_gets_an_echo_that_the_switch_answers(world):
    acquirer = world.parties["acquirer"].core
    seen = []
    original = world._apply

    def spy(party, effects):
        seen.extend((party, e) for e in effects if isinstance(e, Send))
        original(party, effects)

    world._apply = spy
    world.advance(60_000)
    echoes = [decode_host(e.frame) for p, e in seen if p == "acquirer" and e.to == "switch"]
    assert echoes and echoes[0].mti == "0800" and echoes[0]["70"] == "301"
    answers = [decode_host(e.frame) for p, e in seen if p == "switch" and e.to.startswith("acquirer:")]
    assert answers and answers[0].mti == "0810" and answers[0]["39"] == "00"
    assert acquirer.switch_link.up


def test_an_unanswered_echo_closes_the_link(world):
    world.cut.add(("switch", "issuer:bank-a"))  # the switch's echo never reaches bank-a
    closes = []
    original = world._apply

    def spy(party, effects):
        closes.extend((party, e.to) for e in effects if isinstance(e, Close))
        original(party, effects)

    world._apply = spy
    world.advance(60_000 + 10_000)
    assert ("switch", "issuer:bank-a") in closes


def test_owed_reversals_go_out_as_soon_as_the_link_is_back(world, card):
    world.command("pos-10000001", "sign-on")
    world.cut.add(("issuer-bank-a", "switch"))
    world.command("pos-10000001", "sale", card=card, pin="123456", amount_fen=100)
    world.cut.add(("switch", "issuer:bank-a"))
    world.advance(10_000)  # the switch times out and owes bank-a a reversal it cannot deliver
    switch = world.parties["switch"].core
    assert len(switch.saf["bank-a"].items) == 1
    world.cut.clear()
    world._queue.append(("switch", LinkUp("issuer:bank-a")))
    world.run()
    world.advance(0)  # the timers the link's return set for now fire, long before the next retry
    assert switch.saf["bank-a"].items == {}
    assert world.parties["issuer-bank-a"].core.balance_of_card("6222020000000001") == 1_000_000
