"""Slips other than the receipt: the detail list (打印明细), the totals (打印总计), and a slip torn
off where the paper ran out. Each has ``lines()`` and ``text()`` like ``receipt.Receipt``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..effects import mask_pan
from .receipt import RECEIPT_WIDTH, yuan

# The type letter of the detail list (DOMAIN.md §3).
TYPE_LETTER = {"sale": "S", "void": "V", "refund": "R"}
TYPE_ORDER = ("sale", "void", "refund")
TYPE_LABEL = {"sale": "消费 SALE", "void": "撤销 VOID", "refund": "退货 REFUND"}


def slip_lines(slip: Any) -> list[str]:
    """The lines a slip puts on paper, whichever kind it is."""
    if hasattr(slip, "lines"):
        return list(slip.lines())
    return slip.text().splitlines()


def _header(title: str, merchant_name: str, merchant_id: str, terminal_id: str, batch_no: str, datetime: str) -> list[str]:
    return [
        title.center(RECEIPT_WIDTH - 4),
        "-" * RECEIPT_WIDTH,
        f"商户名称(MERCHANT NAME): {merchant_name}",
        f"商户编号(MERCHANT NO.): {merchant_id}",
        f"终端编号(TERMINAL NO.): {terminal_id}",
        f"批次号(BATCH NO.): {batch_no}",
        f"日期/时间(DATE/TIME): {datetime}",
        "-" * RECEIPT_WIDTH,
    ]


@dataclass(frozen=True)
class DetailSlip:
    """打印明细: every transaction of the open batch. A transaction in it succeeded."""

    merchant_name: str
    merchant_id: str
    terminal_id: str
    batch_no: str
    datetime: str
    entries: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        out = _header("交易明细 DETAIL", self.merchant_name, self.merchant_id, self.terminal_id, self.batch_no, self.datetime)
        out.append("凭证号 类型 授权码    金额 AMOUNT")
        out.append("VOUCHER TYPE AUTH     卡号 CARD")
        for e in sorted(self.entries, key=lambda e: e["voucher_no"]):
            letter = TYPE_LETTER.get(e["kind"], "?")
            mark = "*" if e.get("voided") else " "  # a sale voided later in the batch
            out.append(f"{e['voucher_no']} {letter}{mark}  {e['auth_code'] or '-':<6} {yuan(e['amount_fen']):>12}")
            out.append(f"  {mask_pan(e['pan'])}")
        if not self.entries:
            out.append("无交易 NO TRANSACTION")
        out += ["-" * RECEIPT_WIDTH, "类型 S消费 V撤销 R退货 *已撤销", "S SALE V VOID R REFUND *VOIDED", "-" * RECEIPT_WIDTH]
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"


@dataclass(frozen=True)
class TotalsSlip:
    """打印总计: count and amount per transaction type of the open batch."""

    merchant_name: str
    merchant_id: str
    terminal_id: str
    batch_no: str
    datetime: str
    totals: tuple[tuple[str, int, int], ...]  # (kind, count, amount_fen)

    @classmethod
    def of(cls, journal: dict[str, dict[str, Any]], **header: str) -> "TotalsSlip":
        rows = []
        for kind in TYPE_ORDER:
            entries = [e for e in journal.values() if e["kind"] == kind]
            rows.append((kind, len(entries), sum(e["amount_fen"] for e in entries)))
        return cls(totals=tuple(rows), **header)

    def lines(self) -> list[str]:
        out = _header("交易汇总 TOTALS", self.merchant_name, self.merchant_id, self.terminal_id, self.batch_no, self.datetime)
        out.append("类型 TYPE      笔数 COUNT  金额 AMOUNT")
        for kind, count, amount in self.totals:
            out.append(f"{TYPE_LABEL[kind]:<11} {count:>5} {yuan(amount):>14}")
        debit = sum(a for k, _, a in self.totals if k == "sale")
        credit = sum(a for k, _, a in self.totals if k != "sale")
        out += [
            "-" * RECEIPT_WIDTH,
            f"借记总额 DEBIT  {yuan(debit):>16}",
            f"贷记总额 CREDIT {yuan(credit):>16}",
            "-" * RECEIPT_WIDTH,
        ]
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"


@dataclass(frozen=True)
class PartialSlip:
    """What came out of the printer before it stopped (paper out, low voltage): not a receipt."""

    slip: Any
    printed: int  # lines on the paper
    reason: str

    def lines(self) -> list[str]:
        return slip_lines(self.slip)[: self.printed]

    def text(self) -> str:
        return "\n".join(self.lines()) + ("\n" if self.printed else "")

    @property
    def torn(self) -> bool:
        return True
