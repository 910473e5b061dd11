"""The terminal as a device, in one process: paper, battery, power, tamper, reprints, lists."""

import pytest

from posnet.acquirer.keys import new_tmk
from posnet.effects import Command
from posnet.terminal.devices import PASSWORD_LOCKOUT_MS, PASSWORD_TRIES_MAX
from posnet.terminal.receipt import CARDHOLDER_COPY, MERCHANT_COPY, REPRINT_MARK
from posnet.terminal.slips import PartialSlip

POS = "pos-10000001"
TID = "10000001"
PIN = "123456"
PASSWORD = "147258"  # the demo config's protection password
TRANSPORT_KEY = "89ABCDEF01234567FEDCBA9876543210"
START = 1_000_000


def balance(world):
    return world.parties["issuer-bank-a"].core.balance_of_card("6222020000000001")


def held_fen(world):
    issuer = world.parties["issuer-bank-a"].core
    return sum(a.debits_pending for a in issuer.ledger.accounts())


def terminal(world):
    return world.parties[POS].core


def sent_frames(world):
    return [t for _, party, t in world.traces if party == POS and t.event == "request sent"]


@pytest.fixture
def pos(world):
    assert world.command(POS, "sign-on").done.ok
    return world


def test_low_voltage_after_the_approval_leaves_no_slip_the_detail_list_shows_the_sale_and_a_charged_terminal_reprints_it(pos, card):
    protection_mv = terminal(pos).device_settings.battery_protection_mv
    pos.command(POS, "battery", level_mv=protection_mv, mains=False)  # not below protection: the sale may start
    sale = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=8800)
    assert sale.done.ok, "the sale stands"
    assert sale.slips == [], "no slip: the voltage fell below protection with the radio's drain"
    assert "电量不足,请充电 BATTERY LOW, PLEASE CHARGE; 签购单未打印 RECEIPT NOT PRINTED" in sale.displays
    voucher = sale.done.result["voucher_no"]
    assert terminal(pos).unprinted() == [voucher], "the terminal knows the receipt is not on paper"

    detail = pos.command(POS, "detail")
    assert [e["voucher_no"] for e in detail.done.result["entries"]] == [voucher]
    assert detail.done.result["printed"] is False and detail.slips == []

    refused = pos.command(POS, "reprint")
    assert refused.done.ok is False and refused.done.result["error"] == "battery low"
    charging = pos.command(POS, "battery", mains=True)
    assert any(f"签购单未打印 RECEIPT NOT PRINTED: 凭证号 VOUCHER {voucher}" in d for d in charging.displays), "offers the reprint"
    reprint = pos.command(POS, "reprint")
    assert reprint.done.ok
    assert [s.copy for s in reprint.slips] == [MERCHANT_COPY, CARDHOLDER_COPY]
    assert all(REPRINT_MARK in s.text() and s.voucher_no == voucher for s in reprint.slips)
    assert terminal(pos).unprinted() == [] and pos.tables(POS).get("print_job", {}) == {}
    assert balance(pos) == START - 8800 and held_fen(pos) == 8800, "exactly one hold"
    assert [t["kind"] for t in pos.parties["acquirer"].core.txns.values()] == ["sale"], "one sale, not two"


def test_paper_out_in_the_middle_of_a_slip_the_sale_stands_and_after_loading_paper_reprint_last_prints_the_rest(pos, card):
    pos.command(POS, "load-paper", length_mm=150)  # the merchant copy fits, the cardholder copy does not
    sale = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=4200)
    assert sale.done.ok and sale.done.response_code == "00"
    merchant, torn = sale.slips
    assert merchant.copy == MERCHANT_COPY and isinstance(torn, PartialSlip) and torn.reason == "paper"
    assert 0 < len(torn.lines()) < len(torn.slip.lines()), "the paper ran out in the middle of the slip"
    assert "缺纸 PAPER OUT: 请装纸后重打印 LOAD PAPER, THEN REPRINT" in sale.displays
    voucher = sale.done.result["voucher_no"]
    assert voucher in terminal(pos).journal, "in the journal before printing"

    assert pos.command(POS, "reprint").done.ok is False, "still no paper"
    loaded = pos.command(POS, "load-paper")
    assert any("请重打印 PLEASE REPRINT" in d for d in loaded.displays)
    reprint = pos.command(POS, "reprint")
    assert reprint.done.ok and [s.copy for s in reprint.slips] == [CARDHOLDER_COPY], "the copy that did not come out"
    assert REPRINT_MARK in reprint.slips[0].text()
    assert balance(pos) == START - 4200


