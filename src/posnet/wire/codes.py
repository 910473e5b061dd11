"""Response codes, processing codes and the message set, as named constants."""

from __future__ import annotations

import enum


class RC:
    """Response codes (F39), DOMAIN.md §4."""

    APPROVED = "00"
    REFER_TO_ISSUER = "01"
    INVALID_MERCHANT = "03"
    PICK_UP_CARD = "04"
    DO_NOT_HONOUR = "05"
    UNKNOWN_OUTCOME = "06"  # reversal reason: reply unreadable or never received
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    NO_SUCH_ISSUER = "15"
    ORIGINAL_TOO_OLD = "22"
    ORIGINAL_NOT_FOUND = "25"
    FORMAT_ERROR = "30"
    FUNCTION_NOT_SUPPORTED = "40"
    LOST_CARD = "41"
    STOLEN_CARD = "43"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    WRONG_PIN = "55"
    NOT_PERMITTED_TO_CARDHOLDER = "57"
    NOT_PERMITTED_TO_TERMINAL = "58"
    EXCEEDS_AMOUNT_LIMIT = "61"
    RESTRICTED_CARD = "62"
    AMOUNT_DIFFERS = "64"
    RESPONSE_TOO_LATE = "68"
    PIN_TRIES_EXCEEDED = "75"
    SIGN_ON_AGAIN = "77"
    CUT_OFF_IN_PROGRESS = "90"
    ISSUER_UNAVAILABLE = "91"
    ROUTING_ERROR = "92"
    DUPLICATE = "94"
    SYSTEM_MALFUNCTION = "96"
    TERMINAL_NOT_REGISTERED = "97"
    ISSUER_TIMED_OUT = "98"
    PIN_FORMAT_ERROR = "99"
    MAC_ERROR = "A0"


RESPONSE_TEXT: dict[str, tuple[str, str]] = {
    "00": ("交易成功", "APPROVED"),
    "01": ("请持卡人与发卡行联系", "REFER TO ISSUER"),
    "03": ("无效商户", "INVALID MERCHANT"),
    "04": ("此卡被没收", "PICK UP CARD"),
    "05": ("持卡人认证失败", "DO NOT HONOUR"),
    "06": ("交易结果未知", "UNKNOWN OUTCOME"),
    "12": ("无效交易", "INVALID TRANSACTION"),
    "13": ("无效金额", "INVALID AMOUNT"),
    "14": ("无效卡号", "INVALID CARD NUMBER"),
    "15": ("此卡无对应发卡方", "NO SUCH ISSUER"),
    "22": ("原交易超期", "ORIGINAL TOO OLD"),
    "25": ("找不到原始交易", "ORIGINAL NOT FOUND"),
    "30": ("报文格式错误", "FORMAT ERROR"),
    "40": ("不支持的交易", "FUNCTION NOT SUPPORTED"),
    "41": ("挂失卡", "LOST CARD"),
    "43": ("被窃卡", "STOLEN CARD"),
    "51": ("余额不足", "INSUFFICIENT FUNDS"),
    "54": ("过期卡", "EXPIRED CARD"),
    "55": ("密码错", "WRONG PIN"),
    "57": ("不允许此卡交易", "NOT PERMITTED TO CARDHOLDER"),
    "58": ("终端不允许此交易", "NOT PERMITTED TO TERMINAL"),
    "61": ("超出金额限制", "EXCEEDS AMOUNT LIMIT"),
    "62": ("受限制的卡", "RESTRICTED CARD"),
    "64": ("原始金额不符", "AMOUNT DIFFERS FROM ORIGINAL"),
    "68": ("交易超时", "RESPONSE TOO LATE"),
    "75": ("密码错误次数超限", "PIN TRIES EXCEEDED"),
    "77": ("请重新签到", "SIGN ON AGAIN"),
    "90": ("日切处理中", "CUT-OFF IN PROGRESS"),
    "91": ("发卡方不能操作", "ISSUER UNAVAILABLE"),
    "92": ("网络故障", "ROUTING ERROR"),
    "94": ("重复交易", "DUPLICATE"),
    "96": ("系统故障", "SYSTEM MALFUNCTION"),
    "97": ("终端未登记", "TERMINAL NOT REGISTERED"),
    "98": ("发卡方超时", "ISSUER TIMED OUT"),
    "99": ("PIN格式错", "PIN FORMAT ERROR"),
    "A0": ("MAC校验错,请重新签到", "MAC ERROR, SIGN ON AGAIN"),
}


