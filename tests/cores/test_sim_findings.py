"""Cases the simulator found, each as a story of its own (docs/simulation.md, "What it found")."""

import dataclasses

from posnet.acquirer.settlement import MERCHANT_ACCOUNT_BASE
from posnet.sim.run import simulate
from posnet.wire import decode_terminal, encode_terminal
from posnet.wire.fields import parse_f60

POS = "pos-10000001"
PIN = "123456"
START = 1_000_000
ACQ_LINK = "acquirer:48020000"


def balance(world):
    return world.parties["issuer-bank-a"].core.balance_of_card("6222020000000001")


def merchant_balance(world):
    a = world.parties["acquirer"].core.ledger.account(MERCHANT_ACCOUNT_BASE)
    return a.credits_posted - a.debits_posted


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


def sign_on_reply_says_batch(batch):
    """A sign-on reply spoilt on its way: F60.2 reads ``batch`` (an 0810 carries no MAC, and the key
    check values cover F62 only)."""

    def change(frame, n):
        msg = decode_terminal(frame)
        if msg.mti != "0810":
            return [frame]
        msg.fields["60"] = dataclasses.replace(parse_f60(msg["60"]), batch_no=batch).encode()
        return [encode_terminal(msg)]

    return change


def test_a_terminal_given_a_wrong_batch_number_at_sign_on_settles_it_and_the_merchant_is_paid(world, card):
    # Seed 291: a bit flipped in the 0810 turned batch 000001 into 000003. The acquirer approved the
    # sales of batch 3 and refused to settle it (not its open batch); at a later sign-on the terminal
    # renumbered them batch 1, settled that, and the acquirer paid batch 1: nothing.
    on_link(world, "acquirer", f"conn:{POS}", sign_on_reply_says_batch("000003"))
    assert world.command(POS, "sign-on").done.result["batch_no"] == "000003"
    world.link_fault = None
    kept = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000)
    voided = world.command(POS, "sale", card=card, pin=PIN, amount_fen=5_000)
    assert kept.done.ok and kept.done.result["batch_no"] == "000003"
    assert world.command(POS, "void", voucher_no=int(voided.done.result["voucher_no"])).done.ok, "voided in its batch"
    out = world.command(POS, "settle")
    assert out.done.ok and out.done.result["batch_no"] == "000003" and out.done.result["balanced"]
    assert merchant_balance(world) == 10_000 - 60, "the standing sale is paid, net of the fee"
    assert world.parties["acquirer"].core.terminals["10000001"]["batch_no"] == "000004"
    assert world.command(POS, "sign-on").done.result["batch_no"] == "000004"


def test_a_sign_on_in_the_middle_of_a_batch_keeps_the_number_printed_on_its_receipts(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000)
    on_link(world, "acquirer", f"conn:{POS}", sign_on_reply_says_batch("000003"))
    world.command(POS, "sign-on")
    world.link_fault = None
    assert world.parties[POS].core.counters["batch_no"] == sale.done.result["batch_no"] == "000001"
    out = world.command(POS, "settle")
    assert out.done.ok and out.done.result["batch_no"] == "000001" and out.done.result["balanced"]
    assert merchant_balance(world) == 10_000 - 60


def test_a_settlement_pays_once_what_the_terminal_sold_under_another_batch_number(world, card):
    world.command(POS, "sign-on")
    first = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000).done.result
    terminal = world.parties[POS].core
    terminal.counters["batch_no"] = "000005"  # a terminal that renumbers its open batch (another make)
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=5_000)
    out = world.command(POS, "settle")
    assert out.done.ok and out.done.result["batch_no"] == "000005" and out.done.result["balanced"]
    acquirer = world.parties["acquirer"].core
    assert acquirer.settlements["10000001:000005"]["from_other_batches"] == [first["reference_no"]]
    assert merchant_balance(world) == 15_000 - 90, "both receipts are paid"
    assert len(world.tables("acquirer")["presentments"]) == 2
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=1_000)
    assert world.command(POS, "settle").done.result["batch_no"] == "000006"
    assert merchant_balance(world) == 15_000 - 90 + 1_000 - 6, "and none of them twice"
    assert len(world.tables("acquirer")["presentments"]) == 3


def test_a_sale_in_a_batch_already_settled_is_sent_to_sign_on_again(world, card):
    world.command(POS, "sign-on")
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000)
    world.command(POS, "settle")
    on_link(world, "acquirer", f"conn:{POS}", sign_on_reply_says_batch("000001"))  # the batch just settled
    world.command(POS, "sign-on")
    world.link_fault = None
    refused = world.command(POS, "sale", card=card, pin=PIN, amount_fen=3_000)
    assert refused.done.response_code == "77" and refused.slips == []
    assert balance(world) == START - 10_000, "nothing held for it"
    again = world.command(POS, "sale", card=card, pin=PIN, amount_fen=3_000)  # signs on first
    assert again.done.ok and again.done.result["batch_no"] == "000002"
    assert world.command(POS, "settle").done.result["batch_no"] == "000002"
    assert merchant_balance(world) == 10_000 - 60 + 3_000 - 18


def test_seed_291_pays_every_receipted_sale():
    r = simulate(291, 200, "heavy")
    assert r.ok, r.violations


def test_after_a_batch_renumbered_backwards_the_next_batch_is_one_never_settled(world, card):
    world.command(POS, "sign-on")
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000)
    world.command(POS, "settle")  # batch 1 settled
    on_link(world, "acquirer", f"conn:{POS}", sign_on_reply_says_batch("000000"))
    world.command(POS, "sign-on")
    world.link_fault = None
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3_000)
    assert world.command(POS, "settle").done.result["batch_no"] == "000000"
    assert world.command(POS, "sign-on").done.result["batch_no"] == "000002", "not batch 1 again"
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=1_000).done.ok
    assert merchant_balance(world) == 10_000 - 60 + 3_000 - 18