def test_reprint_of_an_earlier_sale_by_voucher_number(pos, card):
    first = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=1111).done.result["voucher_no"]
    pos.command(POS, "sale", card=card, pin=PIN, amount_fen=2222)
    pos.command(POS, "sale", card=card, pin=PIN, amount_fen=3333)
    out = pos.command(POS, "reprint", voucher_no=int(first))
    assert out.done.ok and out.done.result == {"voucher_no": first, "printed": True}
    assert {s.voucher_no for s in out.slips} == {first} and all(s.amount_fen == 1111 and s.reprint for s in out.slips)
    missing = pos.command(POS, "reprint", voucher_no=999)
    assert missing.done.ok is False and "无此交易 NO SUCH VOUCHER 000999" in missing.displays


def test_battery_below_protection_refuses_a_sale_before_anything_is_sent(pos, card):
    before = len(sent_frames(pos))
    trace_no = terminal(pos).counters["trace_no"]
    pos.command(POS, "battery", level_mv=terminal(pos).device_settings.battery_protection_mv - 1, mains=False)
    sale = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=500)
    assert sale.done.ok is False and sale.done.result == {"error": "battery low"}
    assert sale.displays == ["电量不足,请充电 BATTERY LOW, PLEASE CHARGE"]
    assert len(sent_frames(pos)) == before and terminal(pos).counters["trace_no"] == trace_no, "nothing went out"
    assert pos.command(POS, "totals").done.ok is False, "nor does it print"
    pos.command(POS, "battery", mains=True)
    assert pos.command(POS, "sale", card=card, pin=PIN, amount_fen=500).done.ok, "on mains it trades"


def test_power_cut_between_the_sale_and_its_reply_on_power_up_the_reversal_goes_first_and_the_money_is_back(pos, card):
    pos.hold.add(("acquirer", f"conn:{POS}"))  # the approval is on its way back
    pos.command(POS, "sale", card=card, pin=PIN, amount_fen=6600)
    assert balance(pos) == START - 6600
    pos.crash(POS)  # the power goes
    pos.hold.clear()
    pos.release_held()  # the approval arrives at a terminal that is off
    pos.restart(POS)
    assert terminal(pos).reversal is not None, "the reversal record survived in the store"
    boot = pos.command(POS, "power-on")
    assert boot.displays[:3] == ["POSNET 10000001 欢迎使用 WELCOME", "自动冲正 AUTO REVERSAL", "冲正中 REVERSING"]
    assert boot.done.ok and boot.done.result == {"reversal": "done"}
    assert balance(pos) == START and held_fen(pos) == 0
    assert terminal(pos).journal == {}, "no receipt, no sale"


def test_power_cut_while_printing_offers_the_receipt_at_power_up(pos, card):
    pos.submit(POS, Command("sale", {"card": card, "pin": PIN, "amount_fen": 700}))
    # Run until the approval is printed, but crash before the printer reports done.
    while not (pos.outputs[POS].done and pos.outputs[POS].done.ok):
        pos._handle(*pos._queue.popleft())
    pending = dict(pos._queue)
    assert pending.get(POS) == Command("printed")
    pos.crash(POS)
    pos.restart(POS)
    voucher = pos.outputs[POS].done.result["voucher_no"]
    assert terminal(pos).unprinted() == [voucher]
    boot = pos.command(POS, "power-on")
    assert f"签购单未打印 RECEIPT NOT PRINTED: 凭证号 VOUCHER {voucher}; 请重打印 PLEASE REPRINT" in boot.displays
    assert pos.command(POS, "reprint").done.ok and terminal(pos).unprinted() == []


def inject_new_tmk(world):
    """The acquirer's operator makes a new TMK; the key-loading device carries it to the terminal."""
    acquirer = world.parties["acquirer"].core
    tmk, injection = new_tmk(acquirer.hsm, acquirer.hsm.import_clear_key(TRANSPORT_KEY), TID)
    world.submit("acquirer", Command("inject-tmk", {"terminal_id": TID, "tmk": tmk}))
    world.run()
    hsm = terminal(world).hsm
    return world.command(
        POS, "load-tmk", tk=hsm.import_clear_key(TRANSPORT_KEY), tmk_under_tk=injection.tmk_under_tk, kcv=injection.kcv
    )


