"""Manual credit (手工划款): an operator at the acquirer pays a merchant, or returns money to a
cardholder through the scheme, by hand — and a second operator approves it (maker-checker).

Three operator commands reach the acquirer's core (docs/manual-credit.md):

- ``manual-credit-request`` {operator, target "merchant" (merchant_id) or "cardholder" (pan,
  optionally original_rrn and debit_merchant_id), amount_fen, reason}: a request, pending, no
  money moves;
- ``manual-credit-approve`` {id, operator}: a second operator — never the maker — approves it and
  the money moves, once;
- ``manual-credit-reject`` {id, operator, reason}: it is closed, no money moves.

Every attempt the acquirer hears is written to its audit trail, refused ones too: the trail is
append-only and numbered without gaps. Each command answers with one ``Trace`` whose event is
``TRACE_EVENT`` and whose ``outcome`` is ``requested``, ``approved``, ``rejected`` or ``refused``
(with an ``error``): that is how the operator's command line hears the answer.

Money, in the acquirer's books (docs/ledger.md):

- a merchant payment: Dr funding → Cr the merchant's account;
- a return to a cardholder: Dr the merchant named to bear it (or funding) → Cr scheme settlement
  (the acquirer now owes the scheme this), and a presentment of kind ``credit`` in the same
  commit, which the scheme clears to the issuer and the issuer credits to the card.
"""

from __future__ import annotations

from typing import Any, Iterable

from .. import timefmt
from ..effects import Command, Effect, Put, Trace, mask_pan
from ..ledger import CreateTransferResult, Ledger, Transfer, chart
from ..ledger.ids import derive_id
from .settlement import FUNDING_ACCOUNT, SCHEME_SETTLEMENT_ACCOUNT

REQUEST = "manual-credit-request"
APPROVE = "manual-credit-approve"
REJECT = "manual-credit-reject"
COMMANDS = (REQUEST, APPROVE, REJECT)

REQUESTS_TABLE = "manual_credits"  # by request id: the request and what became of it
AUDIT_TABLE = "audit"  # by sequence number (zero-padded): one row per attempt, never rewritten
PRESENTMENTS_TABLE = "presentments"
TRACE_EVENT = "manual credit"

ID_PREFIX = "MC"
ID_DIGITS = 6  # MC000001; more digits once past 999,999
LIFECYCLE_DIGITS = 10  # the presentment's reference: MC + 10 digits = 12 characters, like F37
AUDIT_KEY_DIGITS = 10
OPERATOR_MAX_CHARS = 32
REASON_MAX_CHARS = 200
ATTEMPT_MAX_CHARS = REASON_MAX_CHARS  # what the audit keeps of each argument of a refused command
AMOUNT_MAX_FEN = 999_999_999_999  # what F4 (n12) can carry when the credit is cleared
PAN_MIN_DIGITS, PAN_MAX_DIGITS = 13, 19


class Refused(Exception):
    """A command the rules refuse; the message says why, for the operator."""


