"""Manual credit (手工划款) at the acquirer: maker-checker, the audit trail, the money, in one process."""

import pytest

from posnet import config
from posnet.acquirer import manual_credit
from posnet.acquirer.settlement import FUNDING_ACCOUNT, MERCHANT_ACCOUNT_BASE, SCHEME_SETTLEMENT_ACCOUNT, presentment
from posnet.ledger import chart

MID = "898310148160001"
POS = "pos-10000001"
PAN = "6222020000000001"


def ask(world, name, **args):
    """An operator's command to the acquirer; its answer (the manual-credit trace)."""
    before = len(world.traces)
    world.command("acquirer", f"manual-credit-{name}", **args)
    [answer] = [t.detail for _, party, t in world.traces[before:] if party == "acquirer" and t.event == manual_credit.TRACE_EVENT]
    return answer


def books(world):
    return world.parties["acquirer"].core.ledger


def credit_balance(world, account_id):
    a = books(world).account(account_id)
    return a.credits_posted - a.debits_posted


def audit(world):
    rows = world.tables("acquirer").get("audit", {})
    return [rows[k] for k in sorted(rows)]


def assert_books_balance(world):
    ledger = books(world)
    ledger.check_invariants()
    debits_pending, debits_posted, credits_pending, credits_posted = ledger.totals(chart.CNY)
    assert (debits_pending, debits_posted) == (credits_pending, credits_posted)


def pay_merchant(world, operator="alice", amount_fen=10_000):
    return ask(world, "request", operator=operator, target="merchant", merchant_id=MID, amount_fen=amount_fen,
               reason="terminal fault on 11-23: sale not settled")


def test_the_maker_cannot_approve_her_own_request_and_the_audit_trail_shows_both_operators(world):
    req = pay_merchant(world)
    assert req["outcome"] == "requested" and req["id"] == "MC000001" and req["status"] == "pending"
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 0, "a request moves no money"

    own = ask(world, "approve", id="MC000001", operator="alice")
    assert own["outcome"] == "refused"
    assert own["error"] == "MC000001 was requested by alice: a second operator must approve it"
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 0

    ok = ask(world, "approve", id="MC000001", operator="bob")
    assert ok["outcome"] == "approved" and ok["maker"] == "alice" and ok["checker"] == "bob"
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 10_000
    assert credit_balance(world, FUNDING_ACCOUNT) == -10_000, "the acquirer pays out of its own funds"

    trail = audit(world)
    assert [(r["seq"], r["operator"], r["action"], r["request_id"]) for r in trail] == [
        (1, "alice", "requested", "MC000001"),
        (2, "alice", "approve-refused", "MC000001"),
        (3, "bob", "approved", "MC000001"),
    ]
    assert trail[0]["detail"]["reason"] == "terminal fault on 11-23: sale not settled"
    assert trail[1]["detail"]["error"].endswith("a second operator must approve it")
    assert all(r["at_ms"] == world.now_ms for r in trail)
    assert_books_balance(world)


def test_the_same_approval_twice_moves_the_money_once(world):
    pay_merchant(world, amount_fen=2_500)
    first = ask(world, "approve", id="MC000001", operator="bob")
    again = ask(world, "approve", id="MC000001", operator="bob")  # its answer was lost: asked again
    assert first["outcome"] == again["outcome"] == "approved" and again["repeated"] is True
    assert again["transfer_id"] == first["transfer_id"]
    other = ask(world, "approve", id="MC000001", operator="alice")
    assert other["outcome"] == "refused" and other["error"] == "MC000001 is approved already (by bob), not pending"
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 2_500
    manual = [t for t in books(world).transfers() if t.code == chart.MANUAL_CREDIT]
    assert len(manual) == 1 and manual[0].amount == 2_500
    assert [r["action"] for r in audit(world)] == ["requested", "approved", "approve-refused"]
    assert_books_balance(world)