def test_opened_case_erases_the_keys_and_locks_the_password_unlocks_and_it_trades_after_a_new_tmk_and_sign_on(pos, card):
    opened = pos.command(POS, "open-case")
    assert any(d.startswith("保护状态 PROTECTION MODE: 机壳被打开 CASE OPENED") for d in opened.displays)
    keys = pos.tables(POS)["state"]["keys"]
    assert keys == {"tmk": None, "pik": None, "mak": None, "tdk": None, "signed_on": False, "sign_on_again": False}

    locked = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert locked.done.result["error"] == "protection"
    wrong = pos.command(POS, "unlock", password="000000")
    assert wrong.done.ok is False and wrong.done.result["error"] == "wrong"
    unlocked = pos.command(POS, "unlock", password=PASSWORD)
    assert unlocked.done.ok and unlocked.done.result == {"locked": False, "keys_erased": True}

    no_key = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert no_key.done.result == {"error": "no master key"}
    assert pos.command(POS, "sign-on").done.result == {"error": "no master key"}

    loaded = inject_new_tmk(pos)
    assert loaded.done.ok, loaded.displays
    assert pos.command(POS, "sale", card=card, pin=PIN, amount_fen=100).done.result == {"error": "not signed on"}
    assert pos.command(POS, "sign-on").done.ok, "the acquirer signs it on under the new TMK"
    sale = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=100)
    assert sale.done.ok and balance(pos) == START - 100


def test_the_old_tmk_no_longer_signs_on_once_a_new_one_is_injected(pos):
    acquirer = pos.parties["acquirer"].core
    tmk, _ = new_tmk(acquirer.hsm, acquirer.hsm.import_clear_key(TRANSPORT_KEY), TID)
    pos.submit("acquirer", Command("inject-tmk", {"terminal_id": TID, "tmk": tmk}))
    pos.run()
    out = pos.command(POS, "sign-on")
    assert out.done.ok is False and out.done.result == {"error": "key check"}, "working keys under another TMK"


def test_a_shock_locks_but_keeps_the_keys(pos, card):
    pos.command(POS, "shock")
    assert pos.command(POS, "reprint").done.result["error"] == "protection"
    assert terminal(pos).keys["tmk"] and terminal(pos).signed_on
    assert pos.command(POS, "unlock", password=PASSWORD).done.result == {"locked": False, "keys_erased": False}
    assert pos.command(POS, "sale", card=card, pin=PIN, amount_fen=300).done.ok


def test_too_many_wrong_passwords_lock_out_for_a_while(pos):
    pos.command(POS, "shock")
    for _ in range(PASSWORD_TRIES_MAX - 1):
        assert pos.command(POS, "unlock", password="999999").done.result["error"] == "wrong"
    out = pos.command(POS, "unlock", password="999999")
    assert out.done.result["error"] == "locked-out"
    assert pos.command(POS, "unlock", password=PASSWORD).done.result["error"] == "locked-out", "even the right one"
    pos.advance(PASSWORD_LOCKOUT_MS)
    assert pos.command(POS, "unlock", password=PASSWORD).done.ok


def test_the_store_keeps_a_salted_hash_of_the_password_and_device_state_survives_a_restart(pos, card):
    pos.command(POS, "shock")
    tamper = pos.tables(POS)["device"]["tamper"]
    assert tamper["password_hash"].startswith("scrypt$") and PASSWORD not in str(pos.tables(POS))
    pos.command(POS, "load-paper", length_mm=1234)
    pos.crash(POS)
    pos.restart(POS)
    st = pos.command(POS, "status").done.result
    assert st["locked"] and st["paper_mm"] == 1234


def test_the_detail_list_and_the_totals_print_the_batch(pos, card):
    a = pos.command(POS, "sale", card=card, pin=PIN, amount_fen=1000).done.result
    pos.command(POS, "sale", card=card, pin=PIN, amount_fen=2500)
    pos.command(POS, "void", voucher_no=int(a["voucher_no"]), pin=PIN)
    detail = pos.command(POS, "detail")
    assert [(e["kind"], e["amount_fen"]) for e in detail.done.result["entries"]] == [("sale", 1000), ("sale", 2500), ("void", 1000)]
    text = detail.slips[0].text()
    assert "交易明细 DETAIL" in text and f"{a['voucher_no']} S*" in text and "622202******0001" in text
    totals = pos.command(POS, "totals")
    assert totals.done.result["totals"]["sale"] == {"count": 2, "amount_fen": 3500}
    assert totals.done.result["totals"]["void"] == {"count": 1, "amount_fen": 1000}
    assert "借记总额 DEBIT" in totals.slips[0].text()
