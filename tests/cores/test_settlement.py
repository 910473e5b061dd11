"""Settlement (结算) of a terminal's batch with the acquirer, in one process."""

from posnet.acquirer.settlement import FEE_INCOME_ACCOUNT, MERCHANT_ACCOUNT_BASE

POS = "pos-10000001"
PIN = "123456"


def merchant_balance(world):
    a = world.parties["acquirer"].core.ledger.account(MERCHANT_ACCOUNT_BASE)
    return a.credits_posted - a.debits_posted


def day_of_trade(world, card):
    world.command(POS, "sign-on")
    s1 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000).done.result
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=5_000)
    world.command(POS, "void", voucher_no=int(s1["voucher_no"]))
    s3 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=20_000).done.result
    world.command(POS, "refund", card=card, reference_no=s3["reference_no"], date_mmdd="1124", amount_fen=2_000)


def test_a_balanced_batch_credits_the_merchant_net_of_its_fee_and_opens_the_next_batch(world, card):
    day_of_trade(world, card)
    terminal = world.parties[POS].core
    totals = terminal.batch_totals()
    assert (totals.debit_count, totals.debit_amount, totals.credit_count, totals.credit_amount) == (3, 35_000, 2, 12_000)
    out = world.command(POS, "settle")
    assert out.done.ok and out.done.result["balanced"] is True and out.done.result["batch_no"] == "000001"
    slip = out.slips[0].text()
    assert "对账平 BALANCED" in slip and "RMB 350.00" in slip and "RMB 120.00" in slip
    assert terminal.journal == {} and terminal.counters["batch_no"] == "000002"
    # Standing sales 5,000 + 20,000 = 25,000; refund 2,000; fee 0.60 % of 25,000 = 150.
    assert merchant_balance(world) == 25_000 - 2_000 - 150
    acquirer = world.parties["acquirer"].core
    assert acquirer.ledger.account(FEE_INCOME_ACCOUNT).credits_posted == 150
    acquirer.ledger.check_invariants()
    presented = world.tables("acquirer")["presentments"]
    assert sorted(p["kind"] for p in presented.values()) == ["refund", "sale", "sale"]
    assert acquirer.terminals["10000001"]["batch_no"] == "000002"
    nxt = world.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert nxt.done.ok and nxt.done.result["batch_no"] == "000002"


def test_an_unbalanced_batch_is_uploaded_and_settled_on_the_acquirers_record(world, card):
    day_of_trade(world, card)
    terminal = world.parties[POS].core
    # The terminal's journal holds a sale the acquirer never approved.
    ghost = dict(next(iter(terminal.journal.values())), voucher_no="000099", kind="sale", amount_fen=777, voided=False)
    terminal.journal["000099"] = ghost
    out = world.command(POS, "settle")
    assert out.done.ok and out.done.result["balanced"] is False and out.done.result["uploaded"] == 6
    assert "对账不平 UNBALANCED" in out.slips[0].text()
    rec = world.parties["acquirer"].core.settlements["10000001:000001"]
    assert rec["differences"] == {"terminal_only": ["22:000099"], "acquirer_only": []}
    assert merchant_balance(world) == 25_000 - 2_000 - 150, "paid on the acquirer's record, not the terminal's"


def test_a_pending_reversal_goes_before_the_settlement(world, card):
    world.command(POS, "sign-on")
    world.cut.add(("acquirer", f"conn:{POS}"))
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=4_000)
    world.advance(30_000)
    world.cut.clear()
    out = world.command(POS, "settle")
    assert out.displays[0] == "冲正中 REVERSING" and out.done.ok
    assert merchant_balance(world) == 0, "the reversed sale is not paid"


def test_a_settlement_cut_short_is_sent_again_and_answered_as_the_first_time(world, card):
    day_of_trade(world, card)
    world.cut.add(("acquirer", f"conn:{POS}"))  # the acquirer settles; its answer is lost
    world.command(POS, "settle")
    world.advance(30_000)
    terminal = world.parties[POS].core
    assert terminal.settling is not None and terminal.journal, "the batch is still the terminal's"
    refused = world.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert not refused.done.ok and "SETTLEMENT NOT FINISHED" in refused.displays[-1]
    world.cut.clear()
    again = world.command(POS, "settle")
    assert again.done.ok and again.done.result["balanced"]
    assert merchant_balance(world) == 25_000 - 2_000 - 150, "credited once"
