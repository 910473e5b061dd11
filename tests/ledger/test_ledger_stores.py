"""Both stores, one suite: migrations, write in the caller's transaction, reload equals memory."""

from __future__ import annotations

import random
import sqlite3

import pytest

from posnet.ledger import (
    SCHEMA_VERSION,
    U128_MAX,
    Account,
    AccountFlags,
    CreateTransferResult as R,
    Ledger,
    LedgerEngine,
    SqliteLedgerStore,
    Transfer,
    TransferFlags as F,
    open_store,
)

NOW = 1_795_485_600_000
BIG = U128_MAX - 1


def state(led: Ledger):
    """Everything observable about a ledger."""
    transfers = led.transfers()
    return {
        "accounts": led.accounts(),
        "transfers": transfers,
        "status": {t.id: led.pending_status(t.id) for t in transfers if t.flags & F.PENDING},
        "next_expiry": led.next_expiry_ms(),
        "history": {a.id: [t.id for t in led.account_history(a.id)] for a in led.accounts()},
        "lifecycles": {t.user_data: [x.id for x in led.transfers_by_user_data(t.user_data)] for t in transfers},
    }


class Workload:
    """A seeded random mix of everything the ledger does, over ~40 accounts."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.now = NOW
        self.next_id = 1
        self.pendings: list[int] = []

    def new_id(self) -> int:
        self.next_id += 1
        # Some ids use the whole 128 bits.
        return self.next_id if self.rng.random() < 0.8 else (self.rng.getrandbits(127) << 1) | 1

    def setup(self, led: Ledger) -> None:
        accounts = [Account(BIG, 156, 1501, user_data=BIG)]
        for i in range(1, 40):
            flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if i % 3 else AccountFlags.NONE
            accounts.append(Account(i, 156, 1101 if i % 3 else 1201, flags, user_data=i * 7))
        assert set(led.create_accounts(accounts, self.now)) == {"ok"}
        funding = [Transfer(self.new_id(), BIG, i, 10_000, 156, 1) for i in range(1, 40)]
        assert set(led.create_transfers(funding, self.now)) == {R.OK}

    def step(self, led: Ledger) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.1:
            self.now += rng.choice([100, 1_000, 5_000, 20_000])
            led.expire_pending(self.now)
            return
        batch = []
        for _ in range(rng.randint(1, 8)):
            a, b = rng.sample(range(1, 40), 2)
            r = rng.random()
            ud = rng.choice([0, rng.getrandbits(128) - 1 or 1, 5])
            if r < 0.3:
                tid = self.new_id()
                batch.append(Transfer(tid, a, b, rng.randint(1, 3_000), 156, 10, F.PENDING, user_data=ud,
                                      timeout_s=rng.choice([0, 1, 10, 30])))
                self.pendings.append(tid)
            elif r < 0.5 and self.pendings:
                pid = rng.choice(self.pendings)
                flags = F.POST_PENDING if rng.random() < 0.7 else F.VOID_PENDING
                amount = rng.choice([0, 0, rng.randint(1, 3_000)]) if flags == F.POST_PENDING else 0
                batch.append(Transfer(self.new_id(), 0, 0, amount, 0, 0, flags, pending_id=pid, user_data=ud))
            elif r < 0.6:
                batch.append(Transfer(self.new_id(), a, b, rng.randint(0, 5_000), 156, 20, F.BALANCING_DEBIT))
            elif r < 0.65 and led.transfer_count():
                # a retry of something earlier
                batch.append(rng.choice(led.transfers()[-50:]))
            else:
                batch.append(Transfer(self.new_id(), a, b, rng.randint(1, 2_000), 156, 11, user_data=ud))
            if rng.random() < 0.2:
                last = batch[-1]
                batch[-1] = Transfer(last.id, last.debit_account_id, last.credit_account_id, last.amount,
                                     last.ledger, last.code, last.flags | F.LINKED, last.pending_id,
                                     last.user_data, last.timeout_s)
        if batch[-1].flags & F.LINKED and self.rng.random() < 0.7:
            batch.append(Transfer(self.new_id(), 1, 2, 1, 156, 11))
        led.create_transfers(batch, self.now)


def test_migrate_is_idempotent_and_versioned(store_factory):
    conn, store = store_factory.open(migrate=False)
    assert store.schema_version() == 0
    store.migrate()
    store.migrate()
    assert store.schema_version() == SCHEMA_VERSION
    rows = conn.execute("SELECT version, description FROM ledger_schema_version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    conn.commit()


def test_a_newer_schema_is_refused(store_factory):
    conn, store = store_factory.open()
    conn.execute("INSERT INTO ledger_schema_version (version, description) VALUES (999, 'from the future')")
    conn.commit()
    with pytest.raises(RuntimeError, match="version 999"):
        store.migrate()


def test_reload_equals_memory_and_carries_on_the_same(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    w = Workload(seed=7)
    w.setup(led)
    for i in range(300):
        w.step(led)
        if i % 7 == 0:
            store.write(led.take_changes())
            conn.commit()
    store.write(led.take_changes())
    conn.commit()
    assert led.pending_status  # sanity
    conn2, store2 = store_factory.open()
    loaded = store2.load()
    assert state(loaded) == state(led)
    # The reloaded ledger behaves exactly as the original from here on.
    w1 = Workload(seed=99)
    w2 = Workload(seed=99)
    w1.now = w2.now = w.now
    w1.next_id = w2.next_id = w.next_id
    w1.pendings = list(w.pendings)
    w2.pendings = list(w.pendings)
    for _ in range(100):
        w1.step(led)
        w2.step(loaded)
    assert state(loaded) == state(led)
    store2.write(loaded.take_changes())
    conn2.commit()
    conn3, store3 = store_factory.open()
    assert state(store3.load()) == state(led)


def test_write_does_not_commit(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    store.write(led.take_changes())
    conn.commit()
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1)], NOW)
    store.write(led.take_changes())
    conn.rollback()
    loaded = store.load()
    assert loaded.transfer(10) is None
    assert loaded.account(1).debits_posted == 0


def test_write_joins_the_callers_transaction(store_factory):
    conn, store = store_factory.open()
    conn.execute("CREATE TABLE party_records (k TEXT PRIMARY KEY, v TEXT)")
    conn.commit()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1)], NOW)
    ph = "?" if store_factory.kind == "sqlite" else "%s"
    conn.execute(f"INSERT INTO party_records (k, v) VALUES ({ph}, {ph})", ("approval", "00"))
    store.write(led.take_changes())
    conn.commit()
    other, other_store = store_factory.open()
    assert other.execute("SELECT v FROM party_records").fetchall() == [("00",)]
    assert other_store.load().transfer(10) is not None
    # And a rollback takes both away.
    led.create_transfers([Transfer(11, 1, 2, 5, 156, 1)], NOW)
    conn.execute(f"INSERT INTO party_records (k, v) VALUES ({ph}, {ph})", ("approval-2", "00"))
    store.write(led.take_changes())
    conn.rollback()
    other.rollback()
    assert other.execute("SELECT count(*) FROM party_records").fetchone()[0] == 1
    assert other_store.load().transfer(11) is None
    other.commit()


def test_several_change_sets_in_one_transaction(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    first = led.take_changes()
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1, F.PENDING, timeout_s=1)], NOW)
    second = led.take_changes()
    led.expire_pending(NOW + 1_000)
    third = led.take_changes()
    for changes in (first, second, third):
        store.write(changes)
    conn.commit()
    assert state(store.load()) == state(led)


def test_u128_ids_round_trip(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    hi = U128_MAX - 1
    led.create_accounts([Account(hi, 156, 1, user_data=hi), Account(hi - 1, 156, 1, user_data=1 << 64)], NOW)
    led.create_transfers([Transfer(hi, hi, hi - 1, 5, 156, 1, F.PENDING, user_data=hi, timeout_s=1)], NOW)
    led.create_transfers([Transfer(hi - 2, 0, 0, 0, 0, 0, F.POST_PENDING, pending_id=hi)], NOW)
    store.write(led.take_changes())
    conn.commit()
    loaded = store.load()
    assert state(loaded) == state(led)
    assert loaded.transfer(hi - 2).pending_id == hi
    assert loaded.account(hi).user_data == hi


def test_expiries_survive_a_reload(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1, F.PENDING, timeout_s=1),
                          Transfer(11, 1, 2, 5, 156, 1, F.PENDING, timeout_s=100)], NOW)
    led.expire_pending(NOW + 1_000)
    store.write(led.take_changes())
    conn.commit()
    loaded = store.load()
    assert loaded.pending_status(10) == "expired"
    assert loaded.next_expiry_ms() == NOW + 100_000
    assert loaded.expire_pending(NOW + 1_000) == []
    assert loaded.expire_pending(NOW + 100_000) == [11]
    assert loaded.create_transfers([Transfer(12, 0, 0, 0, 0, 0, F.POST_PENDING, pending_id=10)], NOW) == [
        R.PENDING_TRANSFER_EXPIRED
    ]


def test_expiries_stored_by_the_first_schema_are_kept_by_the_migration_and_numbered_on(store_factory):
    from posnet.ledger import LedgerChanges
    from posnet.ledger.store import _VERSION_TABLE, MIGRATIONS, _statements

    conn, store = store_factory.open(migrate=False)
    conn.execute(_VERSION_TABLE)
    for sql in _statements(store.dialect, MIGRATIONS[0][2]):  # the schema as version 1 left it
        conn.execute(sql)
    conn.execute("INSERT INTO ledger_schema_version (version, description) VALUES (1, 'version 1')")
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    led.create_transfers([Transfer(i, 1, 2, 5, 156, 1, F.PENDING, timeout_s=1 if i < 12 else 100) for i in (10, 11, 12)], NOW)
    assert led.expire_pending(NOW + 1_000) == [10, 11]
    changes = led.take_changes()
    store.write(LedgerChanges(changes.accounts, changes.transfers, changes.first_transfer_seq))
    ph = "?" if store.dialect == "sqlite" else "%s"
    for pid, ts in reversed(changes.expiries):  # keyed by pending id then, in no order
        conn.execute(f"INSERT INTO ledger_expiries (pending_id, timestamp_ms) VALUES ({ph}, {ph})", (str(pid), ts))
    conn.commit()

    store.migrate()
    loaded = store.load()
    assert [loaded.pending_status(i) for i in (10, 11, 12)] == ["expired", "expired", "pending"]
    assert loaded.expire_pending(NOW + 100_000) == [12]
    more = loaded.take_changes()
    assert more.first_expiry_seq == 3, "numbered after the two the migration numbered"
    store.write(more)
    conn.commit()
    assert store.load().pending_status(12) == "expired"


def test_a_change_set_written_twice_is_refused(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1)], NOW)
    changes = led.take_changes()
    store.write(changes)
    conn.commit()
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.write(changes)
    conn.rollback()
    led.create_transfers([Transfer(11, 1, 2, 5, 156, 1, F.PENDING, timeout_s=1)], NOW)
    store.write(led.take_changes())
    conn.commit()
    led.expire_pending(NOW + 1_000)
    expiry = led.take_changes()
    store.write(expiry)
    conn.commit()
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.write(expiry)  # an expiry too: its number is taken
    conn.rollback()


def test_load_finds_a_missing_change_set(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    store.write(led.take_changes())
    led.create_transfers([Transfer(10, 1, 2, 5, 156, 1)], NOW)
    led.take_changes()  # lost
    led.create_transfers([Transfer(11, 1, 2, 5, 156, 1)], NOW)
    store.write(led.take_changes())
    conn.commit()
    with pytest.raises(AssertionError, match="a change set is missing"):
        store.load()


def test_load_checks_the_books(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS), Account(2, 156, 1)], NOW)
    led.create_transfers([Transfer(10, 2, 1, 5, 156, 1), Transfer(11, 1, 2, 5, 156, 1)], NOW)
    store.write(led.take_changes())
    conn.commit()
    conn.execute("UPDATE ledger_transfers SET amount = 6 WHERE seq = 2")
    conn.commit()
    with pytest.raises(AssertionError, match="debits exceed credits"):
        store.load()
    assert store.load(verify=False).account(1).debits_posted == 6


def test_balances_view_agrees_with_the_ledger(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    w = Workload(seed=3)
    w.setup(led)
    for _ in range(150):
        w.step(led)
    store.write(led.take_changes())
    conn.commit()
    rows = conn.execute(
        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted FROM ledger_balances"
    ).fetchall()
    conn.commit()
    got = {int(r[0]): tuple(int(x) for x in r[1:]) for r in rows}
    want = {a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) for a in led.accounts()}
    assert got == want
    assert any(v[0] for v in want.values()), "the workload leaves some holds standing"


def test_open_store_by_url_and_engine(store_factory):
    url = store_factory.url
    with LedgerEngine.open(url) as eng:
        assert eng.submit_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW) == ["ok", "ok"]
        assert eng.submit_transfers([Transfer(10, 1, 2, 5, 156, 1, F.PENDING, timeout_s=5)], NOW) == [R.OK]
        eng.create_transfers([Transfer(11, 2, 1, 1, 156, 1)], NOW)  # staged, committed by close
        assert eng.submit_expiry(NOW + 5_000) == [10]
    conn, store = open_store(url)
    try:
        led = store.load()
        assert led.pending_status(10) == "expired"
        assert led.transfer(11) is not None
    finally:
        conn.close()


def test_open_store_rejects_unknown_urls(tmp_path):
    with pytest.raises(ValueError):
        open_store("mysql://x")
    with pytest.raises(ValueError):
        open_store(f"sqlite:///{tmp_path}/x.db?synchronous=sometimes")
    conn, store = open_store(f"sqlite:///{tmp_path}/x.db?synchronous=normal")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    conn.close()


def test_engine_reloads_when_a_write_fails(tmp_path):
    url = f"sqlite:///{tmp_path}/e.db"
    eng = LedgerEngine.open(url)
    eng.submit_accounts([Account(1, 156, 1), Account(2, 156, 1)], NOW)
    eng.conn.execute(
        "CREATE TRIGGER no_666 BEFORE INSERT ON ledger_transfers WHEN NEW.amount = 666"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    eng.conn.commit()
    eng.submit_transfers([Transfer(10, 1, 2, 5, 156, 1)], NOW)
    with pytest.raises(sqlite3.DatabaseError, match="refused"):
        eng.submit_transfers([Transfer(11, 1, 2, 666, 156, 1)], NOW)
    assert eng.ledger.transfer(11) is None, "memory is not left ahead of the disk"
    assert eng.ledger.transfer(10) is not None
    assert eng.submit_transfers([Transfer(12, 1, 2, 7, 156, 1)], NOW) == [R.OK]
    eng.close()


def test_a_big_batch(store_factory):
    conn, store = store_factory.open()
    led = Ledger()
    led.create_accounts([Account(i, 156, 1) for i in range(1, 1_001)], NOW)
    led.create_transfers([Transfer(10_000 + i, 1 + i % 1_000, 1 + (i + 1) % 1_000, 1 + i, 156, 1) for i in range(5_000)],
                         NOW)
    store.write(led.take_changes())
    conn.commit()
    led.create_transfers([Transfer(20_000 + i, 1 + i % 1_000, 1 + (i + 7) % 1_000, 1, 156, 1) for i in range(5_000)],
                         NOW)
    changes = led.take_changes()
    store.write(changes)
    conn.commit()
    assert state(store.load()) == state(led)


def test_sqlite_write_opens_a_transaction_in_autocommit_mode(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    store = SqliteLedgerStore(conn)
    store.migrate()
    led = Ledger()
    led.create_accounts([Account(1, 156, 1)], NOW)
    store.write(led.take_changes())
    assert conn.in_transaction, "the caller commits"
    conn.rollback()
    assert store.load().account(1) is None
    conn.close()
