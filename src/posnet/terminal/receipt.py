"""Receipts (签购单) as DOMAIN.md §3 lays them out, rendered as plain text."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..effects import mask_pan

MERCHANT_COPY = "商户存根 MERCHANT COPY"
CARDHOLDER_COPY = "持卡人存根 CARDHOLDER COPY"
BANK_COPY = "银行存根 BANK COPY"
REPRINT_MARK = "****重打印 REPRINT****"
SIGNATURE_CONSENT = "本人确认以上交易,同意将其计入本卡账户"
RECEIPT_WIDTH = 32  # characters on a 58 mm roll

TYPE_NAMES = {
    "sale": "消费 SALE",
    "void": "消费撤销 VOID",
    "refund": "退货 REFUND",
}
ENTRY_LETTER = {"02": "S", "05": "I", "07": "C", "01": "M"}


def yuan(amount_fen: int) -> str:
    return f"RMB {amount_fen // 100}.{amount_fen % 100:02d}"


@dataclass(frozen=True)
class Receipt:
    copy: str
    merchant_name: str
    merchant_id: str
    terminal_id: str
    operator: str
    issuer: str
    acquirer: str
    pan: str
    entry_mode: str
    tx_type: str
    expiry: str
    batch_no: str
    voucher_no: str
    auth_code: str
    datetime: str
    reference_no: str
    amount_fen: int
    remarks: tuple[str, ...] = field(default_factory=tuple)
    reprint: bool = False

    @property
    def masked_pan(self) -> str:
        return f"{mask_pan(self.pan)} /{ENTRY_LETTER.get(self.entry_mode[:2], 'S')}"

    def lines(self) -> list[str]:
        amount = yuan(self.amount_fen)
        if self.tx_type in ("void", "refund"):
            amount = "-" + amount
        out = [
            "POS签购单".center(RECEIPT_WIDTH - 3),
            self.copy,
            "-" * RECEIPT_WIDTH,
            f"商户名称(MERCHANT NAME): {self.merchant_name}",
            f"商户编号(MERCHANT NO.): {self.merchant_id}",
            f"终端编号(TERMINAL NO.): {self.terminal_id}",
            f"操作员号(OPERATOR NO.): {self.operator}",
            f"发卡行(ISSUER): {self.issuer}",
            f"收单行(ACQUIRER): {self.acquirer}",
            f"卡号(CARD NO.): {self.masked_pan}",
            f"交易类型(TRANS TYPE): {TYPE_NAMES.get(self.tx_type, self.tx_type)}",
            f"有效期(EXP. DATE): {self.expiry[:2]}/{self.expiry[2:]}" if self.expiry else "有效期(EXP. DATE):",
            f"批次号(BATCH NO.): {self.batch_no}",
            f"凭证号(VOUCHER NO.): {self.voucher_no}",
            f"授权码(AUTH NO.): {self.auth_code}",
            f"日期/时间(DATE/TIME): {self.datetime}",
            f"参考号(REFER NO.): {self.reference_no}",
            f"金额(AMOUNT): {amount}",
            "备注(REFERENCE):",
            *self.remarks,
        ]
        if self.reprint:
            out.append(REPRINT_MARK)
        if self.copy == MERCHANT_COPY:
            out += ["持卡人签名(CARDHOLDER SIGNATURE):", "", "", SIGNATURE_CONSENT]
        out.append("-" * RECEIPT_WIDTH)
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"


@dataclass(frozen=True)
class FaultSlip:
    """A slip that is not a receipt: the terminal could not reverse a transaction."""

    terminal_id: str
    voucher_no: str
    amount_fen: int
    datetime: str
    reason: str

    def text(self) -> str:
        return "\n".join(
            [
                "-" * RECEIPT_WIDTH,
                "冲正不成功,请人工处理",
                "REVERSAL FAILED, CONTACT SERVICE PROVIDER",
                "此单据不是签购单 NOT A RECEIPT",
                f"终端编号(TERMINAL NO.): {self.terminal_id}",
                f"凭证号(VOUCHER NO.): {self.voucher_no}",
                f"金额(AMOUNT): {yuan(self.amount_fen)}",
                f"日期/时间(DATE/TIME): {self.datetime}",
                f"原因(REASON): {self.reason}",
                "-" * RECEIPT_WIDTH,
            ]
        ) + "\n"


@dataclass(frozen=True)
class SettlementSlip:
    """结算单: the batch's totals and whether the acquirer agreed with them."""

    merchant_name: str
    merchant_id: str
    terminal_id: str
    operator: str
    batch_no: str
    totals: object  # posnet.wire.fields.Totals
    balanced: bool
    uploaded: int
    datetime: str

    def text(self) -> str:
        t = self.totals
        return "\n".join(
            [
                "结算总计单 SETTLEMENT".center(RECEIPT_WIDTH - 4),
                "-" * RECEIPT_WIDTH,
                f"商户名称(MERCHANT NAME): {self.merchant_name}",
                f"商户编号(MERCHANT NO.): {self.merchant_id}",
                f"终端编号(TERMINAL NO.): {self.terminal_id}",
                f"操作员号(OPERATOR NO.): {self.operator}",
                f"批次号(BATCH NO.): {self.batch_no}",
                f"日期/时间(DATE/TIME): {self.datetime}",
                "-" * RECEIPT_WIDTH,
                "类型(TYPE)        笔数(COUNT)   金额(AMOUNT)",
                f"借记 DEBIT          {t.debit_count:>4}   {yuan(t.debit_amount)}",
                f"贷记 CREDIT         {t.credit_count:>4}   {yuan(t.credit_amount)}",
                "-" * RECEIPT_WIDTH,
                "对账平 BALANCED" if self.balanced else f"对账不平 UNBALANCED, 批上送 UPLOADED {self.uploaded}",
                "-" * RECEIPT_WIDTH,
            ]
        ) + "\n"
