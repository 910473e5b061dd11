"""A party's store on SQLite and PostgreSQL: records and ledger committed as one, rebuilt at start."""

import pytest

from posnet.effects import Delete, LedgerWrite, Put
from posnet.ledger import Account, AccountFlags, Transfer, TransferFlags
from posnet.runtime.store import PartyStore

PG_URL = "postgresql://127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "party.sqlite"), None
    schema = request.getfixturevalue("pg_schema")
    return PG_URL, schema


def test_records_survive_a_reopen_and_deletes_stick(location):
    url, schema = location
    store = PartyStore(url, schema=schema)
    store.commit([Put("journal", "000001", {"amount_fen": 100}), Put("journal", "000002", {"amount_fen": 200})])
    store.commit([Delete("journal", "000001"), Put("state", "counters", {"trace_no": 2})])
    store.close()
    again = PartyStore(url, schema=schema)
    assert again.load() == {"journal": {"000002": {"amount_fen": 200}}, "state": {"counters": {"trace_no": 2}}}
    again.close()


def test_a_put_keeps_the_value_as_it_was_when_decided(location):
    url, schema = location
    store = PartyStore(url, schema=schema)
    live = {"status": "held"}
    put = Put("auths", "k", live)
    live["status"] = "changed later"
    store.commit([put])
    assert store.load()["auths"]["k"] == {"status": "held"}
    store.close()


def test_ledger_and_records_commit_together_and_rebuild(location):
    url, schema = location
    store = PartyStore(url, with_ledger=True, schema=schema)
    ledger = store.load_ledger()
    ledger.create_accounts([Account(1, 156, 1201), Account(2, 156, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)], 1000)
    ledger.create_transfers([Transfer(10, 1, 2, 5000, 156, 1)], 1000)
    ledger.create_transfers([Transfer(11, 2, 1, 1200, 156, 10, TransferFlags.PENDING, timeout_s=60)], 2000)
    store.commit([LedgerWrite(ledger.take_changes()), Put("auths", "a", {"hold_id": 11})])
    store.close()
    again = PartyStore(url, with_ledger=True, schema=schema)
    rebuilt = again.load_ledger()
    a = rebuilt.account(2)
    assert (a.credits_posted, a.debits_pending) == (5000, 1200)
    assert rebuilt.next_expiry_ms() == 2000 + 60_000
    assert again.load()["auths"]["a"] == {"hold_id": 11}
    again.close()


def test_a_failed_commit_leaves_nothing_half_written(tmp_path):
    store = PartyStore(str(tmp_path / "p.sqlite"), with_ledger=True)

    class Boom:
        pass

    bad = LedgerWrite(Boom())  # the ledger store cannot write this
    with pytest.raises(AttributeError):  # it has no rows to write
        store.commit([Put("journal", "1", {"x": 1}), bad])
    assert store.load() == {}
    store.close()
