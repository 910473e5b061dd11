"""Manual credit (手工划款) with the real `posnet acquirer …` commands against a running network:
docs/manual-credit.md's commands in order, then the errors an operator can make."""

import json
import re
import shlex
from pathlib import Path

import pytest
from cli_helpers import posnet

from posnet import config
from posnet.demo.story import write_config
from posnet.runtime.parties import party_dir
from posnet.runtime.store import PartyStore

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "manual-credit.md"
MID = "898310148160001"
PAN = "6222020000000001"


def doc_commands() -> list[tuple[list[str], str]]:
    """(argv, comment) of every `posnet` line in the page's sh blocks, in order."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            if command.strip().startswith("posnet "):
                out.append((shlex.split(command)[1:], comment.strip()))
    return out


def as_json(net, *args: str) -> dict:
    return json.loads(posnet(net, *args, "--json", check=True).stdout)


def merchant_balance(net) -> int:
    accounts = as_json(net, "acquirer", "books")["accounts"]
    return next(a["balance_fen"] for a in accounts if a["merchant_id"] == MID)


def test_the_pages_commands_run_in_order_and_the_money_moves_once(network):
    for argv, comment in doc_commands():
        p = posnet(network, *argv)
        assert p.returncode == (1 if comment.startswith("refused") else 0), (argv, p.stdout, p.stderr)
        if comment.startswith("refused"):
            assert p.stderr.strip().count("\n") == 0, "one line says why"

    trail = as_json(network, "acquirer", "audit")["audit"]
    assert [(r["operator"], r["action"], r["request_id"]) for r in trail] == [
        ("alice", "requested", "MC000001"),
        ("alice", "approve-refused", "MC000001"),
        ("bob", "approved", "MC000001"),
        ("bob", "requested", "MC000002"),
        ("alice", "approved", "MC000002"),
        ("alice", "requested", "MC000003"),
        ("alice", "rejected", "MC000003"),
    ]
    assert [r["seq"] for r in trail] == list(range(1, 8))
    assert trail[1]["detail"]["error"] == "MC000001 was requested by alice: a second operator must approve it"

    listed = {r["id"]: r for r in as_json(network, "acquirer", "manual-credit", "list")["manual_credits"]}
    assert {k: (r["status"], r["maker"], r["checker"]) for k, r in listed.items()} == {
        "MC000001": ("approved", "alice", "bob"),
        "MC000002": ("approved", "bob", "alice"),
        "MC000003": ("rejected", "alice", "alice"),
    }
    assert listed["MC000002"]["pan"] == "622202******0001"

    # Paid 100.00 once (approved twice by bob), bore the 30.00 returned to the card; nothing for the rejected 5.00.
    assert merchant_balance(network) == 10_000 - 3_000
    accounts = {a["id"]: a for a in as_json(network, "acquirer", "books")["accounts"]}
    assert accounts[3]["balance_fen"] == -10_000, "the acquirer's funds paid the merchant"
    assert accounts[1]["balance_fen"] == 3_000, "the acquirer owes the scheme the return"
    assert sum(a["debits_posted_fen"] for a in accounts.values()) == sum(a["credits_posted_fen"] for a in accounts.values())

    store = PartyStore(party_dir(network, "acquirer") / "acquirer.sqlite")
    try:
        presentments = store.load()["presentments"]
    finally:
        store.close()
    credit = presentments["MC0000000002"]
    assert (credit["kind"], credit["pan"], credit["amount_fen"], credit["original_lifecycle"], credit["manual_credit"]) == (
        "credit", PAN, 3_000, "000000000002", "MC000002")
    assert [p for p in presentments.values() if p["kind"] == "credit"] == [credit]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["request", "--operator", "mallory", "--merchant", MID, "--amount", "1.00", "--reason", "r"],
         "posnet: refused: unknown operator 'mallory': not among [acquirer] operators"),
        (["request", "--operator", "alice", "--merchant", MID, "--amount", "1.00"], "posnet: refused: a reason is required"),
        (["request", "--operator", "alice", "--merchant", MID, "--amount", "12.345", "--reason", "r"],
         "posnet: '12.345' has more than two decimals"),
        (["request", "--operator", "alice", "--merchant", MID, "--amount", "ten", "--reason", "r"],
         "posnet: 'ten' is not an amount in yuan"),
        (["request", "--operator", "alice", "--merchant", MID, "--amount", "0", "--reason", "r"],
         "posnet: refused: the amount must be more than 0 and at most 999999999999 fen, not 0"),
        (["request", "--operator", "alice", "--merchant", MID, "--ref", "000000000002", "--amount", "1", "--reason", "r"],
         "posnet: --ref and --debit-merchant go with --card (a return to a cardholder)"),
        (["approve", "MC999999", "--operator", "bob"], "posnet: refused: no manual credit 'MC999999'"),
        (["reject", "MC999999", "--operator", "bob", "--reason", "r"], "posnet: refused: no manual credit 'MC999999'"),
    ],
)
def test_an_operators_mistake_gets_one_clear_line_and_moves_no_money(network, argv, message):
    before = merchant_balance(network)
    p = posnet(network, "acquirer", "manual-credit", *argv)
    assert p.returncode != 0 and p.stderr.strip() == message and p.stdout == ""
    assert merchant_balance(network) == before


def test_the_maker_approving_her_own_request_is_refused_until_another_operator_approves(network):
    before = merchant_balance(network)
    req = as_json(network, "acquirer", "manual-credit", "request", "--operator", "bob", "--merchant", MID,
                  "--amount", "0.50", "--reason", "rounding difference of batch 000001")
    own = posnet(network, "acquirer", "manual-credit", "approve", req["id"], "--operator", "bob")
    assert own.returncode == 1
    assert own.stderr.strip() == f"posnet: refused: {req['id']} was requested by bob: a second operator must approve it"
    assert merchant_balance(network) == before
    ok = posnet(network, "acquirer", "manual-credit", "approve", req["id"], "--operator", "alice", check=True)
    assert ok.stdout.startswith(f"{req['id']} approved by alice (requested by bob)")
    assert merchant_balance(network) == before + 50


def test_deciding_needs_the_running_acquirer(tmp_path):
    net = config.load(write_config(tmp_path))  # a network that was never started
    p = posnet(net, "acquirer", "manual-credit", "request", "--operator", "alice", "--merchant", MID,
               "--amount", "1.00", "--reason", "r")
    assert p.returncode == 2
    assert p.stderr.strip() == ("posnet: the acquirer is not running: manual credits are decided by the running "
                                "acquirer (start it: posnet up)")
    listed = posnet(net, "acquirer", "audit")
    assert listed.returncode == 2 and "start the network first (posnet up)" in listed.stderr
