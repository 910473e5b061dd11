"""A deliberately simple reference model of the ledger, for the property tests.

Written from the rules in docs/ledger.md, not from the implementation: plain
dicts, a deep copy of the whole state to roll back a failed chain, and a full
scan of all pending transfers to find expiries.
"""

from __future__ import annotations

import copy

MAX = (1 << 63) - 1
U128_MAX = (1 << 128) - 1

# flag bits (spelled out here on purpose rather than imported)
A_LINKED, A_DMNEC, A_CMNED, A_CLOSED = 1, 2, 4, 8
T_LINKED, T_PENDING, T_POST, T_VOID, T_BAL_D, T_BAL_C, T_CLOSE_D, T_CLOSE_C = 1, 2, 4, 8, 16, 32, 64, 128


class Model:
    def __init__(self) -> None:
        self.s = {"accounts": {}, "transfers": {}, "order": [], "status": {}, "now": 0}

    # accounts: id -> dict(ledger, code, flags, user_data, dp, dpo, cp, cpo, ts)
    # transfers: id -> dict(fields as Transfer)

    def create_accounts(self, batch, now):
        self.s["now"] = max(self.s["now"], now)
        return self._batch(batch, self._create_account, A_LINKED)

    def create_transfers(self, batch, now):
        self.s["now"] = max(self.s["now"], now)
        return self._batch(batch, self._create_transfer, T_LINKED)

    def _batch(self, batch, one, linked_bit):
        results = []
        i = 0
        n = len(batch)
        while i < n:
            # find the chain that starts here
            j = i
            while j < n - 1 and batch[j]["flags"] & linked_bit:
                j += 1
            chain = batch[i : j + 1]
            if len(chain) == 1 and not chain[0]["flags"] & linked_bit:
                results.append(one(chain[0]))
                i = j + 1
                continue
            saved = copy.deepcopy(self.s)
            now = self.s["now"]
            out = []
            failed_at = None
            for k, ev in enumerate(chain):
                if k == len(chain) - 1 and ev["flags"] & linked_bit:
                    r = "linked_event_chain_open"
                else:
                    r = one(ev)
                if r != "ok":
                    failed_at = k
                    out.append(r)
                    break
                out.append(r)
            if failed_at is not None:
                self.s = saved
                self.s["now"] = now
                res = ["linked_event_failed"] * len(chain)
                res[failed_at] = out[failed_at]
                # An open chain is reported on its last event whatever happened before.
                if chain[-1]["flags"] & linked_bit:
                    res[-1] = "linked_event_chain_open"
                results.extend(res)
            else:
                results.extend(out)
            i = j + 1
        return results

    def _create_account(self, a):
        accts = self.s["accounts"]
        if a["id"] == 0:
            return "id_must_not_be_zero"
        if a["id"] == U128_MAX:
            return "id_must_not_be_int_max"
        if a["id"] in accts:
            e = accts[a["id"]]
            mask = ~(A_LINKED | A_CLOSED)
            same = (
                (a["flags"] & mask) == (e["created_flags"] & mask)
                and a["ledger"] == e["ledger"]
                and a["code"] == e["code"]
                and a["user_data"] == e["user_data"]
            )
            return "exists" if same else "exists_with_different_fields"
        if a["flags"] & A_DMNEC and a["flags"] & A_CMNED:
            return "flags_are_mutually_exclusive"
        if a["ledger"] == 0:
            return "ledger_must_not_be_zero"
        if a["code"] == 0:
            return "code_must_not_be_zero"
        accts[a["id"]] = dict(
            ledger=a["ledger"],
            code=a["code"],
            flags=a["flags"],
            created_flags=a["flags"],
            user_data=a["user_data"],
            dp=0,
            dpo=0,
            cp=0,
            cpo=0,
            ts=self.s["now"],
        )
        return "ok"

    def _create_transfer(self, t):
        T = self.s["transfers"]
        A = self.s["accounts"]
        now = self.s["now"]
        f = t["flags"]
        if t["id"] == 0:
            return "id_must_not_be_zero"
        if t["id"] == U128_MAX:
            return "id_must_not_be_int_max"
        if t["id"] in T:
            return self._exists(t, T[t["id"]])
        if f & (T_POST | T_VOID):
            return self._post_or_void(t)
        if t["debit_account_id"] == 0:
            return "debit_account_id_must_not_be_zero"
        if t["debit_account_id"] == U128_MAX:
            return "debit_account_id_must_not_be_int_max"
        if t["credit_account_id"] == 0:
            return "credit_account_id_must_not_be_zero"
        if t["credit_account_id"] == U128_MAX:
            return "credit_account_id_must_not_be_int_max"
        if t["debit_account_id"] == t["credit_account_id"]:
            return "accounts_must_be_different"
        if t["pending_id"]:
            return "pending_id_must_be_zero"
        if not f & T_PENDING:
            if t["timeout_s"]:
                return "timeout_reserved_for_pending_transfer"
            if f & (T_CLOSE_D | T_CLOSE_C):
                return "closing_transfer_must_be_pending"
        if t["ledger"] == 0:
            return "ledger_must_not_be_zero"
        if t["code"] == 0:
            return "code_must_not_be_zero"
        if t["amount"] == 0 and not f & (T_BAL_D | T_BAL_C | T_CLOSE_D | T_CLOSE_C):
            return "amount_must_not_be_zero"
        dr = A.get(t["debit_account_id"])
        if dr is None:
            return "debit_account_not_found"
        cr = A.get(t["credit_account_id"])
        if cr is None:
            return "credit_account_not_found"
        if dr["ledger"] != cr["ledger"]:
            return "accounts_must_have_the_same_ledger"
        if t["ledger"] != dr["ledger"]:
            return "transfer_must_have_the_same_ledger_as_accounts"
        if dr["flags"] & A_CLOSED:
            return "debit_account_already_closed"
        if cr["flags"] & A_CLOSED:
            return "credit_account_already_closed"
        amount = t["amount"]
        if f & (T_BAL_D | T_BAL_C):
            if amount == 0:
                amount = MAX
            if f & T_BAL_D:
                amount = min(amount, max(0, dr["cpo"] - dr["dp"] - dr["dpo"]))
                if amount == 0:
                    return "exceeds_credits"
            if f & T_BAL_C:
                amount = min(amount, max(0, cr["dpo"] - cr["cp"] - cr["cpo"]))
                if amount == 0:
                    return "exceeds_debits"
        if f & T_PENDING:
            if dr["dp"] + amount > MAX:
                return "overflows_debits_pending"
            if cr["cp"] + amount > MAX:
                return "overflows_credits_pending"
        else:
            if dr["dpo"] + amount > MAX:
                return "overflows_debits_posted"
            if cr["cpo"] + amount > MAX:
                return "overflows_credits_posted"
        if dr["dp"] + dr["dpo"] + amount > MAX:
            return "overflows_debits"
        if cr["cp"] + cr["cpo"] + amount > MAX:
            return "overflows_credits"
        if dr["flags"] & A_DMNEC and dr["dp"] + dr["dpo"] + amount > dr["cpo"]:
            return "exceeds_credits"
        if cr["flags"] & A_CMNED and cr["cp"] + cr["cpo"] + amount > cr["dpo"]:
            return "exceeds_debits"
        if f & T_PENDING:
            dr["dp"] += amount
            cr["cp"] += amount
            if f & T_CLOSE_D:
                dr["flags"] |= A_CLOSED
            if f & T_CLOSE_C:
                cr["flags"] |= A_CLOSED
            self.s["status"][t["id"]] = "pending"
        else:
            dr["dpo"] += amount
            cr["cpo"] += amount
        stored = dict(t, amount=amount, timestamp_ms=now)
        T[t["id"]] = stored
        self.s["order"].append(t["id"])
        return "ok"

    def _post_or_void(self, t):
        T = self.s["transfers"]
        A = self.s["accounts"]
        f = t["flags"]
        post = bool(f & T_POST)
        if f & T_POST and f & T_VOID:
            return "flags_are_mutually_exclusive"
        if f & (T_PENDING | T_BAL_D | T_BAL_C | T_CLOSE_D | T_CLOSE_C):
            return "flags_are_mutually_exclusive"
        if t["pending_id"] == 0:
            return "pending_id_must_not_be_zero"
        if t["pending_id"] == U128_MAX:
            return "pending_id_must_not_be_int_max"
        if t["pending_id"] == t["id"]:
            return "pending_id_must_be_different"
        if t["timeout_s"]:
            return "timeout_reserved_for_pending_transfer"
        p = T.get(t["pending_id"])
        if p is None:
            return "pending_transfer_not_found"
        if not p["flags"] & T_PENDING:
            return "pending_transfer_not_pending"
        for field, code in (
            ("debit_account_id", "pending_transfer_has_different_debit_account_id"),
            ("credit_account_id", "pending_transfer_has_different_credit_account_id"),
            ("ledger", "pending_transfer_has_different_ledger"),
            ("code", "pending_transfer_has_different_code"),
        ):
            if t[field] and t[field] != p[field]:
                return code
        amount = t["amount"] if t["amount"] else p["amount"]
        if amount > p["amount"]:
            return "exceeds_pending_transfer_amount"
        if not post and amount != p["amount"]:
            return "pending_transfer_has_different_amount"
        st = self.s["status"][p["id"]]
        if st == "posted":
            return "pending_transfer_already_posted"
        if st == "voided":
            return "pending_transfer_already_voided"
        if st == "expired":
            return "pending_transfer_expired"
        if p["timeout_s"] and p["timestamp_ms"] + 1000 * p["timeout_s"] <= self.s["now"]:
            return "pending_transfer_expired"
        dr = A[p["debit_account_id"]]
        cr = A[p["credit_account_id"]]
        if post and dr["flags"] & A_CLOSED and not p["flags"] & T_CLOSE_D:
            return "debit_account_already_closed"
        if post and cr["flags"] & A_CLOSED and not p["flags"] & T_CLOSE_C:
            return "credit_account_already_closed"
        dr["dp"] -= p["amount"]
        cr["cp"] -= p["amount"]
        if post:
            dr["dpo"] += amount
            cr["cpo"] += amount
            self.s["status"][p["id"]] = "posted"
        else:
            self._reopen(p)
            self.s["status"][p["id"]] = "voided"
        stored = dict(
            t,
            debit_account_id=p["debit_account_id"],
            credit_account_id=p["credit_account_id"],
            ledger=p["ledger"],
            code=p["code"],
            amount=amount,
            user_data=t["user_data"] or p["user_data"],
            timestamp_ms=self.s["now"],
        )
        T[t["id"]] = stored
        self.s["order"].append(t["id"])
        return "ok"

    def _reopen(self, p):
        A = self.s["accounts"]
        if p["flags"] & T_CLOSE_D:
            A[p["debit_account_id"]]["flags"] &= ~A_CLOSED
        if p["flags"] & T_CLOSE_C:
            A[p["credit_account_id"]]["flags"] &= ~A_CLOSED

    def _exists(self, t, e):
        f = t["flags"] & ~T_LINKED
        if f != e["flags"] & ~T_LINKED:
            return "exists_with_different_fields"
        if t["pending_id"] != e["pending_id"] or t["timeout_s"] != e["timeout_s"]:
            return "exists_with_different_fields"
        if f & (T_POST | T_VOID):
            p = self.s["transfers"][e["pending_id"]]
            for field in ("debit_account_id", "credit_account_id", "ledger", "code"):
                if t[field] and t[field] != e[field]:
                    return "exists_with_different_fields"
            if (t["amount"] or p["amount"]) != e["amount"]:
                return "exists_with_different_fields"
            if (t["user_data"] or p["user_data"]) != e["user_data"]:
                return "exists_with_different_fields"
            return "exists"
        for field in ("debit_account_id", "credit_account_id", "ledger", "code", "user_data"):
            if t[field] != e[field]:
                return "exists_with_different_fields"
        if f & (T_BAL_D | T_BAL_C):
            if t["amount"] != 0 and t["amount"] < e["amount"]:
                return "exists_with_different_fields"
        elif t["amount"] != e["amount"]:
            return "exists_with_different_fields"
        return "exists"

    def expire(self, now):
        self.s["now"] = max(self.s["now"], now)
        now = self.s["now"]
        T = self.s["transfers"]
        A = self.s["accounts"]
        due = []
        for pos, tid in enumerate(self.s["order"]):
            t = T[tid]
            if self.s["status"].get(tid) == "pending" and t["timeout_s"]:
                exp = t["timestamp_ms"] + 1000 * t["timeout_s"]
                if exp <= now:
                    due.append((exp, pos, tid))
        out = []
        for _exp, _pos, tid in sorted(due):
            p = T[tid]
            A[p["debit_account_id"]]["dp"] -= p["amount"]
            A[p["credit_account_id"]]["cp"] -= p["amount"]
            self._reopen(p)
            self.s["status"][tid] = "expired"
            out.append(tid)
        return out
