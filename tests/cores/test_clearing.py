"""Clearing in one process: presentment, the switch's cut-off and net positions, the issuers' posting."""

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posnet import clearing_files, config
from posnet.acquirer.settlement import MERCHANT_ACCOUNT_BASE
from posnet.clearing_files import CLEARING_FIELDS, PRESENTMENT_FIELDS, ClearingRates, FeeRate, to_csv
from posnet.issuer.accounts import INTERCHANGE_INCOME_ACCOUNT, SUSPENSE_ACCOUNT
from posnet.ledger import chart

POS = "pos-10000001"
PIN = "123456"
PAN = "6222020000000001"
HOUR_MS = 3_600_000
# 2026-11-24 10:00 CST; the cut-off is at 23:00 and the issuers reconcile at midnight.
PAST_RECONCILIATION_MS = 15 * HOUR_MS


def available(world, pan=PAN):
    return world.parties["issuer-bank-a"].core.balance_of_card(pan)


def report_rows(world, name):
    return list(csv.DictReader(io.StringIO(world.boxes["reports"][name])))


def test_a_day_of_trade_is_cleared_every_hold_posted_and_the_positions_sum_to_zero(world, card):
    start = available(world)
    world.command(POS, "sign-on")
    s1 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000).done.result
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=5_000)
    world.command(POS, "void", voucher_no=int(s1["voucher_no"]))
    s3 = world.command(POS, "sale", card=card, pin=PIN, amount_fen=200_000).done.result
    world.command(POS, "refund", card=card, reference_no=s3["reference_no"], date_mmdd="1124", amount_fen=2_000)
    world.cut.add(("acquirer", f"conn:{POS}"))  # one sale's approval never reaches the terminal
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=7_700)
    world.advance(60_000)
    world.cut.clear()
    assert world.command(POS, "settle").done.ok  # the owed reversal goes first, then the batch balances
    assert available(world) == start - 5_000 - 200_000 + 2_000, "held: the two standing sales, less the refund"

    world.advance(PAST_RECONCILIATION_MS)

    issuer = world.parties["issuer-bank-a"].core
    sales = {a["rrn"]: a for a in issuer.auths.values() if a["kind"] == "sale"}
    assert sorted(a["status"] for a in sales.values()) == ["posted", "posted", "reversed", "voided"]
    assert available(world) == start - 5_000 - 200_000 + 2_000, "posting takes what the holds reserved, no more"
    assert issuer.ledger.account(issuer.config.cards[PAN].account_id).debits_pending == 0

    # The switch: interchange 0.35% (capped at 13.00) and the scheme's 0.0325% a side (capped at 3.25).
    rows = {r["member"]: r for r in report_rows(world, "settlement_00010000_20261124.csv")}
    assert sum(int(r["net_position_fen"]) for r in rows.values()) == 0
    interchange = 18 + 700  # 5,000 and 200,000 fen
    fees = 2 + 65
    assert rows["48020000"]["net_position_fen"] == str(205_000 - 2_000 - interchange - fees)
    assert rows["01020000"]["net_position_fen"] == str(-205_000 + 2_000 + interchange - fees)
    assert rows["00010000"]["net_position_fen"] == str(2 * fees)
    switch = world.parties["switch"].core
    switch.ledger.check_invariants()
    positions = [a for a in switch.ledger.accounts() if a.code == chart.SWITCH_MEMBER_POSITION]
    assert positions and all(a.credits_posted == a.debits_posted for a in positions), "every position settled to zero"

    # The issuer: its reconciliation of the day, and its interchange earned net of the scheme's fee.
    recon = report_rows(world, "reconciliation_bank-a_20261124.csv")
    summary = {r["detail"].split(":")[0]: r for r in recon if r["section"] == "summary"}
    assert summary["matched"]["detail"] == "matched: 2" and summary["matched"]["amount_fen"] == "205000"
    assert summary["refunds_matched"]["detail"] == "refunds_matched: 1"
    lost = next(rrn for rrn, a in sales.items() if a["status"] == "reversed")  # the sale whose approval was lost
    assert sorted((r["lifecycle"], r["detail"]) for r in recon if r["section"] == "released") == sorted(
        [(s1["reference_no"], "voided"), (lost, "reversed")])
    assert not [r for r in recon if r["section"] == "exception"]
    assert issuer.ledger.account(INTERCHANGE_INCOME_ACCOUNT).credits_posted == interchange - fees
    issuer.ledger.check_invariants()
    text = world.boxes["reports"]["reconciliation_bank-a_20261124.txt"]
    assert "matched and posted          2         2050.00" in text and "6222020000000001" not in text

    # The merchant was credited once, at settlement.
    merchant = world.parties["acquirer"].core.ledger.account(MERCHANT_ACCOUNT_BASE)
    assert merchant.credits_posted - merchant.debits_posted == 205_000 - 2_000 - 1_230


