"""Clearing between members: the files they exchange, the daily cut-off and the scheme's fees.

Clearing is done with files, as the schemes do it: after a terminal's batch
settles, the acquirer puts a presentment file in the switch's box; the switch
matches each presentment with its authorization log, adds interchange and
scheme fees and puts a clearing file in each issuer's box; the issuer posts
its holds from it. At the daily cut-off the switch closes the cycle: each
member's net position, booked and reported. docs/clearing.md has the formats.

A core never touches a file. It returns ``Publish`` effects (a box, a name, a
text) that the driver writes after the commit, and gets ``Command`` inputs
named ``CLEARING_FILE`` when a file arrives in its box. A file's name is its
identity: the same name again is ignored by the receiver, so a sender may
publish again after a restart whatever it is not sure was delivered.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from operator import itemgetter
from typing import Any, Iterable, Iterator, Sequence

from . import timefmt
from .effects import Effect, Put, Trace

CLEARING_FILE = "clearing-file"  # the Command a driver gives a core when a file arrives in its box
CUTOFF_TIMER = "cutoff"

SWITCH_BOX = "to-switch"
REPORTS_BOX = "reports"


def issuer_box(issuer_name: str) -> str:
    return f"to-issuer-{issuer_name}"


# One presentment: what the acquirer claims (docs/settlement.md "Presentment record").
PRESENTMENT_FIELDS = (
    "lifecycle", "kind", "acquirer_id", "terminal_id", "merchant_id", "batch_no", "trace_no", "pan",
    "amount_fen", "currency", "auth_code", "transaction_date", "settled_date", "original_lifecycle", "host_key",
)
# One cleared item, as the switch forwards it to the issuer: the presentment and what clearing added.
CLEARING_FIELDS = PRESENTMENT_FIELDS + (
    "issuer", "match", "interchange_fen", "acquirer_fee_fen", "issuer_fee_fen", "clearing_day", "source_file",
)
INT_FIELDS = frozenset({"amount_fen", "interchange_fen", "acquirer_fee_fen", "issuer_fee_fen"})

# How the switch's authorization log saw a presentment (CLEARING_FIELDS "match").
MATCHED = "matched"
NO_AUTHORIZATION = "no-authorization"
REVERSED = "reversed"  # its authorization was reversed or voided: presented all the same
AMOUNT_DIFFERS = "amount-differs"  # more than was authorized
MANUAL_CREDIT = "manual-credit"  # a credit the acquirer's operators made by hand, no authorization


class ClearingFileError(ValueError):
    pass


def to_csv(rows: Iterable[dict[str, Any]], fields: tuple[str, ...]) -> str:
    every = itemgetter(*fields)  # C, for the rows that have every field (all of ours); "" for a missing one

    def values(r: dict[str, Any]):
        try:
            return every(r)
        except KeyError:
            return [r.get(f, "") for f in fields]

    return csv_text(fields, map(values, rows) if len(fields) > 1 else ([r.get(f, "") for f in fields] for r in rows))


def csv_text(fields: tuple[str, ...], lines: Iterable[Sequence[Any]]) -> str:
    """A file of ``lines`` already in the order of ``fields``."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(fields)
    w.writerows(lines)
    return out.getvalue()


