"""Cases the simulator found, each as a story of its own (docs/simulation.md, "What it found")."""

from posnet.wire import decode_terminal, encode_terminal

POS = "pos-10000001"
PIN = "123456"
START = 1_000_000
ACQ_LINK = "acquirer:48020000"


def balance(world):
    return world.parties["issuer-bank-a"].core.balance_of_card("6222020000000001")


def on_link(world, party, link, change):
    """Let ``change(frame, n)`` decide the fate of the n-th frame on one link: a list of frames."""
    count = {"n": 0}

    def fault(p, to, frame):
        if (p, to) != (party, link):
            return [(0, frame)]
        count["n"] += 1
        return [(0, f) for f in change(frame, count["n"])]

    world.link_fault = fault


def test_a_duplicated_approval_does_not_reverse_a_good_sale(world, card):
    world.command(POS, "sign-on")
    on_link(world, "switch", ACQ_LINK, lambda frame, n: [frame, frame])
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    world.advance(120_000)
    assert sale.done.ok
    assert balance(world) == START - 3000, "the sale with a receipt stays held"


def test_a_sale_that_arrives_after_its_own_reversal_moves_no_money(world, card):
    world.command(POS, "sign-on")
    world.hold.add((POS, "acquirer"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    world.advance(30_000)  # the terminal gives up: reversal record 98
    late_sale = list(world._held)
    world._held.clear()
    world.hold.clear()
    assert world.command(POS, "inquiry", card=card, pin=PIN).done.ok  # the reversal goes first
    world._queue.extend(late_sale)  # now the sale itself arrives
    world.run()
    world.advance(60_000)
    assert balance(world) == START


def test_a_reversal_answered_a0_is_repeated_until_delivered(world, card):
    world.command(POS, "sign-on")
    world.cut.add(("issuer-bank-a", "switch"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3000)
    world.cut.clear()

    def spoil_first_reversal(frame, n):
        if frame[:4] == b"0400" and n <= 3:
            return [frame[:-1] + bytes([frame[-1] ^ 1])]  # its MAC no longer verifies: the issuer answers A0
        return [frame]

    on_link(world, "switch", "issuer:bank-a", spoil_first_reversal)
    world.advance(10_000)  # the switch times out and owes the issuer a reversal
    assert balance(world) == START - 3000, "the spoiled reversal released nothing"
    world.advance(120_000)  # repeats with backoff
    assert balance(world) == START
    assert world.parties["switch"].core.saf["bank-a"].items == {}


def test_a_repeated_sign_on_gets_the_same_keys(world, card):
    on_link(world, POS, "acquirer", lambda frame, n: [frame, frame] if n == 1 else [frame])
    assert world.command(POS, "sign-on").done.ok
    world.link_fault = None
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert sale.done.ok, sale.displays


def test_a_new_sale_never_overwrites_an_undelivered_reversal(world, card):
    world.command(POS, "sign-on")
    world.cut.add(("acquirer", f"conn:{POS}"))  # approvals are lost
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=1000)
    world.advance(30_000)
    world.cut = {(POS, "acquirer")}  # now nothing gets out: the reversal fails three times
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=2000)
    for _ in range(4):
        world.advance(30_000)
    terminal = world.parties[POS].core
    assert len(terminal.reversals) == 2, "both sales are owed a reversal"
    assert balance(world) == START - 1000
    world.cut.clear()
    assert world.command(POS, "inquiry", card=card, pin=PIN).done.ok
    assert terminal.reversals == {} and balance(world) == START


def test_a_flipped_response_code_is_caught_by_the_mac_and_reversed(world, card):
    world.command(POS, "sign-on")

    def approval_to_decline(frame, n):
        msg = decode_terminal(frame)
        if msg.mti == "0210" and msg.get(39) == "00" and msg.has(4):
            mac = bytes.fromhex(msg["64"])
            msg.fields["39"] = "05"
            return [encode_terminal(msg, mac=lambda data: mac)]  # the old MAC over new bytes
        return [frame]

    on_link(world, "acquirer", f"conn:{POS}", approval_to_decline)
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=5000)
    assert sale.done.response_code == "A0" and sale.slips == []
    world.link_fault = None
    world.command(POS, "sign-on")
    assert world.command(POS, "inquiry", card=card, pin=PIN).done.ok
    assert balance(world) == START


def test_a_mac_error_on_one_copy_does_not_hide_an_approval_of_the_other(world, card):
    world.command(POS, "sign-on")

    def spoiled_copy_first(frame, n):
        if frame[:4] == b"0200" and n <= 2:
            return [frame[:-1] + bytes([frame[-1] ^ 1]), frame]
        return [frame]

    on_link(world, "acquirer", "switch", spoiled_copy_first)
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=4000)
    world.advance(120_000)
    assert sale.done.response_code == "96" and sale.slips == []
    assert balance(world) == START, "the copy that got through was reversed"


def test_a_reversed_void_puts_the_hold_back_even_when_the_money_was_spent_since(world):
    from posnet.terminal.core import Card

    card = Card("6222020000000027", "3012")  # a balance of 100.00
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin="654321", amount_fen=8_000)
    world.cut.add(("acquirer", f"conn:{POS}"))  # the void is approved, its answer lost
    world.command(POS, "void", voucher_no=int(sale.done.result["voucher_no"]))
    world.advance(30_000)
    world.cut.clear()
    issuer = world.parties["issuer-bank-a"].core
    world.command("pos-10000002", "sign-on")
    other = world.command("pos-10000002", "sale", card=card, pin="654321", amount_fen=9_000)
    assert other.done.ok, "the released money is spent at another terminal"
    assert world.command(POS, "inquiry", card=card, pin="654321").done  # the void's reversal goes first
    account = issuer.ledger.account(issuer.config.cards[card.pan].account_id)
    assert account.debits_pending == 8_000 + 9_000, "both sales stand and are held"
    issuer.ledger.check_invariants()
