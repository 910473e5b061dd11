"""Batch settlement at the acquirer (结算): totals, the merchant's credit, presentments.

A terminal's batch is settled on the acquirer's own record: the terminal's
totals (F48 of its 0500) are compared with the acquirer's, and when they
differ the terminal uploads its transactions (0320) so the difference can be
reported — but what the merchant is paid is what the acquirer approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..ledger import Account, Transfer, chart
from ..wire.fields import Totals

# The acquirer's own accounts (docs/ledger.md).
SCHEME_SETTLEMENT_ACCOUNT = 1  # what the scheme owes the acquirer for its merchants' sales
FEE_INCOME_ACCOUNT = 2
FUNDING_ACCOUNT = 3
MERCHANT_ACCOUNT_BASE = 1000  # merchant n of the configuration has account 1000 + n



def system_accounts() -> list[Account]:
    return [
        Account(SCHEME_SETTLEMENT_ACCOUNT, chart.CNY, chart.ACQUIRER_SCHEME_SETTLEMENT),
        Account(FEE_INCOME_ACCOUNT, chart.CNY, chart.ACQUIRER_FEE_INCOME),
        Account(FUNDING_ACCOUNT, chart.CNY, chart.ACQUIRER_FUNDING),
    ]


def batch_totals(txns: Iterable[dict[str, Any]]) -> Totals:
    """DOMAIN.md §3: debits are sales (a voided sale too: its void is a credit); credits are voids and refunds."""
    debit_amount = debit_count = credit_amount = credit_count = 0
    for t in txns:
        if t["kind"] == "sale" and t["status"] in ("approved", "voided"):
            debit_amount += t["amount_fen"]
            debit_count += 1
        elif t["kind"] in ("void", "refund") and t["status"] == "approved":
            credit_amount += t["amount_fen"]
            credit_count += 1
    return Totals(debit_amount, debit_count, credit_amount, credit_count)


@dataclass(frozen=True)
class MerchantCredit:
    sales_fen: int  # standing sales of the batch
    refunds_fen: int
    fee_fen: int
    net_fen: int  # what the merchant is credited


def merchant_credit(txns: Iterable[dict[str, Any]], fee_rate_bp: int) -> MerchantCredit:
    """The merchant is paid its standing sales less refunds, less the fee on the sales.

    The fee is ``fee_rate_bp`` basis points of the standing sales, rounded half up to the fen;
    a refund does not give the fee back (the common practice of Chinese acquirers)."""
    sales = sum(t["amount_fen"] for t in txns if t["kind"] == "sale" and t["status"] == "approved")
    refunds = sum(t["amount_fen"] for t in txns if t["kind"] == "refund" and t["status"] == "approved")
    fee = (sales * fee_rate_bp + 5_000) // 10_000
    return MerchantCredit(sales, refunds, fee, sales - refunds - fee)


def credit_transfers(batch_key: str, merchant_account: int, credit: MerchantCredit, derive_id) -> list[Transfer]:
    """The merchant's credit and the acquirer's fee, against what the scheme owes the acquirer."""
    transfers = []
    if credit.net_fen > 0:
        transfers.append(
            Transfer(derive_id("settle", batch_key), SCHEME_SETTLEMENT_ACCOUNT, merchant_account, credit.net_fen,
                     chart.CNY, chart.SETTLEMENT)
        )
    elif credit.net_fen < 0:  # more refunded than sold: the merchant owes
        transfers.append(
            Transfer(derive_id("settle", batch_key), merchant_account, SCHEME_SETTLEMENT_ACCOUNT, -credit.net_fen,
                     chart.CNY, chart.SETTLEMENT)
        )
    if credit.fee_fen > 0:
        transfers.append(
            Transfer(derive_id("fee", batch_key), SCHEME_SETTLEMENT_ACCOUNT, FEE_INCOME_ACCOUNT, credit.fee_fen,
                     chart.CNY, chart.FEE)
        )
    return transfers


def presentment(t: dict[str, Any], acquirer_id: str, settled_mmdd: str) -> dict[str, Any]:
    """One presentment record (docs/settlement.md): what the acquirer claims from the scheme."""
    return {
        "lifecycle": t["rrn"],
        "kind": t["kind"],
        "acquirer_id": acquirer_id,
        "terminal_id": t["terminal_id"],
        "merchant_id": t["merchant_id"],
        "batch_no": t["batch_no"],
        "trace_no": t["trace_no"],
        "pan": t["pan"],
        "amount_fen": t["amount_fen"],
        "currency": "156",
        "auth_code": t.get("auth_code", ""),
        "transaction_date": t["date_mmdd"],
        "settled_date": settled_mmdd,
        "original_lifecycle": t.get("original_rrn", ""),
        "host_key": f"{acquirer_id.lstrip('0')}:{t['f7']}:{t['stan']}",
    }
