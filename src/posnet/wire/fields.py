"""Builders and parsers of the structured fields: F35, F48, F54, F60, F61, F62, F90.

Each parser raises :class:`~posnet.wire.codec.WireError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import WireError

CURRENCY_CNY = "156"


# -- F35 track 2 ----------------------------------------------------------------


@dataclass(frozen=True)
class Track2:
    pan: str
    expiry: str  # YYMM
    service_code: str

    def encode(self, separator: str = "=") -> str:
        return f"{self.pan}{separator}{self.expiry}{self.service_code}0000000000"


def parse_track2(value: str) -> Track2:
    for sep in ("=", "D"):
        if sep in value:
            pan, rest = value.split(sep, 1)
            break
    else:
        raise WireError("field 35: no separator in track 2", "35")
    if not (12 <= len(pan) <= 19 and pan.isdigit()) or len(rest) < 7 or not rest[:7].isdigit():
        raise WireError("field 35: track 2 is not PAN, separator, expiry and service code", "35")
    return Track2(pan=pan, expiry=rest[:4], service_code=rest[4:7])


def track2_for_host(value: str) -> str:
    """The terminal leg writes the separator as the BCD nibble D; the host legs as '='."""
    return value.replace("D", "=")


def track2_for_terminal(value: str) -> str:
    return value.replace("=", "D")


# -- F54 balance ----------------------------------------------------------------


def build_balance(amount: int, currency: str = CURRENCY_CNY, account_type: str = "10", amount_type: str = "02") -> str:
    """F54: account type (2), amount type (2), currency (3), sign C/D, amount (12)."""
    sign = "C" if amount >= 0 else "D"
    return f"{account_type}{amount_type}{currency}{sign}{abs(amount):012d}"


def parse_balance(value: str) -> tuple[int, str]:
    """Returns (amount in minor units, signed; currency)."""
    if len(value) < 20 or value[7] not in "CD" or not value[8:20].isdigit():
        raise WireError(f"field 54: balance {value!r} is not type, currency, C/D and 12 digits", "54")
    amount = int(value[8:20])
    return (amount if value[7] == "C" else -amount), value[4:7]


# -- F60 ------------------------------------------------------------------------


@dataclass(frozen=True)
class F60:
    tx_type: str  # 60.1
    batch_no: str  # 60.2, 6 digits
    network_code: str = "000"  # 60.3
    tail: str = ""  # 60.4, 60.5 as sent

    def encode(self) -> str:
        return f"{self.tx_type}{self.batch_no}{self.network_code}{self.tail}"


def parse_f60(value: str | None) -> F60:
    if value is None or len(value) < 11:
        raise WireError(f"field 60: {len(value or '')} digits, expecting at least 11 (type, batch, network code)", "60")
    return F60(value[:2], value[2:8], value[8:11], value[11:])


# -- F61 original transaction ---------------------------------------------------


@dataclass(frozen=True)
class F61:
    batch_no: str
    trace_no: str
    date_mmdd: str = ""

    def encode(self) -> str:
        return f"{self.batch_no}{self.trace_no}{self.date_mmdd}"


def parse_f61(value: str | None) -> F61:
    if value is None or len(value) < 12:
        raise WireError("field 61: expecting original batch (6) and trace (6)", "61")
    return F61(value[:6], value[6:12], value[12:16])


# -- F62 working keys -----------------------------------------------------------

KEY_BYTES = 16
KCV_BYTES = 4


@dataclass(frozen=True)
class WorkingKeys:
    """Each key encrypted under the TMK, with its check value (DOMAIN.md §2)."""

    pik: bytes
    pik_kcv: bytes
    mak: bytes
    mak_kcv: bytes
    tdk: bytes | None = None
    tdk_kcv: bytes | None = None

    def encode(self) -> str:
        parts = [self.pik, self.pik_kcv, self.mak, self.mak_kcv]
        if self.tdk is not None:
            parts += [self.tdk, self.tdk_kcv or b""]
        return b"".join(parts).hex().upper()


def parse_f62(value: str | None) -> WorkingKeys:
    try:
        raw = bytes.fromhex(value or "")
    except ValueError:
        raise WireError("field 62: not hexadecimal key material", "62") from None
    step = KEY_BYTES + KCV_BYTES
    if len(raw) not in (2 * step, 3 * step):
        raise WireError(f"field 62: {len(raw)} bytes, expecting {2 * step} or {3 * step}", "62")
    chunks = [raw[i : i + step] for i in range(0, len(raw), step)]
    keys = [(c[:KEY_BYTES], c[KEY_BYTES:]) for c in chunks]
    tdk = keys[2] if len(keys) == 3 else (None, None)
    return WorkingKeys(keys[0][0], keys[0][1], keys[1][0], keys[1][1], tdk[0], tdk[1])


# -- F48 settlement totals ------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    debit_amount: int = 0
    debit_count: int = 0
    credit_amount: int = 0
    credit_count: int = 0

    def encode(self) -> str:
        return f"{self.debit_amount:012d}{self.debit_count:03d}{self.credit_amount:012d}{self.credit_count:03d}"


def build_settlement_totals(domestic: Totals, foreign: Totals = Totals()) -> str:
    """F48 of 0500: debits and credits for RMB cards, a 0, then foreign cards, a 0."""
    return domestic.encode() + "0" + foreign.encode() + "0"


def parse_settlement_totals(value: str | None) -> tuple[Totals, Totals]:
    if value is None or len(value) < 31 or not value.isdigit():
        raise WireError("field 48: settlement totals are 31 digits per card class", "48")

    def one(s: str) -> Totals:
        return Totals(int(s[0:12]), int(s[12:15]), int(s[15:27]), int(s[27:30]))

    foreign = one(value[31:62]) if len(value) >= 62 else Totals()
    return one(value[:31]), foreign


# -- F48 settlement results and batch upload items -----------------------------

BALANCED = "1"  # the flag after each card class's totals in the 0510
UNBALANCED = "2"
BATCH_TYPE_CODES = {"sale": "22", "void": "23", "refund": "25"}  # F60.1 of each kind, as batch items name them
BATCH_ITEM_DIGITS = 40  # type (2), trace (6), PAN right-aligned (20), amount (12)
BATCH_ITEMS_PER_MESSAGE = 8  # 2 + 8 × 40 = 322 digits, F48's maximum


def build_batch_items(entries: list[dict]) -> str:
    """F48 of a 0320: the count (2), then each item: type, trace, PAN right-aligned, amount."""
    return f"{len(entries):02d}" + "".join(
        f"{BATCH_TYPE_CODES[e['kind']]}{e['voucher_no']}{e['pan']:0>20}{e['amount_fen']:012d}" for e in entries
    )


def parse_batch_items(value: str | None) -> list[dict]:
    if not value or len(value) < 2 or not value.isdigit():
        raise WireError("field 48: batch upload items are a count and 40-digit items", "48")
    count = int(value[:2])
    items = []
    for i in range(count):
        item = value[2 + i * BATCH_ITEM_DIGITS : 2 + (i + 1) * BATCH_ITEM_DIGITS]
        if len(item) != BATCH_ITEM_DIGITS:
            raise WireError(f"field 48: batch upload item {i + 1} of {count} is cut short", "48")
        items.append(
            {"type": item[:2], "trace_no": item[2:8], "pan": item[8:28].lstrip("0"), "amount_fen": int(item[28:40])}
        )
    return items


# -- F90 original data elements (host legs) -------------------------------------


@dataclass(frozen=True)
class OriginalData:
    mti: str
    stan: str
    transmission_time: str  # F7 MMDDhhmmss
    acquirer_id: str
    forwarder_id: str = ""

    def encode(self) -> str:
        return f"{self.mti}{self.stan}{self.transmission_time}{self.acquirer_id:0>11}{self.forwarder_id:0>11}"

    @property
    def key(self) -> str:
        """The natural key of the original on the host legs."""
        return f"{self.acquirer_id.lstrip('0')}:{self.transmission_time}:{self.stan}"


def parse_f90(value: str | None) -> OriginalData:
    if value is None or len(value) != 42:
        raise WireError("field 90: expecting 42 digits of original data elements", "90")
    return OriginalData(value[:4], value[4:10], value[10:20], value[20:31], value[31:42])