class ManualCredits:
    """The acquirer's manual credits and its audit trail: hot state rebuilt from the store."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.audit_seq = 0  # the last audit row written
        self.last_no = 0  # the last request number given

    def restore(self, tables: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.requests = {k: dict(v) for k, v in tables.get(REQUESTS_TABLE, {}).items()}
        self.last_no = max((int(k[len(ID_PREFIX):]) for k in self.requests), default=0)
        self.audit_seq = max((int(k) for k in tables.get(AUDIT_TABLE, {})), default=0)

    def handle(self, cmd: Command, config: Any, txns: dict[str, dict[str, Any]], ledger: Ledger, now_ms: int) -> list[Effect]:
        """One operator command; ``config`` is the AcquirerConfig (operators, merchants)."""
        args = cmd.args
        operator = str(args.get("operator") or "")
        request_id = str(args.get("id") or "")
        try:
            _check_operator(operator, config.operators)
            if cmd.name == REQUEST:
                return self._request(args, operator, config, txns, now_ms)
            if cmd.name == APPROVE:
                return self._approve(request_id, operator, config, ledger, now_ms)
            return self._reject(request_id, operator, str(args.get("reason") or ""), now_ms)
        except Refused as e:
            action = cmd.name[len("manual-credit-"):] + "-refused"
            detail = {"error": str(e), **_attempted(args)}
            request_id = request_id[:ATTEMPT_MAX_CHARS]
            return [self._audit(now_ms, operator[:OPERATOR_MAX_CHARS], action, request_id, detail),
                    Trace(request_id, TRACE_EVENT, {"outcome": "refused", "id": request_id, "error": str(e)})]

    # -- the three commands -----------------------------------------------------

    def _request(self, args: dict[str, Any], operator: str, config: Any, txns: dict[str, dict[str, Any]], now_ms: int) -> list[Effect]:
        amount_fen = args.get("amount_fen")
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or not 0 < amount_fen <= AMOUNT_MAX_FEN:
            raise Refused(f"the amount must be more than 0 and at most {AMOUNT_MAX_FEN} fen, not {amount_fen!r}")
        reason = _reason(args.get("reason"))
        target = args.get("target")
        record: dict[str, Any] = {"target": target, "amount_fen": amount_fen, "currency": "156", "reason": reason}
        if target == "merchant":
            record["merchant_id"] = _merchant(config, args.get("merchant_id")).merchant_id
        elif target == "cardholder":
            record.update(self._cardholder(args, amount_fen, config, txns))
        else:
            raise Refused(f"the target is 'merchant' or 'cardholder', not {target!r}")
        self.last_no += 1
        request_id = f"{ID_PREFIX}{self.last_no:0{ID_DIGITS}d}"
        record.update(id=request_id, status="pending", maker=operator, requested_ms=now_ms,
                      checker="", decided_ms=0, decision_reason="")
        self.requests[request_id] = record
        return [
            Put(REQUESTS_TABLE, request_id, record),
            self._audit(now_ms, operator, "requested", request_id, _summary(record)),
            Trace(request_id, TRACE_EVENT, {"outcome": "requested", **public(record)}),
        ]

    def _cardholder(self, args: dict[str, Any], amount_fen: int, config: Any, txns: dict[str, dict[str, Any]]) -> dict[str, Any]:
        pan = str(args.get("pan") or "")
        if not (pan.isdigit() and PAN_MIN_DIGITS <= len(pan) <= PAN_MAX_DIGITS):
            raise Refused(f"a card number is {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} digits")
        debit_mid = args.get("debit_merchant_id") or ""
        if debit_mid:
            _merchant(config, debit_mid)
        rrn = str(args.get("original_rrn") or "")
        original: dict[str, Any] = {}
        if rrn:
            original = txns.get(rrn) or {}
            if not original:
                raise Refused(f"no transaction with reference number {rrn} at this acquirer")
            if original["kind"] != "sale" or original["status"] != "approved":
                raise Refused(f"reference number {rrn} is a {original['status']} {original['kind']}, not a standing sale")
            if original["pan"] != pan:
                raise Refused(f"reference number {rrn} was made with another card")
            if debit_mid and debit_mid != original["merchant_id"]:
                raise Refused(f"reference number {rrn} was made at merchant {original['merchant_id']}, not {debit_mid}")
            returned = original.get("refunded_fen", 0) + sum(
                r["amount_fen"] for r in self.requests.values()
                if r.get("original_rrn") == rrn and r["status"] in ("pending", "approved")
            )
            if amount_fen > original["amount_fen"] - returned:
                raise Refused(f"reference number {rrn} was for {original['amount_fen']} fen, "
                              f"{returned} of it refunded or asked for already")
        where = {k: original.get(k, "") for k in ("terminal_id", "batch_no", "trace_no")}
        return {"pan": pan, "original_rrn": rrn, "debit_merchant_id": debit_mid,
                "merchant_id": debit_mid or original.get("merchant_id", ""), **where}

    def _approve(self, request_id: str, operator: str, config: Any, ledger: Ledger, now_ms: int) -> list[Effect]:
        record = self._pending(request_id, operator, "approve")
        if record is None:  # the same approval again (its answer was lost): the first answer
            return [Trace(request_id, TRACE_EVENT, {"outcome": "approved", "repeated": True, **public(self.requests[request_id])})]
        if operator == record["maker"]:
            raise Refused(f"{request_id} was requested by {operator}: a second operator must approve it")
        credit_account = SCHEME_SETTLEMENT_ACCOUNT
        if record["target"] == "merchant":
            debit_account, credit_account = FUNDING_ACCOUNT, _merchant(config, record["merchant_id"]).account_id
        elif record["debit_merchant_id"]:
            debit_account = _merchant(config, record["debit_merchant_id"]).account_id
        else:
            debit_account = FUNDING_ACCOUNT
        transfer_id = derive_id("manual-credit", request_id)
        [result] = ledger.create_transfers(
            [Transfer(transfer_id, debit_account, credit_account, record["amount_fen"], chart.CNY, chart.MANUAL_CREDIT)], now_ms
        )
        assert result in (CreateTransferResult.OK, CreateTransferResult.EXISTS), result
        record.update(status="approved", checker=operator, decided_ms=now_ms, transfer_id=f"{transfer_id:032x}")
        effects: list[Effect] = []
        if record["target"] == "cardholder":
            record["lifecycle"] = f"{ID_PREFIX}{int(request_id[len(ID_PREFIX):]):0{LIFECYCLE_DIGITS}d}"
            effects.append(Put(PRESENTMENTS_TABLE, record["lifecycle"], presentment(record, config.institution_id, now_ms)))
        return effects + [
            Put(REQUESTS_TABLE, request_id, record),
            self._audit(now_ms, operator, "approved", request_id, _summary(record)),
            Trace(request_id, TRACE_EVENT, {"outcome": "approved", **public(record)}),
        ]

    def _reject(self, request_id: str, operator: str, reason: str, now_ms: int) -> list[Effect]:
        record = self._pending(request_id, operator, "reject")
        if record is None:
            return [Trace(request_id, TRACE_EVENT, {"outcome": "rejected", "repeated": True, **public(self.requests[request_id])})]
        record.update(status="rejected", checker=operator, decided_ms=now_ms, decision_reason=_reason(reason))
        return [
            Put(REQUESTS_TABLE, request_id, record),
            self._audit(now_ms, operator, "rejected", request_id, {"reason": record["decision_reason"]}),
            Trace(request_id, TRACE_EVENT, {"outcome": "rejected", **public(record)}),
        ]

    def _pending(self, request_id: str, operator: str, verb: str) -> dict[str, Any] | None:
        """The pending request to decide on; None when this operator already decided it so."""
        record = self.requests.get(request_id)
        if record is None:
            raise Refused(f"no manual credit {request_id!r}")
        if record["status"] != "pending":
            decided = {"approve": "approved", "reject": "rejected"}[verb]
            if record["status"] == decided and record["checker"] == operator:
                return None
            raise Refused(f"{request_id} is {record['status']} already (by {record['checker']}), not pending")
        return record

    def _audit(self, now_ms: int, operator: str, action: str, request_id: str, detail: dict[str, Any]) -> Put:
        self.audit_seq += 1
        row = {"seq": self.audit_seq, "at_ms": now_ms, "operator": operator, "action": action,
               "request_id": request_id, "detail": detail}
        return Put(AUDIT_TABLE, f"{self.audit_seq:0{AUDIT_KEY_DIGITS}d}", row)


# -- records ------------------------------------------------------------------------


def presentment(record: dict[str, Any], acquirer_id: str, now_ms: int) -> dict[str, Any]:
    """The presentment of a return to a cardholder: settlement.presentment's record, kind ``credit``."""
    mmdd = timefmt.mmdd(now_ms)
    return {
        "lifecycle": record["lifecycle"],
        "kind": "credit",
        "acquirer_id": acquirer_id,
        "terminal_id": record.get("terminal_id", ""),
        "merchant_id": record["merchant_id"],
        "batch_no": record.get("batch_no", ""),
        "trace_no": record.get("trace_no", ""),
        "pan": record["pan"],
        "amount_fen": record["amount_fen"],
        "currency": record["currency"],
        "auth_code": "",
        "transaction_date": mmdd,
        "settled_date": mmdd,
        "original_lifecycle": record["original_rrn"],
        "host_key": "",
        "manual_credit": record["id"],
    }


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A request as operators and logs see it: the card number masked."""
    return {**record, "pan": mask_pan(record["pan"])} if record.get("pan") else dict(record)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("target", "merchant_id", "pan", "original_rrn", "debit_merchant_id", "amount_fen", "reason", "transfer_id", "lifecycle")
    return {k: v for k, v in public(record).items() if k in keys and v != ""}


def _attempted(args: dict[str, Any]) -> dict[str, Any]:
    """What a refused command asked for, for the audit trail: card number masked, values cut short."""
    keys = ("target", "merchant_id", "original_rrn", "debit_merchant_id", "amount_fen", "reason")
    out = {k: str(args[k])[:ATTEMPT_MAX_CHARS] for k in keys if args.get(k) not in (None, "")}
    if args.get("pan"):
        out["pan"] = mask_pan(str(args["pan"])[:PAN_MAX_DIGITS])
    return out


def _check_operator(operator: str, operators: Iterable[str]) -> None:
    if not operator:
        raise Refused("no operator given")
    if operator not in operators:
        raise Refused(f"unknown operator {operator[:OPERATOR_MAX_CHARS]!r}: not among [acquirer] operators")


def _reason(reason: Any) -> str:
    text = str(reason or "").strip()
    if not text:
        raise Refused("a reason is required")
    if len(text) > REASON_MAX_CHARS:
        raise Refused(f"a reason has at most {REASON_MAX_CHARS} characters")
    return text


def _merchant(config: Any, merchant_id: Any):
    merchant = config.merchants.get(str(merchant_id or ""))
    if merchant is None:
        raise Refused(f"no merchant {merchant_id!r} at this acquirer")
    return merchant
