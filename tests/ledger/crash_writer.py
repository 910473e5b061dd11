"""Child process of test_ledger_crash: writes numbered batches to a SQLite ledger until killed.

Usage: python crash_writer.py DB_PATH LAST_BATCH

Each batch is one transaction. It prints "writing b" just before writing batch
b and "committed b" after its commit. On start
it loads the ledger and carries on after the last batch it finds.
"""

from __future__ import annotations

import sys

from posnet.ledger import Account, AccountFlags, CreateTransferResult, Ledger, Transfer, TransferFlags, open_store

NOW = 1_795_485_600_000
FUNDING = 1
CARDS = list(range(2, 22))  # DEBITS_MUST_NOT_EXCEED_CREDITS
SETTLE = 30
SINGLES = 360
HOLDS = 20
STRIDE = 1_000_000


def accounts() -> list[Account]:
    return (
        [Account(FUNDING, 156, 1501), Account(SETTLE, 156, 1201)]
        + [Account(c, 156, 1101, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for c in CARDS]
    )


def batch(b: int) -> list[Transfer]:
    """Batch b (1, 2, ...): funding moves, new holds, and partial posts of the previous batch's holds."""
    out = [
        Transfer(b * STRIDE + i, FUNDING, CARDS[i % len(CARDS)], 1 + i % 7, 156, 1, user_data=b)
        for i in range(SINGLES)
    ]
    out += [
        Transfer(b * STRIDE + 500 + k, CARDS[k], SETTLE, 3, 156, 10, TransferFlags.PENDING, user_data=b,
                 timeout_s=3_600)
        for k in range(HOLDS)
    ]
    if b > 1:
        out += [
            Transfer(b * STRIDE + 700 + k, 0, 0, 2, 0, 0, TransferFlags.POST_PENDING,
                     pending_id=(b - 1) * STRIDE + 500 + k)
            for k in range(HOLDS)
        ]
    return out


def transfers_after(n: int) -> int:
    """How many transfers n whole batches make."""
    return 0 if n == 0 else n * (SINGLES + HOLDS) + (n - 1) * HOLDS


def now_of(b: int) -> int:
    return NOW + b * 1_000


def replay(n: int) -> Ledger:
    led = Ledger()
    led.create_accounts(accounts(), NOW)
    for b in range(1, n + 1):
        assert set(led.create_transfers(batch(b), now_of(b))) == {CreateTransferResult.OK}
    return led


def main() -> None:
    path, last = sys.argv[1], int(sys.argv[2])
    conn, store = open_store(f"sqlite:///{path}")
    led = store.load()
    if led.account_count() == 0:
        led.create_accounts(accounts(), NOW)
        store.write(led.take_changes())
        conn.commit()
    b = max((t.id // STRIDE for t in led.transfers()), default=0) + 1
    while b <= last:
        results = led.create_transfers(batch(b), now_of(b))
        assert set(results) == {CreateTransferResult.OK}, results
        print(f"writing {b}", flush=True)
        store.write(led.take_changes())
        conn.commit()
        print(f"committed {b}", flush=True)
        b += 1


if __name__ == "__main__":
    main()