def present(world, rows, name="P48020000_20261124_900001.csv"):
    """An acquirer's presentment file, as if the acquirer had published it."""
    full = [dict({f: "" for f in PRESENTMENT_FIELDS}, currency="156", acquirer_id="48020000", **r) for r in rows]
    world.boxes.setdefault(clearing_files.SWITCH_BOX, {})[name] = to_csv(full, PRESENTMENT_FIELDS)
    world._deliver_file(clearing_files.SWITCH_BOX, name)
    world.run()


def test_a_smaller_presentment_posts_that_much_and_releases_the_rest(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000).done.result
    start = available(world)
    switch = world.parties["switch"].core
    host_key, entry = next((k, e) for k, e in switch.auth_log.items() if e["lifecycle"] == sale["reference_no"])
    present(world, [{"lifecycle": sale["reference_no"], "kind": "sale", "pan": PAN, "amount_fen": 6_000, "host_key": host_key}])
    world.advance(PAST_RECONCILIATION_MS)
    assert available(world) == start + 4_000, "the 40.00 not presented is released"
    recon = report_rows(world, "reconciliation_bank-a_20261124.csv")
    assert [(r["section"], r["amount_fen"]) for r in recon if r["section"] == "difference"] == [("difference", "-4000")]


def test_a_presentment_with_no_hold_is_force_posted_and_listed_as_an_exception(world):
    start = available(world)
    present(world, [
        {"lifecycle": "000000009999", "kind": "sale", "pan": PAN, "amount_fen": 1_500, "host_key": "48020000:1124000000:999999"},
        {"lifecycle": "000000009998", "kind": "sale", "pan": "6222020000000001", "amount_fen": 1_500, "host_key": "48020000:1124000000:999999"},
        {"lifecycle": "000000009997", "kind": "sale", "pan": "9999990000000001", "amount_fen": 100, "host_key": ""},
    ])
    world.advance(PAST_RECONCILIATION_MS)
    assert available(world) == start - 3_000, "posted without a hold: the issuer owes the scheme for it all the same"
    recon = report_rows(world, "reconciliation_bank-a_20261124.csv")
    exceptions = [(r["lifecycle"], r["detail"]) for r in recon if r["section"] == "exception"]
    assert exceptions == [("000000009999", "no authorization; force-posted"), ("000000009998", "no authorization; force-posted")]
    settlement = report_rows(world, "settlement_00010000_20261124.csv")
    assert sum(int(r["net_position_fen"]) for r in settlement) == 0
    text = world.boxes["reports"]["settlement_00010000_20261124.txt"]
    assert "no-authorization 2" in text and "no issuer for the card's BIN 1" in text