def response_text(code: str) -> str:
    zh, en = RESPONSE_TEXT.get(code, ("交易失败", "DECLINED"))
    return f"{zh} {en} ({code})"


class ProcessingCode:
    PURCHASE = "000000"
    PREAUTH = "030000"
    VOID = "200000"  # void and refund share it; F60.1 tells them apart
    REFUND = "200000"
    BALANCE_INQUIRY = "310000"


class TxType:
    """F60.1, the transaction type of the terminal leg."""

    NETWORK = "00"
    INQUIRY = "01"
    PREAUTH = "10"
    COMPLETION = "20"
    SALE = "22"
    VOID = "23"
    REFUND = "25"


class NetworkCode:
    """F60.3 on the terminal leg."""

    NONE = "000"
    SIGN_OFF = "002"
    SIGN_ON_DOUBLE = "003"
    SIGN_ON_WITH_DATA_KEY = "004"
    SETTLEMENT = "201"
    BATCH_UPLOAD_END = "202"
    ECHO = "301"


class HostNetworkCode:
    """F70 on the host legs."""

    SIGN_ON = "001"
    SIGN_OFF = "002"
    ECHO = "301"


class Kind(enum.Enum):
    """What a message is, whatever leg it travels on."""

    SIGN_ON = "sign-on"
    SIGN_OFF = "sign-off"
    ECHO = "echo"
    INQUIRY = "inquiry"
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch-upload"


# (MTI, F3, F60.1) -> kind, the message set table of DOMAIN.md §2.
_TERMINAL_KINDS: dict[tuple[str, str | None, str], Kind] = {
    ("0200", ProcessingCode.BALANCE_INQUIRY, TxType.INQUIRY): Kind.INQUIRY,
    ("0200", ProcessingCode.PURCHASE, TxType.SALE): Kind.SALE,
    ("0200", ProcessingCode.VOID, TxType.VOID): Kind.VOID,
    ("0220", ProcessingCode.REFUND, TxType.REFUND): Kind.REFUND,
}


def terminal_kind(mti: str, f3: str | None, f60_1: str, f60_3: str) -> Kind | None:
    """Classify a terminal-leg request; None for one posnet does not support."""
    if mti == "0800" and f60_3 in (NetworkCode.SIGN_ON_DOUBLE, NetworkCode.SIGN_ON_WITH_DATA_KEY):
        return Kind.SIGN_ON
    if mti == "0820":
        return {NetworkCode.SIGN_OFF: Kind.SIGN_OFF, NetworkCode.ECHO: Kind.ECHO}.get(f60_3)
    if mti in ("0400", "0401"):
        return Kind.REVERSAL
    if mti == "0500":
        return Kind.SETTLEMENT
    if mti == "0320":
        return Kind.BATCH_UPLOAD
    return _TERMINAL_KINDS.get((mti, f3, f60_1))


# Host legs: (MTI, F3) -> kind. Void and refund share F3; the MTI tells them apart.
_HOST_KINDS: dict[tuple[str, str], Kind] = {
    ("0200", ProcessingCode.BALANCE_INQUIRY): Kind.INQUIRY,
    ("0200", ProcessingCode.PURCHASE): Kind.SALE,
    ("0200", ProcessingCode.VOID): Kind.VOID,
    ("0220", ProcessingCode.REFUND): Kind.REFUND,
}


def host_kind(mti: str, f3: str | None) -> Kind | None:
    if mti in ("0400", "0401", "0420", "0421"):
        return Kind.REVERSAL
    if mti in ("0800", "0820"):
        return Kind.ECHO
    return _HOST_KINDS.get((mti, f3 or ""))


def is_request(mti: str) -> bool:
    """A request, advice or notification, or its repeat (xx00, xx20, xx40, xx01 …): one a reply can be framed for."""
    return len(mti) == 4 and mti.isdigit() and mti[2] in "024" and mti[3] in "01"


def response_mti(mti: str) -> str:
    """The reply's MTI: the request's + 10 (0200 -> 0210, 0401 -> 0410)."""
    if not is_request(mti):
        raise ValueError(f"MTI {mti!r} is not a request: no reply MTI")
    return mti[:2] + str(int(mti[2]) + 1) + "0"
