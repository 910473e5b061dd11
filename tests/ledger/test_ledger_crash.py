"""Crash: a writer killed with SIGKILL mid-run leaves exactly a committed prefix of its batches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import crash_writer as W
import pytest

from posnet.ledger import open_store

WRITER = Path(__file__).with_name("crash_writer.py")


def _state(led):
    return (led.accounts(), led.transfers(),
            {t.id: led.pending_status(t.id) for t in led.transfers()}, led.next_expiry_ms())


@pytest.mark.timeout(180)
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_leaves_a_committed_prefix(tmp_path):
    db = tmp_path / "crash.db"
    acked = 0
    env = dict(os.environ)
    for round_no in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), "100000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        target = acked + 3 + 2 * round_no
        try:
            for line in proc.stdout:
                what, b = line.split()
                if what == "committed":
                    acked = int(b)
                elif acked >= target:
                    # It has just started writing batch acked + 1: kill it inside that transaction.
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            else:
                pytest.fail(f"the writer stopped early: {proc.stderr.read()}")
        finally:
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

        conn, store = open_store(f"sqlite:///{db}")
        try:
            led = store.load()  # runs check_invariants
            count = led.transfer_count()
            whole = [n for n in range(acked + 3) if W.transfers_after(n) == count]
            assert whole, f"{count} transfers is not a whole number of batches: something was half-applied"
            (n,) = whole
            assert n >= acked, f"batch {acked} was acknowledged as committed but only {n} survived"
            assert n <= acked + 1
            assert _state(led) == _state(W.replay(n)), "the books differ from a replay of the committed batches"
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        acked = n