def from_csv(text: str, fields: tuple[str, ...], keep: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The rows of a clearing file; ``ClearingFileError`` names the line that is wrong. With ``keep``
    (some of ``fields``), each row holds only those: every line is checked all the same, but a party
    that reads a few columns of a million lines does not keep the rest in memory."""
    names = fields if keep is None else keep
    return [dict(zip(names, values)) for values in map(_picker(fields, names), values_of(text, fields))]


def tuples_of(text: str, fields: tuple[str, ...], keep: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The rows of a clearing file as ``from_csv`` reads them, each a tuple of the ``keep`` fields in
    that order: for a party that goes through a million rows, which builds no dict for each."""
    return list(map(_picker(fields, keep), values_of(text, fields)))


def _picker(fields: tuple[str, ...], keep: tuple[str, ...]):
    """A line's values (in the order of ``fields``, and any later columns) -> the tuple of ``keep``'s."""
    assert keep and set(keep) <= set(fields), keep
    return itemgetter(*(fields.index(f) for f in keep)) if len(keep) > 1 else (lambda v, i=fields.index(keep[0]): (v[i],))


def check_csv(text: str, fields: tuple[str, ...]) -> int:
    """How many rows a clearing file has, every line checked as ``from_csv`` checks it (for a party
    that reads the rows later: a switch keeps a presentment file's text until the cut-off)."""
    return sum(1 for _ in values_of(text, fields))


def values_of(text: str, fields: tuple[str, ...]) -> Iterator[list[Any]]:
    """Each line's values in the order of ``fields`` (and any later columns), its numbers made ints,
    once it is found right: a row without a dict, for a party that reads a million of every field."""
    reader = _lines(text)
    line_no = 1
    try:
        header = next(reader, None)
        if header is None or tuple(header[: len(fields)]) != fields:
            raise ClearingFileError(f"header is not {','.join(fields)}")
        ints = tuple((fields.index(f), f) for f in fields if f in INT_FIELDS)
        width = len(header)
        for line_no, values in enumerate(reader, start=2):
            if len(values) != width:
                raise ClearingFileError(f"line {line_no}: {len(values)} values, the header has {width}")
            for i, f in ints:
                try:
                    fen = values[i] = int(values[i])
                except ValueError:
                    raise ClearingFileError(f"line {line_no}: {f} {values[i]!r} is not a number of fen") from None
                if fen < 0:
                    raise ClearingFileError(f"line {line_no}: {f} is negative")
            yield values
    except csv.Error as e:
        raise ClearingFileError(f"line {line_no + 1}: {e}") from None


def _lines(text: str) -> Iterator[list[str]]:
    """The values of each line of a CSV text, as ``csv.reader`` reads them. A text with no quote and no
    carriage return (every file posnet writes: its values are codes, numbers and names of files) has
    nothing for the csv module to do but split at commas and newlines, which ``str.split`` does in half
    the time (a million lines in 0.9 s, not 2.0); any other text goes through the csv module itself.
    tests/cores/test_clearing.py holds the two to the same answers."""
    if '"' in text or "\r" in text:
        yield from csv.reader(io.StringIO(text))
        return
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for line in lines:
        yield line.split(",") if line else []


def receive(files_in: dict[str, dict[str, Any]], name: str, text: str, fields: tuple[str, ...], what: str,
            now_ms: int, keep: tuple[str, ...] | None = None,
            as_tuples: bool = False) -> tuple[list[dict[str, Any]] | list[tuple[Any, ...]] | int | None, list[Effect]]:
    """A file arriving in a party's box: its rows (of the ``keep`` fields, when given; with ``keep=()``
    only how many, every line checked; with ``as_tuples``, each row a tuple of the ``keep`` fields, as
    ``tuples_of``), or ``None`` with the effects that say why not — a name seen before is ignored, a
    malformed file is rejected whole (recorded, nothing moves)."""
    if name in files_in:
        return None, [Trace("", f"{what} seen before: ignored", {"file": name})]
    try:
        if keep == ():
            return check_csv(text, fields), []
        return (tuples_of(text, fields, keep or fields) if as_tuples else from_csv(text, fields, keep)), []
    except ClearingFileError as e:
        rec = {"received_ms": now_ms, "status": "rejected", "error": str(e)}
        files_in[name] = rec
        return None, [Put("clearing_files_in", name, rec), Trace("", f"{what} rejected", {"file": name, "error": str(e)})]


# -- the daily cut-off ---------------------------------------------------------------------------


def parse_cutoff(text: str) -> time:
    """``"23:00"`` (China Standard Time, as the scheme's day is)."""
    try:
        hh, mm = text.split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise ValueError(f"cut-off {text!r}: give HH:MM, e.g. 23:00") from None


def next_cutoff_ms(now_ms: int, cutoff: time) -> int:
    """The first cut-off strictly after ``now_ms``."""
    here = timefmt.local(now_ms)
    at = datetime.combine(here.date(), cutoff, tzinfo=timefmt.CHINA_STANDARD_TIME)
    if at <= here:
        at += timedelta(days=1)
    return int(at.timestamp() * 1000)


def clearing_day(cutoff_ms: int) -> str:
    """The name of the cycle a cut-off closes: its date, YYYYMMDD."""
    return timefmt.local(cutoff_ms).strftime("%Y%m%d")


# -- the scheme's fees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeeRate:
    """A rate in parts per million of the amount, rounded half up to the fen, with a cap (0: none)."""

    ppm: int
    cap_fen: int = 0

    def of(self, amount_fen: int) -> int:
        fee = (amount_fen * self.ppm + 500_000) // 1_000_000
        return min(fee, self.cap_fen) if self.cap_fen else fee


@dataclass(frozen=True)
class ClearingRates:
    """Interchange goes from the acquirer to the issuer; the scheme's fee is taken from both.
    Defaults after the PBOC's 2016 card fee reform: debit interchange 0.35% capped at 13 yuan,
    network fee 0.0325% a side capped at 3.25 yuan."""

    interchange: FeeRate = FeeRate(3_500, 1_300)
    scheme_fee: FeeRate = FeeRate(325, 325)


def parse_rate(text: str) -> int:
    """``"0.35%"`` -> 3500 parts per million."""
    from decimal import Decimal, InvalidOperation

    t = str(text).strip()
    if not t.endswith("%"):
        raise ValueError(f"rate {text!r}: give a percentage, e.g. 0.35%")
    try:
        ppm = Decimal(t[:-1]) * 10_000
    except InvalidOperation:
        raise ValueError(f"rate {text!r}: give a percentage, e.g. 0.35%") from None
    if ppm < 0 or ppm != ppm.to_integral_value() or ppm > 1_000_000:
        raise ValueError(f"rate {text!r}: between 0% and 100%, to 4 decimal places")
    return int(ppm)


def yuan(fen: Any) -> str:
    """Fen as yuan for reports: 123456 -> 1234.56; an empty cell stays empty."""
    if fen == "":
        return ""
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