def test_a_file_seen_again_is_ignored_and_a_malformed_one_is_rejected_without_moving_money(world):
    start = available(world)
    row = {"lifecycle": "000000009999", "kind": "sale", "pan": PAN, "amount_fen": 1_500, "host_key": "x"}
    present(world, [row])
    present(world, [row])  # the same file again (a sender republishing after a restart)
    world.boxes[clearing_files.SWITCH_BOX]["bad.csv"] = "lifecycle,kind\n1,sale\n"
    world._deliver_file(clearing_files.SWITCH_BOX, "bad.csv")
    world.run()
    switch = world.parties["switch"].core
    assert switch.files_in["bad.csv"]["status"] == "rejected" and "header" in switch.files_in["bad.csv"]["error"]
    world.advance(PAST_RECONCILIATION_MS)
    assert available(world) == start - 1_500, "posted once"


def test_a_clearing_file_with_a_bad_amount_is_refused_naming_its_line():
    good = {f: "" for f in CLEARING_FIELDS} | {"amount_fen": "12", "interchange_fen": "0", "acquirer_fee_fen": "0", "issuer_fee_fen": "0"}
    text = to_csv([good, dict(good, amount_fen="1e3")], CLEARING_FIELDS)
    try:
        clearing_files.from_csv(text, CLEARING_FIELDS)
    except clearing_files.ClearingFileError as e:
        assert "line 3" in str(e) and "amount_fen" in str(e)
    else:
        raise AssertionError("a bad amount must be refused")


@given(st.text(alphabet=[",", "\n", "a", "1", " ", "合", '"', "\r", "\0", "\t"], max_size=60))
@settings(max_examples=500, deadline=None)
def test_a_clearing_file_is_read_line_by_line_as_the_csv_module_reads_it(text):
    """The fast path (a text with no quote, CR or NUL split at commas and newlines) gives what csv.reader gives."""
    try:
        expected = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        expected = csv.Error
    try:
        got = list(clearing_files._lines(text))
    except csv.Error:
        got = csv.Error
    assert got == expected


def test_a_clearing_file_the_csv_module_cannot_read_is_refused_not_a_crash():
    good = {f: "" for f in CLEARING_FIELDS} | {"amount_fen": "12", "interchange_fen": "0", "acquirer_fee_fen": "0", "issuer_fee_fen": "0"}
    text = to_csv([good, dict(good, lifecycle="x," + "9" * 200_000)], CLEARING_FIELDS)  # quoted: a field past csv's limit
    try:
        clearing_files.from_csv(text, CLEARING_FIELDS)
    except clearing_files.ClearingFileError as e:
        assert "line 3" in str(e) and "field limit" in str(e), e
    else:
        raise AssertionError("a file the csv module refuses must be refused")


def test_fees_round_half_up_and_stop_at_their_cap():
    rates = ClearingRates()
    assert rates.interchange.of(10_000) == 35 and rates.interchange.of(1_000_000) == 1_300
    assert rates.scheme_fee.of(5_000) == 2 and rates.scheme_fee.of(100_000_000) == 325
    assert FeeRate(5_000).of(100) == 1 and FeeRate(5_000).of(99) == 0  # 0.495 fen rounds to 0, 0.5 to 1
    assert clearing_files.parse_rate("0.0325%") == 325


def test_a_restarted_switch_clears_what_it_received_before_the_crash(world, card):
    world.command(POS, "sign-on")
    world.command(POS, "sale", card=card, pin=PIN, amount_fen=3_000)
    assert world.command(POS, "settle").done.ok
    world.crash("switch")
    world.restart("switch")
    world.advance(PAST_RECONCILIATION_MS)
    issuer = world.parties["issuer-bank-a"].core
    assert [a["status"] for a in issuer.auths.values() if a["kind"] == "sale"] == ["posted"]
    assert issuer.ledger.account(SUSPENSE_ACCOUNT).credits_posted == 0
    assert world.parties["issuer-bank-a"].core.files_in, "the issuer got its clearing file"