def test_a_rejected_request_moves_nothing_and_cannot_be_approved_after(world):
    pay_merchant(world)
    no_reason = ask(world, "reject", id="MC000001", operator="bob", reason="  ")
    assert no_reason == {"outcome": "refused", "id": "MC000001", "error": "a reason is required"}
    rejected = ask(world, "reject", id="MC000001", operator="bob", reason="the sale was settled on 11-24")
    assert rejected["outcome"] == "rejected" and rejected["decision_reason"] == "the sale was settled on 11-24"
    late = ask(world, "approve", id="MC000001", operator="bob")
    assert late["outcome"] == "refused" and "rejected already" in late["error"]
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 0 and credit_balance(world, FUNDING_ACCOUNT) == 0
    assert not [t for t in books(world).transfers() if t.code == chart.MANUAL_CREDIT]
    assert world.tables("acquirer")["manual_credits"]["MC000001"]["status"] == "rejected"
    assert [(r["operator"], r["action"]) for r in audit(world)] == [
        ("alice", "requested"), ("bob", "reject-refused"), ("bob", "rejected"), ("bob", "approve-refused"),
    ]


@pytest.mark.parametrize(
    "args, error",
    [
        ({"operator": "mallory"}, "unknown operator 'mallory': not among [acquirer] operators"),
        ({"operator": ""}, "no operator given"),
        ({"amount_fen": 0}, "the amount must be more than 0 and at most 999999999999 fen, not 0"),
        ({"amount_fen": -100}, "the amount must be more than 0 and at most 999999999999 fen, not -100"),
        ({"amount_fen": "100"}, "the amount must be more than 0 and at most 999999999999 fen, not '100'"),
        ({"reason": ""}, "a reason is required"),
        ({"reason": "x" * 201}, "a reason has at most 200 characters"),
        ({"merchant_id": "898310148169999"}, "no merchant '898310148169999' at this acquirer"),
        ({"target": "issuer"}, "the target is 'merchant' or 'cardholder', not 'issuer'"),
        ({"target": "cardholder", "pan": "1234"}, "a card number is 13 to 19 digits"),
        ({"target": "cardholder", "pan": PAN, "original_rrn": "000000000999"},
         "no transaction with reference number 000000000999 at this acquirer"),
    ],
)
def test_a_bad_request_is_refused_audited_and_moves_nothing(world, args, error):
    good = {"operator": "alice", "target": "merchant", "merchant_id": MID, "amount_fen": 100, "reason": "goodwill"}
    answer = ask(world, "request", **{**good, **args})
    assert answer == {"outcome": "refused", "id": "", "error": error}
    [row] = audit(world)
    assert row["action"] == "request-refused" and row["detail"]["error"] == error and row["request_id"] == ""
    assert "manual_credits" not in world.tables("acquirer")
    assert not [t for t in books(world).transfers() if t.code == chart.MANUAL_CREDIT]


def test_deciding_on_an_unknown_request_is_refused(world):
    assert ask(world, "approve", id="MC000042", operator="bob")["error"] == "no manual credit 'MC000042'"
    assert ask(world, "reject", id="MC000042", operator="bob", reason="r")["error"] == "no manual credit 'MC000042'"
    assert [r["action"] for r in audit(world)] == ["approve-refused", "reject-refused"]


def sale(world, card, amount_fen):
    world.command(POS, "sign-on")
    return world.command(POS, "sale", card=card, pin="123456", amount_fen=amount_fen).done.result