def test_after_a_restart_the_switch_still_refuses_a_sale_presented_twice(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=4_000).done.result
    switch = world.parties["switch"].core
    host_key = next(k for k, e in switch.auth_log.items() if e["lifecycle"] == sale["reference_no"])
    row = {"lifecycle": sale["reference_no"], "kind": "sale", "pan": PAN, "amount_fen": 4_000, "host_key": host_key}
    present(world, [row], name="P48020000_20261124_900001.csv")
    world.advance(PAST_RECONCILIATION_MS)  # cleared and posted on the 24th
    start = available(world)
    world.crash("switch")
    world.restart("switch")
    assert world.parties["switch"].core.auth_log[host_key]["presented"] == "P48020000_20261124_900001.csv"
    present(world, [row], name="P48020000_20261125_900002.csv")  # the same sale in the next day's file
    world.advance(24 * HOUR_MS)
    assert available(world) == start, "the second presentment moved no money"
    text = world.boxes["reports"]["settlement_00010000_20261125.txt"]
    assert "duplicate presentment 1" in text
    stored = world.parties["switch"].tables.get("clearing_file_texts", {})
    assert sorted(stored) == ["P48020000_20261125_900002.csv"], "only the last closed cycle's file texts are kept"


def test_a_restarted_issuer_reads_its_holds_posted_or_expired_from_the_ledger(world, card):
    world.command(POS, "sign-on")
    kept = world.command(POS, "sale", card=card, pin=PIN, amount_fen=10_000).done.result
    forgotten = world.command(POS, "sale", card=card, pin=PIN, amount_fen=2_500).done.result
    switch = world.parties["switch"].core
    host_key = next(k for k, e in switch.auth_log.items() if e["lifecycle"] == kept["reference_no"])
    # Only the first sale is presented, and for less than was held; the second is never claimed.
    present(world, [{"lifecycle": kept["reference_no"], "kind": "sale", "pan": PAN, "amount_fen": 6_000, "host_key": host_key}])
    world.advance(PAST_RECONCILIATION_MS + 49 * HOUR_MS)
    before = {a["rrn"]: (a["status"], a.get("posted_fen")) for a in world.parties["issuer-bank-a"].core.auths.values()}
    assert before == {kept["reference_no"]: ("posted", 6_000), forgotten["reference_no"]: ("expired", None)}
    balance = available(world)
    world.crash("issuer-bank-a")
    world.restart("issuer-bank-a")
    issuer = world.parties["issuer-bank-a"].core
    assert {a["rrn"]: (a["status"], a.get("posted_fen")) for a in issuer.auths.values()} == before
    assert available(world) == balance
    # A refund of the posted sale is still allowed after the restart: the issuer knows it as posted.
    world.command(POS, "refund", card=card, reference_no=kept["reference_no"], date_mmdd="1124", amount_fen=1_000)
    assert available(world) == balance + 1_000


def test_a_sale_presented_twice_in_one_file_is_posted_once(world, card):
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=3_000).done.result
    start = available(world)
    issuer = world.parties["issuer-bank-a"].core
    host_key = next(k for k, a in issuer.auths.items() if a["rrn"] == sale["reference_no"])
    row = {"lifecycle": sale["reference_no"], "kind": "sale", "pan": PAN, "amount_fen": 3_000, "host_key": host_key}
    clearing_file = to_csv([dict({f: "" for f in CLEARING_FIELDS}, issuer="01020000", acquirer_id="48020000", source_file="x",
                                 interchange_fen=0, acquirer_fee_fen=0, issuer_fee_fen=0, currency="156", **row)] * 2, CLEARING_FIELDS)
    box = clearing_files.issuer_box("bank-a")
    world.boxes.setdefault(box, {})["C00010000_bank-a_20261124_000099.csv"] = clearing_file
    world._deliver_file(box, "C00010000_bank-a_20261124_000099.csv")
    world.run()
    assert available(world) == start, "posting takes the hold, and only once"
    assert issuer.ledger.account(issuer.config.cards[PAN].account_id).debits_posted == 3_000
    [recon] = issuer.recon.values()
    assert recon["matched_count"] == 1
    assert [e["reason"] for e in recon["exceptions"]] == ["duplicate presentment: already posted, nothing moved"]


def test_a_sale_whose_voids_reversal_the_issuer_has_not_heard_waits_for_the_next_cycle_also_across_a_restart(world, card):
    """Presented while the switch still owes the issuer the reversal of its void, the sale would meet a
    released hold and be force-posted: it is carried to the next cycle, and cleared once the issuer knows."""
    start = available(world)
    world.command(POS, "sign-on")
    sale = world.command(POS, "sale", card=card, pin=PIN, amount_fen=4_000).done.result
    world.cut.add(("acquirer", f"conn:{POS}"))  # the void is approved; its answer never reaches the terminal
    world.command(POS, "void", voucher_no=int(sale["voucher_no"]))
    world.advance(60_000)
    assert available(world) == start, "the void released the hold"
    world.cut = {("switch", "issuer:bank-a")}  # the reversal of the void stops at the switch
    assert world.command(POS, "settle").done.ok  # the terminal reverses the void first: the sale stands
    switch = world.parties["switch"].core
    assert len(switch.saf["bank-a"].items) == 1, "the switch owes the issuer the reversal of the void"

    world.advance(14 * HOUR_MS)  # past the cut-off
    day = min(world.tables("switch")["clearing_days"].values(), key=lambda d: d["day"])
    assert day["deferred"] == 1 and day["items"] == 0
    assert world.tables("switch")["clearing_cycle"]["open"]["carried_items"], "carried, in the store"
    world.crash("switch")
    world.restart("switch")
    world.cut.clear()
    world.advance(24 * HOUR_MS)  # the reversal goes through, then the next cut-off clears the sale

    issuer = world.parties["issuer-bank-a"].core
    (auth,) = [a for a in issuer.auths.values() if a["kind"] == "sale"]
    assert auth["status"] == "posted" and not auth.get("force_posted")
    assert available(world) == start - 4_000
    assert all(not r["exceptions"] for r in world.tables("issuer-bank-a")["reconciliation"].values())


@pytest.fixture
def sliced_world(demo_net, world_of):
    """The demo network with the switch clearing ``slice_items`` presentments an input after the cut-off."""

    def make(slice_items):
        demo_net.raw.setdefault("clearing", {})["slice_items"] = slice_items
        return world_of(demo_net)

    return make


def a_day_of_sales(world, card, amounts):
    world.command(POS, "sign-on")
    for amount in amounts:
        assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=amount).done.ok
    assert world.command(POS, "settle").done.ok


def outcome(world):
    """What clearing did, as a user sees it: the settlement report, the holds, the cardholder's balance."""
    issuer = world.parties["issuer-bank-a"].core
    statuses = sorted((a["rrn"], a["status"], a.get("posted_fen")) for a in issuer.auths.values())
    report = [{k: v for k, v in r.items()} for r in report_rows(world, "settlement_00010000_20261124.csv")]
    return report, statuses, available(world)


def cut_off(world):
    """The clock up to the switch's cut-off, and the cut-off's first input."""
    world.advance_to(world.parties["switch"].core.cutoff_ms - 1)
    while world.parties["switch"].core.closing is None:
        assert world.step()


def next_slice(world):
    """Time on up to the switch's next slice of the cut-off, and that slice."""
    switch = world.parties["switch"].core
    done = switch.closing["done"]
    while switch.closing is not None and switch.closing["done"] == done:
        assert world.step()


AMOUNTS = [1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000]


def cleared(sliced_world, card, slice_items):
    """A day of AMOUNTS, settled, cleared ``slice_items`` at a time and posted."""
    world = sliced_world(slice_items)
    a_day_of_sales(world, card, AMOUNTS)
    world.advance(PAST_RECONCILIATION_MS)
    return world