def test_a_return_to_a_cardholder_debits_the_merchant_and_writes_a_presentment_of_kind_credit(world, card):
    s = sale(world, card, 30_000)
    rrn = s["reference_no"]
    req = ask(world, "request", operator="alice", target="cardholder", pan=PAN, original_rrn=rrn,
              debit_merchant_id=MID, amount_fen=12_000, reason="goods returned; terminal refund failed")
    assert req["outcome"] == "requested" and req["pan"] == "622202******0001", "the card number is masked"
    assert "presentments" not in world.tables("acquirer"), "nothing is presented before the approval"
    ok = ask(world, "approve", id=req["id"], operator="bob")
    assert ok["outcome"] == "approved" and ok["lifecycle"] == "MC0000000001"

    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == -12_000, "the merchant bears the return"
    assert credit_balance(world, SCHEME_SETTLEMENT_ACCOUNT) == 12_000, "the acquirer owes the scheme the return"
    assert_books_balance(world)

    p = world.tables("acquirer")["presentments"]["MC0000000001"]
    txn = world.parties["acquirer"].core.txns[rrn]
    assert set(p) - {"file"} == set(presentment(txn, "48020000", "1124")) | {"manual_credit"}, "the settlement's record format"
    assert {k: v for k, v in p.items() if k != "file"} == {
        "lifecycle": "MC0000000001", "kind": "credit", "acquirer_id": "48020000",
        "terminal_id": "10000001", "merchant_id": MID, "batch_no": txn["batch_no"], "trace_no": txn["trace_no"],
        "pan": PAN, "amount_fen": 12_000, "currency": "156", "auth_code": "",
        "transaction_date": "1124", "settled_date": "1124", "original_lifecycle": rrn, "host_key": "",
        "manual_credit": "MC000001",
    }
    audit_pans = [r["detail"].get("pan") for r in audit(world)]
    assert audit_pans == ["622202******0001", "622202******0001"], "the audit trail masks the card number"


def test_a_return_without_a_merchant_to_debit_comes_from_the_acquirers_funds(world):
    req = ask(world, "request", operator="bob", target="cardholder", pan="6217000000000001", amount_fen=5_000,
              reason="compensation for a double charge, complaint 2026-118")
    ask(world, "approve", id=req["id"], operator="alice")
    assert credit_balance(world, FUNDING_ACCOUNT) == -5_000
    assert credit_balance(world, SCHEME_SETTLEMENT_ACCOUNT) == 5_000
    p = world.tables("acquirer")["presentments"]["MC0000000001"]
    assert (p["kind"], p["merchant_id"], p["terminal_id"], p["original_lifecycle"]) == ("credit", "", "", "")
    assert_books_balance(world)


def test_a_return_cannot_exceed_what_is_left_of_the_sale(world, card):
    rrn = sale(world, card, 10_000)["reference_no"]
    common = {"operator": "alice", "target": "cardholder", "pan": PAN, "original_rrn": rrn, "reason": "returned"}
    assert ask(world, "request", **common, amount_fen=6_000)["outcome"] == "requested"
    over = ask(world, "request", **common, amount_fen=4_001)
    assert over["error"] == f"reference number {rrn} was for 10000 fen, 6000 of it refunded or asked for already"
    other_card = ask(world, "request", **{**common, "pan": "6217000000000001"}, amount_fen=100)
    assert other_card["error"] == f"reference number {rrn} was made with another card"


def test_a_restarted_acquirer_keeps_its_requests_and_numbers_on(world):
    pay_merchant(world)
    world.crash("acquirer")
    world.restart("acquirer")
    assert ask(world, "approve", id="MC000001", operator="bob")["outcome"] == "approved"
    assert pay_merchant(world, operator="bob")["id"] == "MC000002"
    assert [r["seq"] for r in audit(world)] == [1, 2, 3], "the trail goes on without a gap or an overwrite"
    world.crash("acquirer")
    world.restart("acquirer")
    assert ask(world, "approve", id="MC000001", operator="bob")["repeated"] is True
    assert credit_balance(world, MERCHANT_ACCOUNT_BASE) == 10_000


@pytest.mark.parametrize(
    "line, error",
    [
        ('operators = "alice"', "[acquirer] operators: a list of names"),
        ('operators = ["alice", "alice"]', "[acquirer] operators: a name appears twice"),
        ('operators = ["alice", ""]', "[acquirer] operators: a list of names"),
        (f'operators = ["{"a" * 33}"]', "[acquirer] operators: a name has at most 32 characters"),
    ],
)
def test_bad_operators_in_the_config_are_named(demo_config_path, line, error):
    text = demo_config_path.read_text(encoding="utf-8").replace('operators = ["alice", "bob"]', line)
    demo_config_path.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as e:
        config.load(demo_config_path)
    assert str(e.value).startswith(error)