def test_a_cut_off_is_cleared_in_slices_with_the_same_result_as_in_one_piece(sliced_world, card):
    whole, sliced = cleared(sliced_world, card, 1_000), cleared(sliced_world, card, 3)

    assert outcome(sliced) == outcome(whole)
    assert [s for _, s, _ in outcome(sliced)[1]] == ["posted"] * len(AMOUNTS)
    to_issuer = sorted(sliced.boxes[clearing_files.issuer_box("bank-a")])
    assert len(to_issuer) == 3, "one clearing file a slice: 3 + 3 + 1 presentments"
    assert sum(len(sliced.boxes[clearing_files.issuer_box("bank-a")][f].splitlines()) - 1 for f in to_issuer) == len(AMOUNTS)
    (day,) = sliced.tables("switch")["clearing_days"].values()
    assert day["items"] == len(AMOUNTS) and len(day["outputs"]) == 3 and day["decisions"] == "M" * len(AMOUNTS)
    assert "closing" not in sliced.tables("switch")["clearing_cycle"], "nothing left being cleared"
    assert not sliced.tables("switch").get("clearing_slices"), "the slices' records gathered in the day's"
    sliced.parties["switch"].core.ledger.check_invariants()


def test_a_sale_goes_through_between_two_slices_of_a_cut_off(sliced_world, card):
    world = sliced_world(2)
    a_day_of_sales(world, card, AMOUNTS[:4])
    switch = world.parties["switch"].core
    cut_off(world)  # and its first slice
    assert switch.closing is not None and switch.closing["done"] == 2
    assert world.command(POS, "sale", card=card, pin=PIN, amount_fen=9_900).done.ok, "authorizations go on during clearing"
    world.advance(PAST_RECONCILIATION_MS)
    (day,) = world.tables("switch")["clearing_days"].values()
    assert day["items"] == 4, "the sale after the cut-off is in the next cycle"
    issuer = world.parties["issuer-bank-a"].core
    assert sorted(a["status"] for a in issuer.auths.values()) == ["held"] + ["posted"] * 4


def test_a_switch_that_crashes_between_slices_goes_on_where_it_stopped_and_clears_each_item_once(sliced_world, card):
    whole = cleared(sliced_world, card, 1_000)

    world = sliced_world(2)
    a_day_of_sales(world, card, AMOUNTS)
    cut_off(world)
    next_slice(world)
    assert world.tables("switch")["clearing_cycle"]["closing"]["done"] == 4
    assert sorted(world.tables("switch")["clearing_slices"]) == ["20261124/000001", "20261124/000002"]
    first_files = dict(world.boxes[clearing_files.issuer_box("bank-a")])
    world.boxes[clearing_files.issuer_box("bank-a")].clear()  # committed, never written: the crash came first
    world.crash("switch")
    world.restart("switch")
    world.advance(PAST_RECONCILIATION_MS)

    assert outcome(world) == outcome(whole)
    assert not world.tables("switch").get("clearing_slices")
    (day,) = world.tables("switch")["clearing_days"].values()
    assert day["decisions"] == "M" * len(AMOUNTS) and len(day["outputs"]) == 4
    box = world.boxes[clearing_files.issuer_box("bank-a")]
    assert set(first_files) <= set(box) and all(box[f] == first_files[f] for f in first_files), "written again, the same"
    assert len(box) == 4
    issuer = world.parties["issuer-bank-a"].core
    assert not [x for r in issuer.recon.values() for x in r["exceptions"]]
    assert all(not r["exceptions"] for r in world.tables("issuer-bank-a")["reconciliation"].values())
    world.parties["switch"].core.ledger.check_invariants()


@pytest.mark.parametrize("bad", [0, -5, "20000", 1.5])
def test_slice_items_must_be_a_whole_number_of_presentments(demo_net, bad):
    demo_net.raw.setdefault("clearing", {})["slice_items"] = bad
    with pytest.raises(config.ConfigError, match="slice_items"):
        config.clearing_slice_items(demo_net)
